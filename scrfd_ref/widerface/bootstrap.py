"""Confidence intervals for WIDER FACE AP: the image bootstrap, single and paired.

How sure is an AP, or a difference of two APs, measured on a few hundred images? Resample
the images with replacement, recompute the AP on each resample, and read the interval off
the spread. For two prediction sets on the same images (a device and its reference, recipe
A and recipe B) the resample is **paired**: the same image multiset for both sides, so what
the two sets share (hard images stay hard for both) cancels in the delta ``b - a`` and the
ratio ``b / a``.

The resamples are computed as reweightings of per-image counts by
:mod:`scrfd_ref.widerface.resample` (1000 resamples of the 3226 val images cost a few
evaluations); it also says why the score normalisation of each set is taken once, from
all of its images, and kept for every resample. The point estimates reported are
:func:`~scrfd_ref.widerface.evaluate.evaluate`'s own APs, exactly.

**Intervals**: percentile bootstrap, ``confidence`` two-sided: the ``(1 - c) / 2`` and
``(1 + c) / 2`` quantiles of the resampled statistic (numpy's linear interpolation). The
ratio is undefined where a resample's ``a`` AP is 0; its interval is then ``nan``. Images
are drawn uniformly with replacement, ``N`` draws per resample, from
``numpy.random.default_rng(seed)``: the same seed, image count and resample count give the
same resamples, hence the same intervals.

**Images to decide** (:func:`images_to_decide`): an interval's half-width ``w`` at ``N``
images shrinks as ``1 / sqrt(N)`` (the standard error of a mean of per-image
contributions; AP is a smooth function of such sums), so the interval stops reaching a
limit at distance ``d`` from the point estimate at about ``N * (w / d) ** 2`` images,
assuming the point estimate stays where it is.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from scrfd_ref.core.errors import InputError
from scrfd_ref.formats.ground_truth import GroundTruth
from scrfd_ref.widerface.evaluate import evaluate_matching, match_predictions
from scrfd_ref.widerface.resample import (
    CONFIDENCE,
    RESAMPLES,
    SEED,
    ImageCounts,
    check_params,
    image_counts,
    iter_resample_weights,
    resample_weights,
    weighted_ap,
)
from scrfd_ref.widerface.result import IOU_THRESHOLD, THRESH_NUM, Matching, WiderResult


@dataclass(frozen=True)
class Interval:
    """A two-sided bootstrap interval ``[low, high]`` (``nan`` ends: undefined)."""

    low: float
    high: float

    def contains(self, value: float) -> bool:
        """``low <= value <= high`` (False for an undefined interval)."""
        return bool(self.low <= value <= self.high)

    def to_list(self) -> list[float | None]:
        """``[low, high]`` (``None`` for an undefined end, so the JSON stays strict)."""
        return [_num(self.low), _num(self.high)]


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """The percentile interval of ``samples`` (``nan`` if any sample is not finite)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0 or not np.isfinite(x).all():
        return Interval(math.nan, math.nan)
    lo, hi = np.quantile(x, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return Interval(float(lo), float(hi))


@dataclass(frozen=True)
class Comparison:
    """One setting of a paired bootstrap: ``a`` is the reference, ``b`` the compared set.

    Attributes:
        setting: ``easy`` / ``medium`` / ``hard`` (or ``all``).
        ap_a, ap_b: the APs of the full sets (equal to ``evaluate``'s).
        delta: ``ap_b - ap_a``; ratio: ``ap_b / ap_a`` (``nan`` when ``ap_a`` is 0).
        ap_a_interval, ap_b_interval, delta_interval, ratio_interval: percentile intervals.
    """

    setting: str
    ap_a: float
    ap_b: float
    delta: float
    ratio: float
    ap_a_interval: Interval
    ap_b_interval: Interval
    delta_interval: Interval
    ratio_interval: Interval

    def to_dict(self) -> dict:
        """JSON-ready dict (intervals as ``[low, high]``)."""
        return {"ap_a": self.ap_a, "ap_b": self.ap_b, "delta": self.delta,
                "ratio": _num(self.ratio), "ap_a_interval": self.ap_a_interval.to_list(),
                "ap_b_interval": self.ap_b_interval.to_list(),
                "delta_interval": self.delta_interval.to_list(),
                "ratio_interval": self.ratio_interval.to_list()}


@dataclass(frozen=True, eq=False)
class PairedBootstrap:
    """A paired bootstrap of two prediction sets on the same images.

    Attributes:
        settings: settings in report order; ``comparisons[s]`` (also ``self[s]``) per setting.
        images: number of evaluated images ``N``.
        resamples, confidence, seed: the bootstrap parameters.
        samples_a, samples_b: setting -> ``(R,)`` AP of each resample.
        result_a, result_b: the full sets' evaluation (``evaluate``'s result).
    """

    settings: tuple[str, ...]
    comparisons: Mapping[str, Comparison]
    images: int
    resamples: int
    confidence: float
    seed: int
    samples_a: Mapping[str, np.ndarray]
    samples_b: Mapping[str, np.ndarray]
    result_a: WiderResult
    result_b: WiderResult

    def __getitem__(self, setting: str) -> Comparison:
        return self.comparisons[setting]

    def to_dict(self) -> dict:
        """JSON-ready dict: parameters, then one entry per setting."""
        return {"images": self.images, "resamples": self.resamples,
                "confidence": self.confidence, "seed": self.seed,
                "method": "paired percentile bootstrap over images",
                "settings": {s: self.comparisons[s].to_dict() for s in self.settings}}


@dataclass(frozen=True, eq=False)
class ApBootstrap:
    """The bootstrap of one prediction set's AP.

    Attributes:
        settings: settings in report order.
        ap: setting -> AP of the full set (``evaluate``'s); interval: setting -> interval.
        images, resamples, confidence, seed: as :class:`PairedBootstrap`.
        samples: setting -> ``(R,)`` AP of each resample.
        result: the full set's evaluation.
    """

    settings: tuple[str, ...]
    ap: Mapping[str, float]
    interval: Mapping[str, Interval]
    images: int
    resamples: int
    confidence: float
    seed: int
    samples: Mapping[str, np.ndarray]
    result: WiderResult

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"images": self.images, "resamples": self.resamples,
                "confidence": self.confidence, "seed": self.seed,
                "settings": {s: {"ap": self.ap[s], "interval": self.interval[s].to_list()}
                             for s in self.settings}}


