"""Comparators: a device run against the fp32 reference, at head and detection level.

Pure functions over arrays; gates (thresholds) live in :mod:`scrfd_ref.conformance.gates`.

Head level (per output head, all compared images together): cosine similarity, max and
mean absolute error, SNR in dB (``10 log10(sum ref^2 / sum (dev - ref)^2)``, ``inf`` when
equal), the share of elements within ``atol + rtol * |ref|``, non-finite count, and the
image with the largest error. Heads are compared in the common form of
:class:`~scrfd_ref.core.heads.Heads` (scores after sigmoid, distances in stride units), so
a device-layout dump and a standard-layout model compare alike.

Detection level (per image): reference and device detections matched one-to-one by IoU
(Hungarian assignment on ``1 - IoU``, "+1" IoU, pairs below ``iou_match`` never match);
recall and precision against the reference, mean IoU of matches, max score delta,
landmark error in pixels. Detections near the score floor may legitimately cross it on
either side, so recall counts reference detections with ``score >= floor + margin``
(matched against device detections ``>= floor - margin``) and precision counts device
detections ``>= floor + margin`` (matched against reference ``>= floor - margin``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from scrfd_ref.core.detections import Detections
from scrfd_ref.core.heads import Heads
from scrfd_ref.core.nms import box_iou

#: SNR of a head that matches exactly (dB); keeps gains finite
SNR_CAP = 80.0


def head_names(heads: Heads) -> list[str]:
    """``score_8 .. bbox_32 [.. kps_32]`` in the standard output order."""
    kinds = ["score", "bbox"] + (["kps"] if heads.kps is not None else [])
    return [f"{k}_{s}" for k in kinds for s in heads.strides]


def head_arrays(heads: Heads, image: int) -> dict[str, np.ndarray]:
    """Image ``image``'s heads as ``{name: float32 array}`` (common form)."""
    groups = [heads.scores, heads.boxes] + ([heads.kps] if heads.kps is not None else [])
    names = head_names(heads)
    return {n: a[image] for n, a in zip(names, [a for g in groups for a in g])}


