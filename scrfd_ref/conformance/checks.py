"""The conformance checks as functions: one device run against the reference, one level at
a time, judged by the gates.

Each check returns a :class:`LevelResult`: the gate rows (:class:`~scrfd_ref.conformance.gates.GateResult`)
and the measured metrics. The pytest suite (``conformance/``) calls these and fails on any
failed row; the fault-injection tests call them directly to show every gate can fail.

Nothing passes by default. A metric the images cannot measure (no foreground anchor on a
stride, no face in a size bucket, no reference face above the floor, no head image in
common, a setting without counted faces) is **inconclusive**, with what the images lack
and what to add; a metric the device should have given (landmarks the reference has, a
match for a face the reference found) is absent and the gate that reads it **fails**
saying so. A metric that does not apply is marked so explicitly (the model has no
landmarks, or the device declares itself landmark-free) and its gate row says why it
passes. AP gates with a bootstrap interval pass or fail only when the whole interval is on
one side of the limit (:meth:`~scrfd_ref.conformance.gates.Gates.check`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from scrfd_ref.conformance.buckets import BUCKETS, compare_anchors, compare_buckets
from scrfd_ref.conformance.compare import (
    ImageMatch,
    compare_detections,
    compare_heads,
    count_above,
)
from scrfd_ref.conformance.gates import GateResult, Gates, worst_verdict


@dataclass
class LevelResult:
    """The gate rows and metrics of one check level for one device."""

    level: str
    rows: list[GateResult]
    metrics: Any
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """``fail`` if a row fails, else ``inconclusive`` if a row is (or there is no
        row), else ``pass``."""
        return worst_verdict([r.verdict for r in self.rows])

    @property
    def passed(self) -> bool:
        """True when every gate row passed (and there is at least one)."""
        return self.verdict == "pass"

    @property
    def failures(self) -> list[str]:
        """The messages of the rows that did not pass (failed, then inconclusive)."""
        return ([r.message for r in self.rows if r.failed]
                + [r.message for r in self.rows if r.inconclusive])

    @property
    def inconclusive(self) -> list[str]:
        """The messages of the inconclusive rows."""
        return [r.message for r in self.rows if r.inconclusive]

    @property
    def failed_gates(self) -> set[str]:
        """Names of the failed gates (inconclusive ones are not failures)."""
        return {r.gate for r in self.rows if r.failed}


def check_heads(reference: Any, device: Any, gates: Gates, dtype: str) -> LevelResult:
    """Per head: shape, NaN/Inf, cosine, SNR, share within atol + rtol |ref|."""
    atol = gates.value(dtype, "heads", "atol")
    rtol = gates.value(dtype, "heads", "rtol")
    pairs = [(k, reference.heads[k], 0, device.heads[k], 0)
             for k in reference.heads if k in device.heads]
    if not pairs:
        rows = gates.check(dtype, "heads", "no head-level image in common: nothing compared",
                           {}, lacking=_no_head_images(gates, "heads"))
        return LevelResult("heads", rows, [])
    stats = compare_heads(pairs, atol, rtol)
    rows = []
    for s in stats:
        measured = {"shape_ok": float(s.shape_ok), "nonfinite": s.nonfinite}
        if s.elements:
            measured.update(cosine=s.cosine, snr_db=s.snr_db, within_tol=s.within_tol)
        rows += gates.check(dtype, "heads", f"{s.name} (worst image {s.worst_image})", measured)
    return LevelResult("heads", rows, [s.to_dict() for s in stats])


def check_anchors(reference: Any, device: Any, gates: Gates, dtype: str) -> LevelResult:
    """Per head, on foreground anchors only (reference score >= ``fg_score_floor``): cosine
    and SNR; per score head, the background's 99th-percentile score against the
    reference's (see :mod:`scrfd_ref.conformance.buckets`)."""
    floor = gates.value(dtype, "heads", "fg_score_floor")
    pairs = [(reference.heads[k], device.heads[k]) for k in reference.heads if k in device.heads]
    if not pairs:
        rows = gates.check(dtype, "anchors", "no head-level image in common: nothing compared",
                           {}, lacking=_no_head_images(gates, "anchors"))
        return LevelResult("anchors", rows, [])
    rows, metrics = [], []
    for s in compare_anchors(pairs, floor):
        na = ({} if s.name.startswith("score_") else
              {"bg_score_p99_delta": "a box / landmark head has no score distribution"})
        lack = {} if s.fg_anchors else {m: _no_foreground(s.name, floor, len(pairs))
                                       for m in ("fg_cosine", "fg_snr_db")}
        if s.name.startswith("score_") and s.bg_ref_p99 is None:
            lack["bg_score_p99_delta"] = (f"every anchor of {s.name} scores >= {floor:g} in "
                                          "the reference: no background to compare")
        rows += gates.check(dtype, "anchors", f"{s.name} ({s.fg_anchors} foreground anchors "
                                              f">= {floor:g})", s.measured(),
                            not_applicable=na, lacking=lack)
        metrics.append({"head": s.name, "fg_anchors": s.fg_anchors, **s.measured(),
                        "bg_ref_p99": s.bg_ref_p99, "bg_dev_p99": s.bg_dev_p99})
    return LevelResult("anchors", rows, metrics)