def pairing_problem(keys_a: Iterable[tuple[str, str]], keys_b: Iterable[tuple[str, str]],
                    names: tuple[str, str] = ("a", "b")) -> str | None:
    """Why two image sets cannot be paired (``None`` when they hold the same images).

    The message counts the images only in one set and names the first few of each.
    """
    a, b = set(map(tuple, keys_a)), set(map(tuple, keys_b))
    if a == b:
        return None
    parts = []
    for name, only in ((names[0], sorted(a - b)), (names[1], sorted(b - a))):
        if only:
            shown = ", ".join("/".join(k) for k in only[:3])
            parts.append(f"{len(only)} image(s) only in {name} ({shown}"
                         f"{' ...' if len(only) > 3 else ''})")
    return "; ".join(parts)


def paired_samples(a: ImageCounts, b: ImageCounts, resamples: int = RESAMPLES,
                   seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``(R, S)`` resampled APs of two sets of per-image counts, the same resamples for
    both (:func:`~scrfd_ref.widerface.resample.resample_weights`)."""
    check_params(CONFIDENCE, resamples, seed, interval=False)
    if a.keys != b.keys:
        why = pairing_problem(a.keys, b.keys) or "the same images in another order"
        raise InputError(f"the two prediction sets are not on the same images: {why}")
    if a.settings != b.settings or a.thresh_num != b.thresh_num:
        raise InputError("the two prediction sets were evaluated with different settings or "
                         "threshold counts")
    sa, sb = [], []
    for w in iter_resample_weights(a.images, resamples, seed):
        sa.append(weighted_ap(a, w))
        sb.append(weighted_ap(b, w))
    return np.concatenate(sa), np.concatenate(sb)


def paired_bootstrap_matchings(a: Matching, b: Matching, *, confidence: float = CONFIDENCE,
                               resamples: int = RESAMPLES, seed: int = SEED
                               ) -> PairedBootstrap:
    """Paired bootstrap of two matched prediction sets (:func:`match_predictions`).

    Raises:
        InputError: the two were not matched on the same images, settings and thresholds.
    """
    check_params(confidence, resamples, seed)
    if a.keys != b.keys:  # checked before either set is summed
        why = pairing_problem(a.keys, b.keys) or "the same images in another order"
        raise InputError(f"the two prediction sets are not on the same images: {why}")
    res_a, res_b = evaluate_matching(a), evaluate_matching(b)
    sa, sb = paired_samples(image_counts(a), image_counts(b), resamples, seed)
    comps, samples_a, samples_b = {}, {}, {}
    for si, s in enumerate(a.settings):
        ap_a, ap_b = float(res_a.ap[s]), float(res_b.ap[s])
        xa, xb = sa[:, si].copy(), sb[:, si].copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = xb / xa
        comps[s] = Comparison(
            setting=s, ap_a=ap_a, ap_b=ap_b, delta=ap_b - ap_a,
            ratio=ap_b / ap_a if ap_a != 0 else math.nan,
            ap_a_interval=percentile_interval(xa, confidence),
            ap_b_interval=percentile_interval(xb, confidence),
            delta_interval=percentile_interval(xb - xa, confidence),
            ratio_interval=percentile_interval(ratios, confidence))
        for arr in (xa, xb):
            arr.setflags(write=False)
        samples_a[s], samples_b[s] = xa, xb
    return PairedBootstrap(settings=a.settings, comparisons=comps, images=len(a.keys),
                           resamples=int(resamples), confidence=float(confidence),
                           seed=int(seed), samples_a=samples_a, samples_b=samples_b,
                           result_a=res_a, result_b=res_b)


def paired_bootstrap(pred_a: Mapping[tuple[str, str], np.ndarray],
                     pred_b: Mapping[tuple[str, str], np.ndarray], gt: GroundTruth, *,
                     confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                     seed: int = SEED, events: Iterable[str] | None = None,
                     images: Iterable[tuple[str, str]] | None = None,
                     allow_missing: bool = False, kernel: str = "auto",
                     iou_threshold: float = IOU_THRESHOLD,
                     thresh_num: int = THRESH_NUM) -> PairedBootstrap:
    """Paired bootstrap of the AP delta ``b - a`` and ratio ``b / a`` per setting.

    Args:
        pred_a: the reference predictions ``{(event, name): (n, 5) x y w h score}``.
        pred_b: the compared predictions, on the same images.
        gt: the ground truth; events, images, allow_missing, kernel, iou_threshold,
            thresh_num: as :func:`~scrfd_ref.widerface.evaluate.evaluate`.
        confidence: two-sided interval level (0.95).
        resamples: number of resamples (1000).
        seed: seed of the resampling (0).

    Returns:
        :class:`PairedBootstrap`.

    Raises:
        InputError: as ``evaluate`` for either set; bad bootstrap parameters.
    """
    check_params(confidence, resamples, seed)
    opts = dict(events=events, images=images, allow_missing=allow_missing, kernel=kernel,
                iou_threshold=iou_threshold, thresh_num=thresh_num)
    return paired_bootstrap_matchings(match_predictions(pred_a, gt, **opts),
                                      match_predictions(pred_b, gt, **opts),
                                      confidence=confidence, resamples=resamples, seed=seed)


def bootstrap_ap(predictions: Mapping[tuple[str, str], np.ndarray], gt: GroundTruth, *,
                 confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                 seed: int = SEED, events: Iterable[str] | None = None,
                 images: Iterable[tuple[str, str]] | None = None,
                 allow_missing: bool = False, kernel: str = "auto",
                 iou_threshold: float = IOU_THRESHOLD,
                 thresh_num: int = THRESH_NUM) -> ApBootstrap:
    """Bootstrap interval of one prediction set's AP per setting (arguments as
    :func:`paired_bootstrap`)."""
    check_params(confidence, resamples, seed)
    m = match_predictions(predictions, gt, events=events, images=images,
                          allow_missing=allow_missing, kernel=kernel,
                          iou_threshold=iou_threshold, thresh_num=thresh_num)
    res = evaluate_matching(m)
    counts = image_counts(m)
    x = np.concatenate([weighted_ap(counts, w)
                        for w in iter_resample_weights(len(m.keys), resamples, seed)])
    samples = {}
    for si, s in enumerate(m.settings):
        samples[s] = x[:, si].copy()
        samples[s].setflags(write=False)
    return ApBootstrap(settings=m.settings, ap={s: float(res.ap[s]) for s in m.settings},
                       interval={s: percentile_interval(samples[s], confidence)
                                 for s in m.settings},
                       images=len(m.keys), resamples=int(resamples),
                       confidence=float(confidence), seed=int(seed), samples=samples,
                       result=res)


def images_to_decide(n_images: int, half_width: float, distance: float) -> float:
    """About how many images would make an interval stop reaching a limit.

    ``n_images * (half_width / distance) ** 2``, rounded up: the half-width shrinks as
    ``1 / sqrt(N)`` and the point estimate is assumed to stay ``distance`` from the limit.

    Args:
        n_images: images behind the interval.
        half_width: the interval's half-width on the limit's side (point to interval end).
        distance: ``|point estimate - limit|``.

    Returns:
        The image count (a float; ``math.inf`` when the point estimate is on the limit,
        ``nan`` when the half-width is undefined).
    """
    if not (math.isfinite(half_width) and math.isfinite(distance)):
        return math.nan
    if distance == 0:
        return math.inf
    return float(math.ceil(n_images * (abs(half_width) / abs(distance)) ** 2))


def images_to_decide_interval(n_images: int, point: float, interval: Interval,
                              limit: float) -> float:
    """:func:`images_to_decide` for ``point`` with ``interval`` against ``limit``: the
    half-width is taken on the limit's side (``point - low`` for a limit below the point,
    ``high - point`` above it)."""
    w = point - interval.low if limit <= point else interval.high - point
    return images_to_decide(n_images, w, abs(point - limit))


__all__ = ["CONFIDENCE", "RESAMPLES", "SEED", "ApBootstrap", "Comparison", "Interval",
           "PairedBootstrap", "bootstrap_ap", "image_counts", "images_to_decide",
           "images_to_decide_interval", "paired_bootstrap", "paired_bootstrap_matchings",
           "paired_samples", "pairing_problem", "percentile_interval", "resample_weights",
           "weighted_ap"]
