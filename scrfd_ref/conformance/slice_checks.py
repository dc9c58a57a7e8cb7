"""The slice level: conformance per face attribute (blur, expression, illumination,
occlusion, pose) and scale, device vs reference.

Per slice (:mod:`scrfd_ref.widerface.slices`) two gates of ``[dtype.slices]``: the AP drop
(reference - device, the slice's faces counted, every other face ignored) and the drop of
the recall at the operating point (the dtype's ``detections.score_floor``). Each is judged
on the paired image bootstrap of :mod:`scrfd_ref.widerface.slice_eval`:

- **pass**: the 95% interval of the drop is inside the limit;
- **fail**: the Bonferroni-corrected interval (family: two gates per slice with at least
  ``min_faces`` faces) is entirely beyond the limit: the claim "this slice is worse" is
  made among all slices, so it is corrected for their number;
- **inconclusive**: between the two, or a slice with fewer than ``min_faces`` faces among
  the images (with what to add), or a ground truth without face attributes.

The level passes only when every slice passes: an intersection-union test, which needs no
correction (its error is at most one slice's).
"""
from __future__ import annotations

import math
from typing import Any

from scrfd_ref.conformance.checks import LevelResult
from scrfd_ref.conformance.gates import Gates
from scrfd_ref.widerface.slices import SLICES


def slice_settings(gates: Gates, dtype: str) -> dict[str, Any]:
    """The keyword arguments of :func:`~scrfd_ref.widerface.slice_eval.paired_slices` for
    ``dtype``: the AP gates' bootstrap, the detections' operating point, the slices'
    ``min_faces``."""
    return {**gates.bootstrap_settings(dtype),
            "operating_score": gates.value(dtype, "detections", "score_floor"),
            "min_faces": int(gates.value(dtype, "slices", "min_faces"))}


def slices_bootstrap(ref_predictions: Any, dev_predictions: Any, ground_truth: Any, keys: Any,
                     gates: Gates, dtype: str) -> Any:
    """The paired slice bootstrap of device vs reference on ``keys`` with ``dtype``'s
    settings (:func:`slice_settings`)."""
    from scrfd_ref.widerface.slice_eval import paired_slices

    return paired_slices(ref_predictions, dev_predictions, ground_truth, images=keys,
                         **slice_settings(gates, dtype))


def _neg(iv: Any) -> tuple[float, float]:
    """The interval of ``-x`` from that of ``x``."""
    return (-iv.high, -iv.low)


def check_slices(paired: Any, gates: Gates, dtype: str, *, missing: str = "") -> LevelResult:
    """Judge every slice of ``paired`` (a
    :class:`~scrfd_ref.widerface.slice_eval.PairedSlices`, or None with ``missing`` saying
    why there is none: the level is then inconclusive on every slice)."""
    rows = []
    names = paired.slices if paired is not None else tuple(s.name for s in SLICES)
    min_faces = int(gates.value(dtype, "slices", "min_faces"))
    for name in names:
        if paired is None:
            lack = {m: missing for m in ("ap_drop", "recall_drop")}
            rows += gates.check(dtype, "slices", f"slice {name}", {}, lacking=lack)
            continue
        c = paired[name]
        subject = (f"slice {name} ({c.faces} faces; AP device {c.ap_b:.4f} reference "
                   f"{c.ap_a:.4f}, recall@{paired.operating_score:g} device {c.recall_b:.4f} "
                   f"reference {c.recall_a:.4f}, {paired.images} images)")
        if c.faces < min_faces:
            why = (f"only {c.faces} face(s) of {name} among these {paired.images} images "
                   f"(at least {min_faces}); add images with {name.split('=')[1]} "
                   f"{name.split('=')[0]} faces")
            rows += gates.check(dtype, "slices", subject, {},
                                lacking={"ap_drop": why, "recall_drop": why})
            continue
        measured = {"ap_drop": -c.ap_delta}
        if math.isfinite(c.recall_delta):
            measured["recall_drop"] = -c.recall_delta
        rows += gates.check(dtype, "slices", subject, measured,
                            intervals={"ap_drop": _neg(c.ap_interval),
                                       "recall_drop": _neg(c.recall_interval)},
                            fail_intervals={"ap_drop": _neg(c.ap_corrected),
                                            "recall_drop": _neg(c.recall_corrected)},
                            images=paired.images)
    metrics: dict[str, Any] = {"slices": paired.to_dict() if paired is not None else None}
    if paired is None:
        metrics["missing"] = missing
    return LevelResult("slices", rows, metrics)


__all__ = ["check_slices", "slice_settings", "slices_bootstrap"]