def check_buckets(reference: Any, device: Any, gates: Gates, dtype: str, *,
                  landmark_free: bool = False) -> LevelResult:
    """Per face-size bucket (the stride whose anchors fit): recall, mean IoU, box scale
    ratio (mean and spread of the log), landmark NME (see
    :mod:`scrfd_ref.conformance.buckets`). A bucket without reference faces is
    inconclusive: the images cannot show that stride working. The scale bias is judged
    on its Student-t interval over the bucket's matched faces (the AP gates' confidence):
    on 3 faces a 15% scaled stride still fails, rounding noise is inconclusive."""
    g = lambda name: gates.value(dtype, "detections", name)  # noqa: E731
    floor_margin = g("score_floor") + g("score_margin")
    keys = [k for k in device.detections if k in reference.detections]
    pairs = [(reference.detections[k], device.detections[k], reference.scales.get(k, 1.0))
             for k in keys]
    stats = compare_buckets(pairs, iou_match=g("iou_match"), floor=g("score_floor"),
                            margin=g("score_margin"))
    ref_lm = any(d.landmarks is not None for d in reference.detections.values())
    dev_lm = any(d.landmarks is not None for d in device.detections.values())
    rows = []
    for (name, lo, hi), st in zip(BUCKETS, stats):
        na: dict[str, str] = {}
        lack: dict[str, str] = {}
        edge = f"{lo:.0f}-{hi:.0f} px" if math.isfinite(hi) else f">= {lo:.0f} px"
        if not ref_lm:
            na = {"bucket_nme_pct": "the model has no landmark heads"}
        elif not dev_lm and landmark_free:
            na = {"bucket_nme_pct": "the device declares itself landmark-free"}
        if not st.ref_faces:
            # the images hold no face of this size: nothing to decide (matched pairs of
            # faces scored inside the margin still measure IoU and scale when there are)
            lack = {m: _no_bucket_face(name, edge, len(keys), floor_margin) for m in
                    (("bucket_recall",) if st.ious else
                     ("bucket_recall", "bucket_mean_iou", "bucket_log_scale_mean",
                      "bucket_log_scale_std", "bucket_nme_pct"))}
        # a scale bias on a few faces decides only when it stands out of their spread
        bias = st.scale_bias_interval(gates.value(dtype, "ap", "bootstrap_confidence"))
        rows += gates.check(dtype, "buckets", f"bucket {name} (faces {edge} at the input, "
                                              f"{st.ref_faces} reference, {len(st.ious)} "
                                              "matched)", st.measured(), not_applicable=na,
                            lacking=lack,
                            intervals={"bucket_log_scale_mean": bias} if bias else None)
    if not keys:
        rows = gates.check(dtype, "buckets", "no image in common: nothing compared", {},
                           lacking={spec.metric: "the device and the reference share no image"
                                    for spec in _bounds("buckets")})
    return LevelResult("buckets", rows, [st.summary() for st in stats])