@dataclass
class HeadStats:
    """Error statistics of one head over the compared images."""

    name: str
    elements: int = 0
    cosine: float = 1.0
    max_abs: float = 0.0
    mean_abs: float = 0.0
    snr_db: float = float("inf")
    within_tol: float = 1.0
    nonfinite: int = 0
    worst_image: str | None = None
    shape_ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (inf written as a string)."""
        d = asdict(self)
        return {k: (str(v) if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in d.items()}


def _cosine_snr(dot: float, ref_sq: float, dev_sq: float, err_sq: float) -> tuple[float, float]:
    denom = np.sqrt(ref_sq) * np.sqrt(dev_sq)
    cosine = dot / denom if denom > 0 else (1.0 if err_sq == 0 else 0.0)
    snr = float("inf") if err_sq == 0 else 10 * np.log10(max(ref_sq, 1e-300) / err_sq)
    return float(cosine), float(snr)


def cosine_snr(ref: np.ndarray, dev: np.ndarray) -> tuple[float, float]:
    """Cosine similarity and SNR (dB) of ``dev`` against ``ref`` (same shape; non-finite
    device values count as 0), as :func:`compare_heads` computes them per head."""
    acc = _HeadAccumulator("", 0.0, 0.0)
    acc.add(np.asarray(ref), np.asarray(dev), "")
    stats = acc.result()
    return stats.cosine, stats.snr_db


@dataclass
class _HeadAccumulator:
    name: str
    atol: float
    rtol: float
    n: int = 0
    dot: float = 0.0
    ref_sq: float = 0.0
    dev_sq: float = 0.0
    err_sq: float = 0.0
    abs_sum: float = 0.0
    within: int = 0
    nonfinite: int = 0
    max_abs: float = 0.0
    worst: str | None = None
    shape_ok: bool = True

    def add(self, ref: np.ndarray, dev: np.ndarray, image: str) -> None:
        if ref.shape != dev.shape:
            self.shape_ok = False
            self.worst = self.worst or image
            return
        r = ref.astype(np.float64).ravel()
        d = dev.astype(np.float64).ravel()
        bad = ~np.isfinite(d)
        if bad.any():
            self.nonfinite += int(bad.sum())
            self.max_abs, self.worst = float("inf"), image
            d = np.where(bad, 0.0, d)
        err = d - r
        a = np.abs(err)
        self.n += r.size
        self.dot += float(r @ d)
        self.ref_sq += float(r @ r)
        self.dev_sq += float(d @ d)
        self.err_sq += float(err @ err)
        self.abs_sum += float(a.sum())
        self.within += int(np.count_nonzero(a <= self.atol + self.rtol * np.abs(r)))
        m = float(a.max(initial=0.0))
        if self.worst is None or m > self.max_abs:
            self.max_abs, self.worst = m, image

    def result(self) -> HeadStats:
        if self.n == 0:
            return HeadStats(self.name, shape_ok=self.shape_ok, worst_image=self.worst,
                             nonfinite=self.nonfinite)
        cosine, snr = _cosine_snr(self.dot, self.ref_sq, self.dev_sq, self.err_sq)
        return HeadStats(self.name, self.n, float(cosine), self.max_abs, self.abs_sum / self.n,
                         float(snr), self.within / self.n, self.nonfinite, self.worst, self.shape_ok)


def compare_heads(pairs: Sequence[tuple[str, Heads, int, Heads, int]], atol: float,
                  rtol: float) -> list[HeadStats]:
    """Head statistics over images.

    Args:
        pairs: ``(image name, reference heads, index in them, device heads, index)``.
        atol, rtol: element tolerance for the ``within_tol`` share.
    """
    accs: dict[str, _HeadAccumulator] = {}
    for image, ref, ri, dev, di in pairs:
        ref_arrays, dev_arrays = head_arrays(ref, ri), head_arrays(dev, di)
        for name, r in ref_arrays.items():
            acc = accs.setdefault(name, _HeadAccumulator(name, atol, rtol))
            d = dev_arrays.get(name)
            if d is None:
                acc.shape_ok = False
                continue
            acc.add(r, d, image)
    return [a.result() for a in accs.values()]


@dataclass
class ImageMatch:
    """Detection-level comparison of one image.

    Rates are None where they are undefined (no reference face above the floor: no
    recall; no device face: no precision; no matched pair: no IoU, score delta or
    landmark error; a side without landmarks: no landmark error), never a default that
    would pass a gate. Pooled rates use the counts.
    """

    image: str
    ref_count: int
    dev_count: int
    recall: float | None
    precision: float | None
    mean_iou: float | None
    max_score_delta: float | None
    landmark_err_px: float | None
    matched: int = 0
    missed: list[int] = field(default_factory=list)
    found: int = 0          # reference faces above the floor that the device matched
    precise: int = 0        # device faces above the floor matched to a reference face
    iou_sum: float = 0.0    # sum of the matched pairs' IoU

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["missed"] = list(map(int, self.missed))
        return d


def match_detections(ref: Detections, dev: Detections, *, iou_match: float = 0.5,
                     floor: float = 0.0, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching (Hungarian on ``1 - IoU``) of detections with score ``>= floor - margin``.

    Returns ``(ref index, dev index, iou)`` arrays of the matched pairs (IoU ``>= iou_match``).
    """
    lo = floor - margin
    ri = np.flatnonzero(ref.scores >= lo)
    di = np.flatnonzero(dev.scores >= lo)
    if ri.size == 0 or di.size == 0:
        return np.empty(0, int), np.empty(0, int), np.empty(0, np.float32)
    iou = box_iou(ref.boxes[ri], dev.boxes[di]).astype(np.float64)
    iou = np.nan_to_num(iou, nan=0.0)
    cost = np.where(iou >= iou_match, 1.0 - iou, 1e6)
    r, d = linear_sum_assignment(cost)
    ok = iou[r, d] >= iou_match
    return ri[r[ok]], di[d[ok]], iou[r[ok], d[ok]].astype(np.float32)


def compare_detections(image: str, ref: Detections, dev: Detections, *, iou_match: float = 0.5,
                       floor: float = 0.0, margin: float = 0.0) -> ImageMatch:
    """Detection-level statistics of one image (see the module docstring for the floor)."""
    r_idx, d_idx, ious = match_detections(ref, dev, iou_match=iou_match, floor=floor, margin=margin)
    hi = floor + margin
    ref_strict = np.flatnonzero(ref.scores >= hi)
    dev_strict = np.flatnonzero(dev.scores >= hi)
    matched_ref = set(r_idx.tolist())
    matched_dev = set(d_idx.tolist())
    found = sum(1 for i in ref_strict if i in matched_ref)
    precise = sum(1 for i in dev_strict if i in matched_dev)
    score_delta = (float(np.abs(ref.scores[r_idx] - dev.scores[d_idx]).max())
                   if r_idx.size else None)
    lm = None
    if ref.landmarks is not None and dev.landmarks is not None and r_idx.size:
        err = np.linalg.norm(ref.landmarks[r_idx].astype(np.float64)
                             - dev.landmarks[d_idx].astype(np.float64), axis=-1)
        lm = float(err.max())
    return ImageMatch(image, int(ref_strict.size), int(dev_strict.size),
                      found / ref_strict.size if ref_strict.size else None,
                      precise / dev_strict.size if dev_strict.size else None,
                      float(ious.mean()) if ious.size else None, score_delta, lm,
                      int(r_idx.size), [int(i) for i in ref_strict if i not in matched_ref],
                      found, precise, float(ious.astype(np.float64).sum()))


def count_above(dets: Sequence[Detections], floor: float) -> int:
    """Total detections with ``score >= floor`` over images."""
    return int(sum(np.count_nonzero(d.scores >= floor) for d in dets))
