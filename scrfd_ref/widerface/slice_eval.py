"""AP and recall at the operating point per slice (:mod:`scrfd_ref.widerface.slices`), for
one prediction set and paired (device vs reference) with bootstrap intervals.

Per slice:

* **AP**: the official protocol's AP with the slice's faces as the counted set
  (:func:`~scrfd_ref.widerface.slices.slice_ground_truth`), computed by
  :func:`~scrfd_ref.widerface.evaluate.evaluate_matching`, exactly;
* **recall at the operating point**: the slice's faces recalled by a prediction whose raw
  score is ``>= operating_score`` (the deployment threshold, 0.5), over the slice's faces.
  The official matching is greedy in score order, so a face counts as recalled at a
  threshold exactly when the first prediction matched to it scores at least that much:
  this is the protocol's own recall, read at a raw score instead of one of its 1000
  normalised thresholds.

Paired (:func:`paired_slices_matchings`): the image bootstrap of
:mod:`scrfd_ref.widerface.bootstrap` (same resamples for both sets, the same weights for
the AP and the recall), per slice the delta ``b - a`` of the AP and of the recall with

* ``*_interval``: the percentile interval at ``confidence`` (as the overall AP's);
* ``*_corrected``: the **Bonferroni** interval for the family of ``k`` judged quantities
  (two per slice with at least ``min_faces`` faces): ``delta +- z(1 - (1 - c) / 2k) * se``,
  ``se`` the bootstrap standard deviation of the delta, widened to contain the percentile
  interval. A normal quantile, because the percentile interval at ``1 - 0.05 / 30`` would
  need 6000 resamples for five of them beyond each end; the hull keeps the corrected
  interval never narrower than the plain one.

A resample in which a slice has no face measures neither its AP nor its recall: both
intervals of that slice are then undefined (``nan`` ends, ``None`` in JSON), never
narrowed by a delta of 0 that nothing measured.

How the verdicts use them (:mod:`scrfd_ref.conformance.slice_checks`): a slice passes on
its plain interval (the level passes only when every slice does: an intersection-union
test, whose error is at most one slice's, needs no correction) and fails only on its
corrected interval (a claim that *some* slice is worse, made among ``k``: the correction
keeps the family-wise false-failure rate at ``1 - c``).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from scrfd_ref.core.errors import InputError
from scrfd_ref.formats.ground_truth import GroundTruth
from scrfd_ref.widerface.bootstrap import Interval, pairing_problem, percentile_interval
from scrfd_ref.widerface.evaluate import evaluate_matching, match_predictions
from scrfd_ref.widerface.resample import (
    CONFIDENCE,
    RESAMPLES,
    SEED,
    check_params,
    image_counts,
    iter_resample_weights,
    weighted_ap,
)
from scrfd_ref.widerface.result import Matching
from scrfd_ref.widerface.slices import SLICES, Slice, slice_ground_truth

#: the deployment operating point: a face counts as found by a detection scored >= this
OPERATING_SCORE = 0.5


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def found_per_image(m: Matching, operating_score: float) -> dict[str, np.ndarray]:
    """Setting -> ``(N,)`` faces of each image recalled by a prediction scored
    ``>= operating_score`` (the protocol's recall at that raw score)."""
    if m.score is None:
        raise InputError("the matching has no raw scores (match_predictions keeps them)")
    above = m.score >= operating_score
    n = len(m.keys)
    return {s: np.bincount(m.image[m.recalls[s] & above], minlength=n).astype(np.int64)
            for s in m.settings}


def _recall(found: np.ndarray, faces: np.ndarray) -> float:
    total = int(faces.sum())
    return float(found.sum()) / total if total else math.nan


@dataclass(frozen=True)
class SliceRow:
    """One slice of one prediction set: its faces, AP and recall at the operating point
    (``nan`` without faces)."""

    name: str
    faces: int
    ap: float
    recall: float

    def to_dict(self) -> dict:
        """JSON-ready dict (``None`` for an undefined recall)."""
        return {"faces": self.faces, "ap": self.ap if self.faces else None,
                "recall": _num(self.recall)}


@dataclass(frozen=True)
class SliceEvaluation:
    """Every slice of one prediction set.

    Attributes:
        slices: slice names in report order; ``rows[name]`` per slice (also ``self[name]``).
        images: evaluated images; operating_score: the recall's score threshold.
    """

    slices: tuple[str, ...]
    rows: Mapping[str, SliceRow]
    images: int
    operating_score: float

    def __getitem__(self, name: str) -> SliceRow:
        return self.rows[name]

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"images": self.images, "operating_score": self.operating_score,
                "base_setting": "hard", "slices": {s: self.rows[s].to_dict()
                                                   for s in self.slices}}