# ----------------------------------------------------------------------------- what is lacking

#: the stride whose anchors fit each size bucket, and the words for its faces
_STRIDE_OF_BUCKET = {"s8": (8, "small"), "s16": (16, "medium-size"), "s32": (32, "large")}


def _bounds(group: str) -> list:
    from scrfd_ref.conformance.gates import declared

    return [spec for spec in declared(group=group) if spec.kind != "param"]


def _no_head_images(gates: Gates, group: str) -> dict[str, str]:
    """Every metric of ``group``: no image whose raw heads were kept is in both runs."""
    return {spec.metric: "no image whose raw heads were kept is in both runs (the head "
                         "images are chosen among the compared images: --head-images N)"
            for spec in _bounds(group)}


def _no_foreground(head: str, floor: float, images: int) -> str:
    """What the images lack when a head has no foreground anchor."""
    stride = int(head.rsplit("_", 1)[1])
    bucket = {8: "s8", 16: "s16", 32: "s32"}[stride]
    lo, hi = next((b[1], b[2]) for b in BUCKETS if b[0] == bucket)
    size = f">= {lo:.0f} px" if not math.isfinite(hi) else f"of {lo:.0f}-{hi:.0f} px"
    words = _STRIDE_OF_BUCKET[bucket][1]
    return (f"no anchor of stride {stride} scores >= {floor:g} in the reference among these "
            f"{images} head images (no face {size} at the network input): stride {stride} "
            f"not measured; add images with {words} faces")


def _no_bucket_face(bucket: str, edge: str, images: int, floor: float) -> str:
    """What the images lack when a size bucket holds no reference face."""
    stride, words = _STRIDE_OF_BUCKET[bucket]
    return (f"no face {edge} at the network input scored >= {floor:g} by the reference "
            f"among these {images} images: stride {stride} not measured; add images with "
            f"{words} faces")


def mismatch(m: ImageMatch) -> float:
    """The combined score that ranks worst images: reference faces the device missed, plus
    device faces nothing in the reference explains, plus the IoU shortfall of the matched
    pairs (``sum(1 - IoU)``); 0 for a perfect image."""
    return (m.ref_count - m.found) + (m.dev_count - m.precise) + (m.matched - m.iou_sum)


def worst_images(per_image: Sequence[ImageMatch], n: int = 5) -> list[ImageMatch]:
    """The ``n`` images with the highest :func:`mismatch`, never one where neither side has
    a face above the floor, and never a perfect one."""
    scored = [m for m in per_image if (m.ref_count or m.dev_count) and mismatch(m) > 0]
    return sorted(scored, key=lambda m: (-mismatch(m), m.image))[:n]


