"""WIDER FACE easy / medium / hard AP with the official protocol, exact and fast.

The protocol (``eval_tools``: ``read_pred``, ``norm_score``, ``evaluation``,
``image_evaluation``, ``image_pr_info``, ``dataset_pr_info``, ``VOCap``; the common Python
port computes the same numbers):

1. Per image, predictions are sorted by score, descending and stable (ties keep file
   order), as the official ``read_pred`` does. The common Python port skips this step; on
   files already in that order the result equals the port's bit for bit.
2. Scores are min-max normalised over all predictions of the evaluated images:
   ``(s - min) / (max - min)`` in float64.
3. Per image with at least one box and one prediction, each prediction in order is
   compared with every box of the image (IoU with the "+1" convention, ``x2 = x + w``)
   and takes the box of highest IoU (first on ties). If that IoU is ``>= 0.5``: on a
   "don't care" box (not counted in the setting) the prediction is dropped from the
   proposal count; on a counted box not yet recalled the box becomes recalled.
4. For the 1000 thresholds ``1 - (t + 1) / 1000`` and every image: the proposals scored
   ``>=`` the threshold (less the dropped ones) and the boxes they recalled; summed over
   images. Precision = recalled / proposals, recall = recalled / counted faces (every
   counted box of every evaluated image, also of images without predictions).
5. AP: VOC all-point interpolation (precision envelope, sum of recall steps times
   precision) over the 1000 points, with the port's numpy arithmetic.

Implementation: one sort of all predictions, the best-box search in a Cython kernel
(``_eval_kernel.best_overlaps``; a chunked numpy twin gives the identical result when the
extension is not built), the greedy recall state per setting with ``np.unique`` (a
prediction recalls a box iff it is the first one matched to it, since a counted box is
only ever set to "recalled"), and the 1000-threshold accumulation with ``searchsorted`` +
``bincount`` + ``cumsum``. Counts are exact integers, so every precision, recall and AP
equals the literal loop-for-loop computation bit for bit. The work is split in two:
:func:`match_predictions` (steps 1-4, per prediction: :class:`Matching`) and
:func:`evaluate_matching` (the sums over images), so the image bootstrap
(:mod:`scrfd_ref.widerface.bootstrap`) reweights the very same matches.

Defined behaviour where the official tools divide by zero (no NaN ever leaves this
module):

* **Constant scores** (all predictions of the evaluated set have the same score, including
  a single prediction): every normalised score is 1.0 (every prediction counts at every
  threshold). The official ``(s - min) / 0`` gives NaN and AP 0 in the port.
* **Thresholds with no proposals** (above the highest-scored counted prediction):
  precision 0.0 (the port gives NaN). These points have recall 0 and do not change the AP.
* **Zero counted faces** in a setting: recall 0.0 at every threshold and AP 0.0 (the port
  gives NaN).
* **Images without predictions** (empty file, or missing file with ``allow_missing``):
  no proposals; their counted boxes still count as misses. **Images without boxes**:
  their predictions take part in the score normalisation but are not matched (as in the
  official tool, they are not false positives).
* **No predictions at all**: AP 0.0 everywhere.

Score range: the true minimum and maximum of the evaluated scores. The official MATLAB
code starts its running max / min at ``realmin('single')`` / ``realmax('single')`` and the
Python port at 0 / 1; all three agree whenever the scores lie in ``[0, 1]`` (detector
confidences), and the true range is what "min-max normalisation" means otherwise.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from scrfd_ref.core.errors import InputError, ScrfdRefError
from scrfd_ref.formats.ground_truth import GroundTruth
from scrfd_ref.formats.wider_txt import list_event_dirs, read_prediction_dir
from scrfd_ref.widerface.result import (  # noqa: F401 - re-exported
    IOU_THRESHOLD,
    THRESH_NUM,
    Matching,
    PRCurve,
    WiderResult,
)

try:  # the compiled kernel is optional; the numpy twin is the fallback
    from scrfd_ref.widerface._eval_kernel import best_overlaps as _cython_best_overlaps
except ImportError:  # pragma: no cover - exercised when the extension is not built
    _cython_best_overlaps = None

HAVE_KERNEL = _cython_best_overlaps is not None
KERNELS: tuple[str, ...] = ("auto", "cython", "numpy")
_PAIR_CHUNK = 1 << 18  # numpy twin: at most this many (prediction, box) pairs at once


def thresholds(thresh_num: int = THRESH_NUM) -> np.ndarray:
    """``(T,)`` float64 ``1 - (t + 1) / T`` for ``t = 0..T-1`` (bit-equal to the port's)."""
    return 1.0 - np.arange(1, thresh_num + 1, dtype=np.float64) / float(thresh_num)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point AP, with the official port's float64 arithmetic (same summation).

    Args:
        recall: ``(T,)`` recall per threshold (non-decreasing).
        precision: ``(T,)`` precision per threshold.
    """
    mrec = np.concatenate(([0.0], np.asarray(recall, np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, np.float64), [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def normalise_scores(scores: np.ndarray) -> np.ndarray:
    """Min-max normalise ``scores`` to ``[0, 1]`` (float64); all 1.0 when they are constant.

    Raises:
        InputError: the score range overflows float64.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s.copy()
    lo = s.min()
    hi = s.max()
    diff = hi - lo
    if diff == 0:
        return np.ones_like(s)
    if not np.isfinite(diff):
        raise InputError(f"score range {lo!r}..{hi!r} is too wide to normalise in float64")
    return (s - lo) / diff


def _best_overlaps_numpy(pred: np.ndarray, pred_off: np.ndarray, gt: np.ndarray,
                         gt_off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of ``_eval_kernel.best_overlaps`` (same arithmetic, chunked pairs)."""
    n = pred.shape[0]
    best = np.full(n, -1, dtype=np.int64)
    biou = np.zeros(n, dtype=np.float64)
    n_img = pred_off.size - 1
    per_img_gt = np.diff(gt_off)
    per_img_pred = np.diff(pred_off)
    img_of_pred = np.repeat(np.arange(n_img), per_img_pred)
    cnt = per_img_gt[img_of_pred]  # boxes to compare with, per prediction
    todo = np.flatnonzero(cnt > 0)
    if todo.size == 0:
        return best, biou
    gx1, gy1 = gt[:, 0], gt[:, 1]
    gx2 = gt[:, 0] + gt[:, 2]
    gy2 = gt[:, 1] + gt[:, 3]
    garea = (gx2 - gx1 + 1) * (gy2 - gy1 + 1)
    csum = np.cumsum(cnt[todo])
    start = 0
    while start < todo.size:
        base = csum[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(csum, base + _PAIR_CHUNK, side="right")))
        sel = todo[start:stop]
        c = cnt[sel]
        seg = np.cumsum(c) - c  # segment starts in the pair arrays
        total = int(c.sum())
        p = np.repeat(sel, c)
        g = np.repeat(gt_off[img_of_pred[sel]] - seg, c) + np.arange(total)
        px1, py1 = pred[p, 0], pred[p, 1]
        px2 = pred[p, 0] + pred[p, 2]
        py2 = pred[p, 1] + pred[p, 3]
        parea = (px2 - px1 + 1) * (py2 - py1 + 1)
        iw = np.minimum(px2, gx2[g]) - np.maximum(px1, gx1[g]) + 1
        ih = np.minimum(py2, gy2[g]) - np.maximum(py1, gy1[g]) + 1
        with np.errstate(all="ignore"):
            inter = iw * ih
            o = np.where((iw > 0) & (ih > 0), inter / (parea + garea[g] - inter), 0.0)
        mx = np.maximum.reduceat(o, seg)
        local = np.where(o == np.repeat(mx, c), np.arange(total), total)
        first = np.minimum.reduceat(local, seg)
        best[sel] = g[first]
        biou[sel] = mx
        start = stop
    return best, biou


def _pick_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ScrfdRefError(f"unknown evaluation kernel {kernel!r}; choose one of {KERNELS}")
    if kernel == "cython" and not HAVE_KERNEL:
        raise ScrfdRefError("the Cython evaluation kernel is not built "
                            "(python setup.py build_ext --inplace); use kernel='numpy'")
    if kernel == "auto":
        return "cython" if HAVE_KERNEL else "numpy"
    return kernel


def _as_dets(a: object, key: tuple[str, str]) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 5), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise InputError(f"predictions for {key[0]}/{key[1]}: expected (n, 5) x y w h score, "
                         f"got shape {arr.shape}")
    return arr


def _check_values(p: np.ndarray, keys: Sequence[tuple[str, str]], img: np.ndarray) -> None:
    """Finite values and finite "+1" areas (so no IoU can be NaN).

    Negative widths and heights are accepted as the official evaluation accepts them
    (``x2 = x + w`` is then left of ``x``; such a box overlaps nothing unless ``w > -1``).
    """
    with np.errstate(all="ignore"):
        area = (p[:, 0] + p[:, 2] - p[:, 0] + 1) * (p[:, 1] + p[:, 3] - p[:, 1] + 1)
    ok = np.isfinite(p).all(axis=1) & np.isfinite(area)
    if not ok.all():
        k = int(np.flatnonzero(~ok)[0])
        e, n = keys[img[k]]
        raise InputError(f"predictions for {e}/{n}: row {p[k].tolist()} is not finite or "
                         f"too large")


def match_predictions(predictions: Mapping[tuple[str, str], np.ndarray], gt: GroundTruth, *,
                      events: Iterable[str] | None = None,
                      images: Iterable[tuple[str, str]] | None = None,
                      allow_missing: bool = False, kernel: str = "auto",
                      iou_threshold: float = IOU_THRESHOLD,
                      thresh_num: int = THRESH_NUM) -> Matching:
    """Steps 1-4 of the protocol (sort, normalise, match, threshold index) per prediction.

    Arguments, checks and errors as :func:`evaluate`, which sums the result over images.

    Returns:
        :class:`Matching`.
    """
    used = _pick_kernel(kernel)
    sub = gt.select(events, images) if (events is not None or images is not None) else gt
    gt_keys = set(gt.keys())
    unknown = [k for k in predictions if tuple(k) not in gt_keys]
    if unknown:
        names = ", ".join("/".join(map(str, k)) for k in unknown[:5])
        raise InputError(f"{len(unknown)} prediction(s) for images not in the ground truth "
                         f"{gt.source or ''}: {names}{' ...' if len(unknown) > 5 else ''}")
    keys = sub.keys()
    missing = [k for k in keys if k not in predictions]
    if missing and not allow_missing:
        names = ", ".join("/".join(k) for k in missing[:5])
        raise InputError(f"{len(missing)} of {len(keys)} images have no prediction file: "
                         f"{names}{' ...' if len(missing) > 5 else ''} "
                         f"(allow_missing / --allow-missing treats them as no detections)")
    dets = [_as_dets(predictions[k], k) if k in predictions else np.zeros((0, 5))
            for k in keys]
    n_pred = np.array([d.shape[0] for d in dets], dtype=np.int64)
    n_gt = np.array([img.boxes.shape[0] for img in sub.images], dtype=np.int64)
    pred_off = np.concatenate(([0], np.cumsum(n_pred))).astype(np.int64)
    gt_off = np.concatenate(([0], np.cumsum(n_gt))).astype(np.int64)
    p = np.concatenate(dets) if dets else np.zeros((0, 5))
    g = np.ascontiguousarray(np.concatenate([img.boxes for img in sub.images])
                             if sub.images else np.zeros((0, 4)), dtype=np.float64)
    img_of_pred = np.repeat(np.arange(len(keys)), n_pred)
    _check_values(p, keys, img_of_pred)
    n_inverted = int(np.count_nonzero((p[:, 2] < 0) | (p[:, 3] < 0)))

    # 1. stable descending sort within each image (lexsort is stable); files are usually
    #    sorted already, and then the stable sort is the identity
    rises = (np.diff(p[:, 4]) > 0) & (img_of_pred[1:] == img_of_pred[:-1])
    if rises.any():
        p = p[np.lexsort((-p[:, 4], img_of_pred))]
    # 2. global min-max normalisation
    score = normalise_scores(p[:, 4])
    # 3. best box per prediction
    boxes = np.ascontiguousarray(p[:, :4])
    if used == "cython":
        best, biou = _cython_best_overlaps(boxes, pred_off, g, gt_off)
    else:
        best, biou = _best_overlaps_numpy(boxes, pred_off, g, gt_off)
    evaluated = best >= 0  # predictions of images with at least one box
    hit = evaluated & (biou >= iou_threshold)
    # 4. threshold index from which each prediction counts
    thr = thresholds(thresh_num)
    t0 = thresh_num - np.searchsorted(thr[::-1], score, side="right")

    proposals: dict[str, np.ndarray] = {}
    recalled: dict[str, np.ndarray] = {}
    faces: dict[str, np.ndarray] = {}
    for s in sub.settings:
        per_img = [img.counted[s] for img in sub.images]
        counted = np.zeros(g.shape[0], dtype=bool)
        if per_img:
            sizes = np.array([a.size for a in per_img], dtype=np.int64)
            counted[np.concatenate(per_img) + np.repeat(gt_off[:-1], sizes)] = True
        faces[s] = np.array([a.size for a in per_img], dtype=np.int64)
        on_counted = hit.copy()
        on_counted[hit] = counted[best[hit]]
        proposal = evaluated & ~(hit & ~on_counted)
        cand = np.flatnonzero(on_counted)
        _, first = np.unique(best[cand], return_index=True)
        recalls = np.zeros(p.shape[0], dtype=bool)
        recalls[cand[first]] = True
        proposals[s] = proposal
        recalled[s] = recalls
    raw = np.ascontiguousarray(p[:, 4])
    for a in (img_of_pred, t0, raw, *proposals.values(), *recalled.values(), *faces.values()):
        a.setflags(write=False)
    return Matching(keys=tuple(keys), events=sub.events, settings=tuple(sub.settings),
                    missing=tuple(missing), kernel=used, image=img_of_pred, t0=t0,
                    proposal=proposals, recalls=recalled, faces=faces,
                    thresh_num=int(thresh_num), iou_threshold=float(iou_threshold),
                    inverted=n_inverted, score=raw)


def evaluate(predictions: Mapping[tuple[str, str], np.ndarray], gt: GroundTruth, *,
             events: Iterable[str] | None = None,
             images: Iterable[tuple[str, str]] | None = None,
             allow_missing: bool = False, kernel: str = "auto",
             iou_threshold: float = IOU_THRESHOLD,
             thresh_num: int = THRESH_NUM) -> WiderResult:
    """Official-protocol AP for every setting of ``gt`` (see the module docstring).

    Args:
        predictions: ``{(event, name): (n, 5) x y w h score}`` in any row order; names
            without ``.jpg``. Entries of images outside the selection are ignored.
        gt: the ground truth.
        events: evaluate only these events (``None``: all events of ``gt``).
        images: evaluate only these ``(event, name)`` images (within ``events``).
        allow_missing: treat an evaluated image without an entry in ``predictions`` as
            having no detections; otherwise that is an error.
        kernel: ``"auto"`` (Cython when built), ``"cython"`` or ``"numpy"``; same result.
        iou_threshold: match threshold (official: 0.5).
        thresh_num: number of score thresholds (official: 1000).

    Returns:
        :class:`WiderResult`.

    Raises:
        InputError: unknown events or images, predictions for images not in the ground
            truth, missing predictions (count and first names) without ``allow_missing``,
            or malformed prediction arrays (image named).
        ScrfdRefError: ``kernel="cython"`` without the built extension.
    """
    return evaluate_matching(match_predictions(predictions, gt, events=events, images=images,
                                               allow_missing=allow_missing, kernel=kernel,
                                               iou_threshold=iou_threshold,
                                               thresh_num=thresh_num))


def evaluate_matching(m: Matching) -> WiderResult:
    """Steps 4-5 of the protocol: sum the matches of :func:`match_predictions` over the
    images (counts per threshold), precision, recall and AP per setting."""
    thresh_num = m.thresh_num
    thr = thresholds(thresh_num)

    def counts(mask: np.ndarray) -> np.ndarray:
        return np.cumsum(np.bincount(m.t0[mask], minlength=thresh_num + 1))[:thresh_num]

    aps: dict[str, float] = {}
    curves: dict[str, PRCurve] = {}
    faces: dict[str, int] = {}
    for s in m.settings:
        n_faces = int(m.faces[s].sum())
        prop_c = counts(m.proposal[s])
        rec_c = counts(m.recalls[s])
        with np.errstate(all="ignore"):
            precision = np.where(prop_c > 0, rec_c / np.maximum(prop_c, 1).astype(np.float64),
                                 0.0)
        recall = rec_c / float(n_faces) if n_faces else np.zeros(thresh_num)
        for a in (thr, prop_c, rec_c, precision, recall):
            a.setflags(write=False)
        curves[s] = PRCurve(thresholds=thr, proposals=prop_c, recalled=rec_c,
                            precision=precision, recall=recall)
        aps[s] = voc_ap(recall, precision)
        faces[s] = n_faces
    return WiderResult(ap=aps, curves=curves,
                       faces=faces, images=len(m.keys),
                       predictions=int(m.t0.size), events=m.events,
                       missing=m.missing, kernel=m.kernel, settings=m.settings,
                       iou_threshold=m.iou_threshold, thresh_num=int(thresh_num),
                       inverted=m.inverted)


def evaluate_dir(pred_dir: str | Path, gt: GroundTruth, *, events: Iterable[str] | None = None,
                 allow_missing: bool = False, kernel: str = "auto") -> WiderResult:
    """Read ``<pred_dir>/<event>/<name>.txt`` and :func:`evaluate` them.

    In full mode (``events=None``) every event of ``gt`` is read; an absent event folder or
    file is an error unless ``allow_missing``. Event folders that are not in ``gt`` are an
    error (a wrong ``--pred`` or ``--gt``).

    Raises:
        DataMissingError: ``pred_dir`` does not exist.
        InputError: malformed files, missing predictions (see :func:`evaluate`), unknown
            event folders.
    """
    preds = read_predictions_for(pred_dir, gt, events=events, allow_missing=allow_missing)
    chosen = list(dict.fromkeys(events)) if events is not None else None
    return evaluate(preds, gt, events=chosen, allow_missing=allow_missing, kernel=kernel)


def read_predictions_for(pred_dir: str | Path, gt: GroundTruth, *,
                         events: Iterable[str] | None = None,
                         allow_missing: bool = False) -> dict[tuple[str, str], np.ndarray]:
    """The prediction files of ``pred_dir`` that :func:`evaluate_dir` evaluates against ``gt``.

    Same checks as :func:`evaluate_dir` (unknown events, event folders not in ``gt`` in
    full mode, absent event folders unless ``allow_missing``, malformed files).

    Returns:
        ``{(event, name): (n, 5) float64}``.
    """
    root = Path(pred_dir)
    chosen = list(dict.fromkeys(events)) if events is not None else list(gt.events)
    unknown_ev = [e for e in chosen if e not in gt.events]
    if unknown_ev:
        raise InputError(f"unknown event(s) {', '.join(unknown_ev[:5])} (not in {gt.source})")
    if events is None and root.is_dir():
        extra = [e for e in list_event_dirs(root) if e not in gt.events]
        if extra:
            raise InputError(f"{root}: event folder(s) not in the ground truth: "
                             f"{', '.join(extra[:5])}")
    return read_prediction_dir(root, chosen, missing_ok=allow_missing)