def _sliced(gt: GroundTruth, slices: tuple[Slice, ...], events: Iterable[str] | None,
            images: Iterable[tuple[str, str]] | None
            ) -> tuple[GroundTruth, Callable[[Mapping], dict]]:
    """The slices of the selected images only (slicing all 3226 val images costs a second)
    and the filter of a prediction set for them: predictions of images outside the
    selection are left out, those of images the ground truth does not have are kept, so
    that ``match_predictions`` refuses them as it does against the full ground truth."""
    if events is None and images is None:
        return slice_ground_truth(gt, slices), dict
    sub = gt.select(events, images)
    chosen, known = set(sub.keys()), set(gt.keys())

    def kept(predictions: Mapping) -> dict:
        return {k: v for k, v in predictions.items()
                if tuple(k) in chosen or tuple(k) not in known}
    return slice_ground_truth(sub, slices), kept


def slice_matching(predictions: Mapping[tuple[str, str], np.ndarray], gt: GroundTruth, *,
                   slices: tuple[Slice, ...] = SLICES, **options) -> Matching:
    """:func:`~scrfd_ref.widerface.evaluate.match_predictions` against the slices of ``gt``
    (``options``: events, images, allow_missing, kernel, iou_threshold, thresh_num)."""
    sg, kept = _sliced(gt, slices, options.pop("events", None), options.pop("images", None))
    return match_predictions(kept(predictions), sg, **options)


def evaluate_slice_matching(m: Matching, operating_score: float = OPERATING_SCORE
                            ) -> SliceEvaluation:
    """The slices of one matched prediction set (:func:`slice_matching`)."""
    res = evaluate_matching(m)
    found = found_per_image(m, operating_score)
    rows = {s: SliceRow(s, int(res.faces[s]), float(res.ap[s]),
                        _recall(found[s], m.faces[s])) for s in m.settings}
    return SliceEvaluation(m.settings, rows, len(m.keys), float(operating_score))


def evaluate_slices(predictions: Mapping[tuple[str, str], np.ndarray], gt: GroundTruth, *,
                    operating_score: float = OPERATING_SCORE,
                    slices: tuple[Slice, ...] = SLICES, **options) -> SliceEvaluation:
    """AP and recall at ``operating_score`` per slice of one prediction set.

    Args:
        predictions: ``{(event, name): (n, 5) x y w h score}``.
        gt: a ground truth with face attributes (``wider_face_val.mat``).
        operating_score: the recall's raw score threshold (0.5).
        slices: the slices (all of :data:`~scrfd_ref.widerface.slices.SLICES`).
        options: as :func:`~scrfd_ref.widerface.evaluate.evaluate` (events, images,
            allow_missing, kernel, ...).

    Raises:
        UsageError: ``gt`` has no attributes; InputError: as ``evaluate``.
    """
    return evaluate_slice_matching(slice_matching(predictions, gt, slices=slices, **options),
                                   operating_score)


@dataclass(frozen=True)
class SliceComparison:
    """One slice of a paired comparison (``a`` the reference, ``b`` the compared set).

    Attributes:
        name, faces: the slice and its faces.
        ap_a, ap_b, recall_a, recall_b: both sets' AP and recall at the operating point
            (``nan`` for a slice without faces).
        ap_delta, recall_delta: ``b - a``.
        ap_interval, recall_interval: percentile intervals of the deltas at the confidence.
        ap_corrected, recall_corrected: their Bonferroni intervals for the family (module
            docstring).
    """

    name: str
    faces: int
    ap_a: float
    ap_b: float
    recall_a: float
    recall_b: float
    ap_delta: float
    recall_delta: float
    ap_interval: Interval
    recall_interval: Interval
    ap_corrected: Interval
    recall_corrected: Interval

    def to_dict(self) -> dict:
        """JSON-ready dict (intervals as ``[low, high]``, ``None`` where undefined)."""
        return {"faces": self.faces, "ap_a": _num(self.ap_a), "ap_b": _num(self.ap_b),
                "recall_a": _num(self.recall_a), "recall_b": _num(self.recall_b),
                "ap_delta": _num(self.ap_delta), "recall_delta": _num(self.recall_delta),
                "ap_interval": self.ap_interval.to_list(),
                "recall_interval": self.recall_interval.to_list(),
                "ap_corrected": self.ap_corrected.to_list(),
                "recall_corrected": self.recall_corrected.to_list()}