def _max(values) -> float | None:
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def check_detections(reference: Any, device: Any, gates: Gates, dtype: str, *,
                     landmark_free: bool = False) -> LevelResult:
    """Pooled recall / precision at the operating point, mean IoU, score delta, landmarks.

    Args:
        landmark_free: the device declares it has no landmark heads (a model exported with
            ``--drop-landmarks``): the landmark gate does not apply instead of failing.
    """
    g = lambda name: gates.value(dtype, "detections", name)  # noqa: E731
    floor, margin, iou_match = g("score_floor"), g("score_margin"), g("iou_match")
    missing = [k for k in device.detections if k not in reference.detections]
    per_image = [compare_detections(k, reference.detections[k], d, iou_match=iou_match,
                                    floor=floor, margin=margin)
                 for k, d in device.detections.items() if k in reference.detections]
    ref_n = sum(m.ref_count for m in per_image)
    dev_n = sum(m.dev_count for m in per_image)
    matched = sum(m.matched for m in per_image)
    measured: dict[str, float] = {}
    if ref_n:
        measured["recall"] = sum(m.found for m in per_image) / ref_n
    if dev_n:
        measured["precision"] = sum(m.precise for m in per_image) / dev_n
    if matched:
        measured["mean_iou"] = sum(m.iou_sum for m in per_image) / matched
        measured["max_score_delta"] = _max(m.max_score_delta for m in per_image)
    ref_lm = any(d.landmarks is not None for d in reference.detections.values())
    dev_lm = any(d.landmarks is not None for d in device.detections.values())
    not_applicable = {}
    if not ref_lm:
        not_applicable["landmark_err_px"] = "the model has no landmark heads"
    elif not dev_lm and landmark_free:
        not_applicable["landmark_err_px"] = "the device declares itself landmark-free"
    else:
        lm = _max(m.landmark_err_px for m in per_image)
        if lm is not None:
            measured["landmark_err_px"] = lm
    worst = {
        "recall": _worst(per_image, lambda m: m.ref_count - m.found),
        "precision": _worst(per_image, lambda m: m.dev_count - m.precise),
        "mean_iou": _worst(per_image, lambda m: -(m.mean_iou if m.mean_iou is not None else 1)),
        "max_score_delta": _worst(per_image, lambda m: m.max_score_delta or 0.0),
        "landmark_err_px": _worst(per_image, lambda m: m.landmark_err_px or 0.0),
    }
    subject = f"{len(per_image)} images, {ref_n} reference faces >= {floor:g}"
    lack: dict[str, str] = {}
    if not ref_n:   # nothing to find: only faces the device adds can be judged
        nothing = (f"no reference face scored >= {floor:g} among these {len(per_image)} "
                   "images; add images with faces")
        lack = {m: nothing for m in ("recall", "mean_iou", "max_score_delta",
                                     "landmark_err_px", *(() if dev_n else ("precision",)))}
    rows = gates.check(dtype, "detections", subject, measured,
                       details={k: f"worst: {v}" for k, v in worst.items()},
                       not_applicable=not_applicable, lacking=lack)
    metrics = {**measured, "images": len(per_image), "reference_faces": ref_n,
               "device_faces": dev_n, "matched": matched,
               "unpaired_device_images": missing[:10],
               "not_applicable": not_applicable,
               "worst_images": [{**m.to_dict(), "mismatch": mismatch(m)}
                                for m in worst_images(per_image)]}
    return LevelResult("detections", rows, metrics, {"per_image": per_image})


def _worst(per_image: Sequence[ImageMatch], key) -> str:
    return max(per_image, key=key).image if per_image else "-"


def check_collapse(reference: Any, device: Any, gates: Gates, dtype: str) -> LevelResult:
    """Score collapse (the known int8 failure): device faces / reference faces above the
    floor, over the same images."""
    floor = gates.value(dtype, "detections", "score_floor")
    keys = [k for k in device.detections if k in reference.detections]
    ref_n = count_above([reference.detections[k] for k in keys], floor)
    dev_n = count_above([device.detections[k] for k in keys], floor)
    top = max((float(device.detections[k].scores.max(initial=0.0)) for k in keys), default=0.0)
    measured = {"collapse_ratio": dev_n / ref_n} if ref_n else {}
    lack = {} if ref_n else {"collapse_ratio": f"no reference face scored >= {floor:g} among "
                                               f"these {len(keys)} images; add images with "
                                               "faces"}
    rows = gates.check(dtype, "collapse", f"faces >= {floor:g} in {len(keys)} images: device "
                                          f"{dev_n} vs reference {ref_n}, top device score "
                                          f"{top:.3f}", measured, lacking=lack)
    return LevelResult("collapse", rows, {"device_faces": dev_n, "reference_faces": ref_n,
                                          "ratio": measured.get("collapse_ratio"),
                                          "top_device_score": top, "images": len(keys)})


def ap_bootstrap(ref_predictions: Any, dev_predictions: Any, ground_truth: Any, keys: Any,
                 gates: Gates, dtype: str) -> Any:
    """The paired image bootstrap of device vs reference AP
    (:func:`scrfd_ref.widerface.bootstrap.paired_bootstrap`) with the confidence, resample
    count and seed of ``dtype``'s AP gates."""
    from scrfd_ref.widerface.bootstrap import paired_bootstrap

    return paired_bootstrap(ref_predictions, dev_predictions, ground_truth, images=keys,
                            **gates.bootstrap_settings(dtype))


