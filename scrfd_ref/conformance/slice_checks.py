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
  the images (with what to add), a drop with nothing to lose (the reference finds none of
  the slice's faces: AP 0, or none at the operating point), or a ground truth without face
  attributes.

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
    """The interval of ``-x`` from that of ``x`` (``0 - x``: no ``-0`` in the messages)."""
    return (0.0 - iv.high, 0.0 - iv.low)


def _f(x: float) -> str:
    return "n/a" if x != x else f"{x:.4f}"


def _nothing_to_lose(c: Any, paired: Any) -> dict[str, str]:
    """The drops a slice cannot measure although it has faces: the reference finds none of
    them (AP 0, or no face at the operating point), so the device has nothing to lose."""
    where = f"among these {paired.images} images; add images where the reference finds them"
    lack = {}
    if not c.ap_a > 0:
        lack["ap_drop"] = (f"the reference finds none of the {c.faces} face(s) of {c.name} "
                           f"(AP 0) {where}")
    if not c.recall_a > 0:
        lack["recall_drop"] = (f"the reference finds none of the {c.faces} face(s) of "
                               f"{c.name} at score >= {paired.operating_score:g} {where}")
    return lack


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
        subject = (f"slice {name} ({c.faces} faces; AP device {_f(c.ap_b)} reference "
                   f"{_f(c.ap_a)}, recall@{paired.operating_score:g} device {_f(c.recall_b)} "
                   f"reference {_f(c.recall_a)}, {paired.images} images)")
        if c.faces < min_faces:
            why = (f"only {c.faces} face(s) of {name} among these {paired.images} images "
                   f"(at least {min_faces}); add images with {name.split('=')[1]} "
                   f"{name.split('=')[0]} faces")
            rows += gates.check(dtype, "slices", subject, {},
                                lacking={"ap_drop": why, "recall_drop": why})
            continue
        lack = _nothing_to_lose(c, paired)
        measured = {m: 0.0 - d for m, d in (("ap_drop", c.ap_delta),
                                            ("recall_drop", c.recall_delta))
                    if m not in lack and math.isfinite(d)}
        rows += gates.check(dtype, "slices", subject, measured, lacking=lack,
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