@dataclass(frozen=True, eq=False)
class PairedSlices:
    """A paired bootstrap of two prediction sets, per slice.

    Attributes:
        slices: names in report order; ``comparisons[name]`` (also ``self[name]``).
        images, resamples, confidence, seed: the bootstrap's parameters.
        operating_score: the recall's score threshold.
        family: ``k``, the judged quantities the correction divides by (two per slice with
            at least ``min_faces`` faces); family_confidence: ``1 - (1 - c) / k``.
        min_faces: slices with fewer faces are outside the family.
        a, b: each set's :class:`SliceEvaluation`.
    """

    slices: tuple[str, ...]
    comparisons: Mapping[str, SliceComparison]
    images: int
    resamples: int
    confidence: float
    seed: int
    operating_score: float
    family: int
    family_confidence: float
    min_faces: int
    a: SliceEvaluation
    b: SliceEvaluation

    def __getitem__(self, name: str) -> SliceComparison:
        return self.comparisons[name]

    def to_dict(self) -> dict:
        """JSON-ready dict: the parameters, then one entry per slice."""
        return {"images": self.images, "resamples": self.resamples,
                "confidence": self.confidence, "seed": self.seed,
                "operating_score": self.operating_score, "base_setting": "hard",
                "correction": {"method": "Bonferroni (normal quantile x bootstrap standard "
                                         "error, hull with the percentile interval)",
                               "family": self.family,
                               "family_confidence": self.family_confidence,
                               "min_faces": self.min_faces},
                "method": "paired percentile bootstrap over images",
                "slices": {s: self.comparisons[s].to_dict() for s in self.slices}}