def check_ap(reference: Any, device: Any, gates: Gates, dtype: str, *,
             paired: Any = None) -> LevelResult:
    """WIDER AP per setting: signed drop (reference - device) and ratio device / reference.

    ``reference`` and ``device`` are :class:`~scrfd_ref.widerface.evaluate.WiderResult`s over
    the same images. With ``paired`` (:func:`ap_bootstrap` of the same predictions) each
    gate is judged on the confidence interval of its metric: pass or fail only when the
    whole interval is on one side of the limit, else inconclusive with the number of
    images that would decide it.
    """
    rows = []
    intervals: dict[str, dict[str, list]] = {}
    min_images = int(gates.value(dtype, "ap", "min_images"))
    for s in reference.settings:
        ref_ap, dev_ap = float(reference.ap[s]), float(device.ap[s])
        measured = {"abs_delta": ref_ap - dev_ap} if reference.images else {}
        if ref_ap > 0:
            measured["ratio"] = dev_ap / ref_ap
        lack = {}
        if not reference.images:
            lack = {m: "no image evaluated" for m in ("abs_delta", "ratio")}
        elif reference.images < min_images:
            lack = {m: f"only {reference.images} images: an AP over fewer than {min_images} "
                       "means little (its interval would look like proof); judge AP on more "
                       "images" for m in ("abs_delta", "ratio")}
            measured = {}
        elif not reference.faces.get(s):
            lack = {m: f"no face of the {s} setting among these {reference.images} images; "
                       f"add images with {s} faces" for m in ("abs_delta", "ratio")}
            measured = {}
        elif ref_ap <= 0:
            lack = {"ratio": f"the reference finds none of the {reference.faces[s]} {s} "
                             "faces of these images (AP 0): no ratio"}
        bounds = None
        if paired is not None and s in paired.settings and reference.images:
            c = paired[s]
            # the metric is reference - device: the interval of the device - reference
            # delta, negated
            bounds = {"abs_delta": (-c.delta_interval.high, -c.delta_interval.low),
                      "ratio": (c.ratio_interval.low, c.ratio_interval.high)}
            intervals[s] = {"delta": [-b for b in bounds["abs_delta"][::-1]],
                            "abs_delta": list(bounds["abs_delta"]),
                            "ratio": list(bounds["ratio"])}
        rows += gates.check(dtype, "ap", f"{s} AP (device {dev_ap:.4f}, reference "
                                         f"{ref_ap:.4f}, {reference.images} images)", measured,
                            lacking=lack, intervals=bounds, images=reference.images)
    metrics: dict[str, Any] = {"device": device.to_dict(), "reference": reference.to_dict()}
    if paired is not None:
        metrics["intervals"] = intervals
        metrics["bootstrap"] = {"confidence": paired.confidence, "resamples": paired.resamples,
                                "seed": paired.seed, "images": paired.images,
                                "method": "paired image bootstrap, percentile interval; "
                                          "score normalisation from the full set"}
    return LevelResult("ap", rows, metrics)


def run_all(reference: Any, device: Any, ref_ap: Any, dev_ap: Any, gates: Gates, dtype: str,
            *, landmark_free: bool = False, paired: Any = None) -> dict[str, LevelResult]:
    """Every level at once (heads, anchors, detections, buckets, collapse, AP, the last on
    the intervals of ``paired`` when given): ``{level: LevelResult}``."""
    return {"heads": check_heads(reference, device, gates, dtype),
            "anchors": check_anchors(reference, device, gates, dtype),
            "detections": check_detections(reference, device, gates, dtype,
                                           landmark_free=landmark_free),
            "buckets": check_buckets(reference, device, gates, dtype,
                                     landmark_free=landmark_free),
            "collapse": check_collapse(reference, device, gates, dtype),
            "ap": check_ap(ref_ap, dev_ap, gates, dtype, paired=paired)}


def failed_gates(results: Mapping[str, LevelResult]) -> set[str]:
    """``level/gate`` of every failed row (inconclusive rows are not failures)."""
    return {f"{r.level}/{r.gate}" for res in results.values() for r in res.rows if r.failed}
