"""The conformance checks as functions: one device run against the reference, one level at
a time, judged by the gates.

Each check returns a :class:`LevelResult`: the gate rows (:class:`~scrfd_ref.conformance.gates.GateResult`)
and the measured metrics. The pytest suite (``conformance/``) calls these and fails on any
failed row; the fault-injection tests call them directly to show every gate can fail.

Nothing passes by default: a metric that could not be measured (no image compared, no
reference face above the floor, no matched pair, a device without the landmark heads the
reference has, a reference AP of 0) is absent, and the gate that reads it fails saying so.
A metric that does not apply is marked so explicitly (the model has no landmarks, or the
device declares itself landmark-free) and its gate row says why it passes.
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
from scrfd_ref.conformance.gates import GateResult, Gates


@dataclass
class LevelResult:
    """The gate rows and metrics of one check level for one device."""

    level: str
    rows: list[GateResult]
    metrics: Any
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every gate row passed (and there is at least one)."""
        return bool(self.rows) and all(r.passed for r in self.rows)

    @property
    def failures(self) -> list[str]:
        """The messages of the failed rows."""
        return [r.message for r in self.rows if not r.passed]

    @property
    def failed_gates(self) -> set[str]:
        """Names of the failed gates."""
        return {r.gate for r in self.rows if not r.passed}


def check_heads(reference: Any, device: Any, gates: Gates, dtype: str) -> LevelResult:
    """Per head: shape, NaN/Inf, cosine, SNR, share within atol + rtol |ref|."""
    atol = gates.value(dtype, "heads", "atol")
    rtol = gates.value(dtype, "heads", "rtol")
    pairs = [(k, reference.heads[k], 0, device.heads[k], 0)
             for k in reference.heads if k in device.heads]
    if not pairs:
        rows = gates.check(dtype, "heads", "no head-level image in common: nothing compared", {})
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
                           {})
        return LevelResult("anchors", rows, [])
    rows, metrics = [], []
    for s in compare_anchors(pairs, floor):
        na = ({} if s.name.startswith("score_") else
              {"bg_score_p99_delta": "a box / landmark head has no score distribution"})
        rows += gates.check(dtype, "anchors", f"{s.name} ({s.fg_anchors} foreground anchors "
                                              f">= {floor:g})", s.measured(),
                            not_applicable=na)
        metrics.append({"head": s.name, "fg_anchors": s.fg_anchors, **s.measured(),
                        "bg_ref_p99": s.bg_ref_p99, "bg_dev_p99": s.bg_dev_p99})
    return LevelResult("anchors", rows, metrics)


def check_buckets(reference: Any, device: Any, gates: Gates, dtype: str, *,
                  landmark_free: bool = False) -> LevelResult:
    """Per face-size bucket (the stride whose anchors fit): recall, mean IoU, box scale
    ratio (mean and spread of the log), landmark NME (see
    :mod:`scrfd_ref.conformance.buckets`). A bucket without reference faces does not apply."""
    g = lambda name: gates.value(dtype, "detections", name)  # noqa: E731
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
        if not st.ref_faces and not st.ious:
            na = {m: f"no reference face in bucket {name}" for m in
                  ("bucket_recall", "bucket_mean_iou", "bucket_log_scale_mean",
                   "bucket_log_scale_std", "bucket_nme_pct")}
        elif not ref_lm:
            na = {"bucket_nme_pct": "the model has no landmark heads"}
        elif not dev_lm and landmark_free:
            na = {"bucket_nme_pct": "the device declares itself landmark-free"}
        edge = f"{lo:.0f}-{hi:.0f} px" if math.isfinite(hi) else f">= {lo:.0f} px"
        rows += gates.check(dtype, "buckets", f"bucket {name} (faces {edge} at the input, "
                                              f"{st.ref_faces} reference, {len(st.ious)} "
                                              "matched)", st.measured(), not_applicable=na)
    if not keys:
        rows = gates.check(dtype, "buckets", "no image in common: nothing compared", {})
    return LevelResult("buckets", rows, [st.summary() for st in stats])


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
    rows = gates.check(dtype, "detections", subject, measured,
                       details={k: f"worst: {v}" for k, v in worst.items()},
                       not_applicable=not_applicable)
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
    rows = gates.check(dtype, "collapse", f"faces >= {floor:g} in {len(keys)} images: device "
                                          f"{dev_n} vs reference {ref_n}, top device score "
                                          f"{top:.3f}", measured)
    return LevelResult("collapse", rows, {"device_faces": dev_n, "reference_faces": ref_n,
                                          "ratio": measured.get("collapse_ratio"),
                                          "top_device_score": top, "images": len(keys)})


def check_ap(reference: Any, device: Any, gates: Gates, dtype: str) -> LevelResult:
    """WIDER AP per setting: signed drop (reference - device) and ratio device / reference.

    ``reference`` and ``device`` are :class:`~scrfd_ref.widerface.evaluate.WiderResult`s over
    the same images.
    """
    rows = []
    for s in reference.settings:
        ref_ap, dev_ap = float(reference.ap[s]), float(device.ap[s])
        measured = {"abs_delta": ref_ap - dev_ap} if reference.images else {}
        if ref_ap > 0:
            measured["ratio"] = dev_ap / ref_ap
        rows += gates.check(dtype, "ap", f"{s} AP (device {dev_ap:.4f}, reference "
                                         f"{ref_ap:.4f}, {reference.images} images)", measured)
    return LevelResult("ap", rows, {"device": device.to_dict(), "reference": reference.to_dict()})


def run_all(reference: Any, device: Any, ref_ap: Any, dev_ap: Any, gates: Gates, dtype: str,
            *, landmark_free: bool = False) -> dict[str, LevelResult]:
    """Every level at once (heads, anchors, detections, buckets, collapse, AP):
    ``{level: LevelResult}``."""
    return {"heads": check_heads(reference, device, gates, dtype),
            "anchors": check_anchors(reference, device, gates, dtype),
            "detections": check_detections(reference, device, gates, dtype,
                                           landmark_free=landmark_free),
            "buckets": check_buckets(reference, device, gates, dtype,
                                     landmark_free=landmark_free),
            "collapse": check_collapse(reference, device, gates, dtype),
            "ap": check_ap(ref_ap, dev_ap, gates, dtype)}


def failed_gates(results: Mapping[str, LevelResult]) -> set[str]:
    """``level/gate`` of every failed row."""
    return {f"{r.level}/{r.gate}" for res in results.values() for r in res.rows if not r.passed}