def corrected_interval(point: float, samples: np.ndarray, plain: Interval, confidence: float,
                       family: int) -> Interval:
    """The Bonferroni interval of ``point`` for a family of ``family`` quantities: ``point
    +- z(1 - (1 - confidence) / (2 family)) * std(samples)``, hull with ``plain``; ``nan``
    ends when the samples are not all finite."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 2 or not np.isfinite(x).all() or not math.isfinite(point):
        return Interval(math.nan, math.nan)
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / (2.0 * max(1, family)))
    half = z * float(np.std(x, ddof=1))
    return Interval(min(point - half, plain.low), max(point + half, plain.high))


def paired_slices_matchings(a: Matching, b: Matching, *,
                            operating_score: float = OPERATING_SCORE,
                            confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                            seed: int = SEED, min_faces: int = 1) -> PairedSlices:
    """Paired bootstrap per slice of two matchings on the slices (:func:`slice_matching`).

    Raises:
        InputError: the two were not matched on the same images and slices.
    """
    check_params(confidence, resamples, seed)
    if a.keys != b.keys:
        why = pairing_problem(a.keys, b.keys) or "the same images in another order"
        raise InputError(f"the two prediction sets are not on the same images: {why}")
    if a.settings != b.settings:
        raise InputError("the two prediction sets were matched against different slices")
    ev_a, ev_b = evaluate_slice_matching(a, operating_score), \
        evaluate_slice_matching(b, operating_score)
    names = a.settings
    faces = np.stack([a.faces[s] for s in names], axis=1).astype(np.float64)  # (N, S)
    found_a = found_per_image(a, operating_score)
    found_b = found_per_image(b, operating_score)
    fa = np.stack([found_a[s] for s in names], axis=1).astype(np.float64)
    fb = np.stack([found_b[s] for s in names], axis=1).astype(np.float64)
    ca, cb = image_counts(a), image_counts(b)
    ap_a, ap_b, rec_a, rec_b = [], [], [], []
    for w in iter_resample_weights(len(a.keys), resamples, seed):
        wf = w.astype(np.float64)
        n_faces = wf @ faces
        # a resample without a face of the slice has no AP there (as it has no recall)
        ap_a.append(np.where(n_faces > 0, weighted_ap(ca, w), np.nan))
        ap_b.append(np.where(n_faces > 0, weighted_ap(cb, w), np.nan))
        with np.errstate(divide="ignore", invalid="ignore"):
            rec_a.append(np.where(n_faces > 0, (wf @ fa) / n_faces, np.nan))
            rec_b.append(np.where(n_faces > 0, (wf @ fb) / n_faces, np.nan))
    d_ap = np.concatenate(ap_b) - np.concatenate(ap_a)
    d_rec = np.concatenate(rec_b) - np.concatenate(rec_a)
    family = 2 * sum(1 for s in names if ev_a[s].faces >= max(1, min_faces))
    comps = {}
    for si, s in enumerate(names):
        ra, rb = ev_a[s], ev_b[s]
        # a slice without faces has no AP (evaluate_matching's 0.0 is no measurement)
        ap_a_s, ap_b_s = (ra.ap, rb.ap) if ra.faces else (math.nan, math.nan)
        ap_delta, rec_delta = ap_b_s - ap_a_s, rb.recall - ra.recall
        ap_iv = percentile_interval(d_ap[:, si], confidence)
        rec_iv = percentile_interval(d_rec[:, si], confidence)
        comps[s] = SliceComparison(
            name=s, faces=ra.faces, ap_a=ap_a_s, ap_b=ap_b_s, recall_a=ra.recall,
            recall_b=rb.recall, ap_delta=ap_delta, recall_delta=rec_delta,
            ap_interval=ap_iv, recall_interval=rec_iv,
            ap_corrected=corrected_interval(ap_delta, d_ap[:, si], ap_iv, confidence, family),
            recall_corrected=corrected_interval(rec_delta, d_rec[:, si], rec_iv, confidence,
                                                family))
    return PairedSlices(slices=names, comparisons=comps, images=len(a.keys),
                        resamples=int(resamples), confidence=float(confidence), seed=int(seed),
                        operating_score=float(operating_score), family=family,
                        family_confidence=1.0 - (1.0 - confidence) / max(1, family),
                        min_faces=int(min_faces), a=ev_a, b=ev_b)


def paired_slices(pred_a: Mapping[tuple[str, str], np.ndarray],
                  pred_b: Mapping[tuple[str, str], np.ndarray], gt: GroundTruth, *,
                  operating_score: float = OPERATING_SCORE, confidence: float = CONFIDENCE,
                  resamples: int = RESAMPLES, seed: int = SEED, min_faces: int = 1,
                  events: Iterable[str] | None = None,
                  images: Iterable[tuple[str, str]] | None = None,
                  allow_missing: bool = False, kernel: str = "auto",
                  slices: tuple[Slice, ...] = SLICES) -> PairedSlices:
    """Paired bootstrap of the per-slice AP and recall deltas ``b - a``.

    Args:
        pred_a: the reference predictions; pred_b: the compared ones, same images.
        gt: a ground truth with face attributes.
        operating_score: the recall's raw score threshold.
        confidence, resamples, seed: the bootstrap (as
            :func:`~scrfd_ref.widerface.bootstrap.paired_bootstrap`).
        min_faces: slices with fewer faces stay outside the correction's family.
        events, images, allow_missing, kernel: as ``evaluate``.
        slices: the slices.

    Raises:
        UsageError: ``gt`` has no attributes; InputError: as ``paired_bootstrap``.
    """
    check_params(confidence, resamples, seed)
    sg, kept = _sliced(gt, slices, events, images)
    opts = dict(allow_missing=allow_missing, kernel=kernel)
    return paired_slices_matchings(match_predictions(kept(pred_a), sg, **opts),
                                   match_predictions(kept(pred_b), sg, **opts),
                                   operating_score=operating_score, confidence=confidence,
                                   resamples=resamples, seed=seed, min_faces=min_faces)


__all__ = ["OPERATING_SCORE", "PairedSlices", "SliceComparison", "SliceEvaluation",
           "SliceRow", "corrected_interval", "evaluate_slice_matching", "evaluate_slices",
           "found_per_image", "paired_slices", "paired_slices_matchings", "slice_matching"]
