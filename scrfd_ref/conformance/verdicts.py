"""The three verdicts of a gate (``../shared/docs/conventions.md``) and the row that carries
one: :class:`GateResult`.

- **pass**: the value (for an AP gate with a bootstrap interval, the whole interval) is on
  the right side of the limit;
- **fail**: it is on the wrong side (the whole interval), NaN, or a metric the device
  should have given is missing;
- **inconclusive**: the images cannot decide: nothing to measure in them (said in words,
  with what to add), or an interval that straddles the limit (with about how many images
  would decide it). Never a pass, never worded as a device failure.

A level, a device and a run take the worst verdict of their rows (:func:`worst_verdict`):
fail before inconclusive before pass; nothing judged is inconclusive.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

#: the three verdicts of a gate row, a level and a device (worst first)
VERDICTS = ("fail", "inconclusive", "pass")
_WORD = {"pass": "ok", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}


def worst_verdict(verdicts: "list[str] | tuple[str, ...]") -> str:
    """``fail`` if any is, else ``inconclusive`` if any is, else ``pass``; nothing judged
    is inconclusive (never a pass)."""
    found = set(verdicts)
    if not found:
        return "inconclusive"
    return next(v for v in VERDICTS if v in found)


@dataclass(frozen=True)
class GateResult:
    """One gate applied to one measured value (``value`` NaN when it was not measured).

    ``verdict`` is ``pass``, ``fail`` or ``inconclusive`` (module docstring); left empty it
    follows ``passed``. ``interval`` is the confidence interval an AP gate was judged on,
    ``images_to_decide`` the estimated image count that would decide an inconclusive AP
    gate, ``lack`` what the images lack for an unmeasurable metric.
    """

    level: str
    gate: str
    subject: str      # the head, image or AP setting the value belongs to
    value: float
    limit: float
    passed: bool
    why: str
    note: str = ""
    verdict: str = ""
    interval: tuple[float, float] | None = None
    images_to_decide: int | None = None
    lack: str = ""
    fail_interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.verdict:
            object.__setattr__(self, "verdict", "pass" if self.passed else "fail")
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")
        object.__setattr__(self, "passed", self.verdict == "pass")

    @property
    def inconclusive(self) -> bool:
        """The images could not decide this gate."""
        return self.verdict == "inconclusive"

    @property
    def failed(self) -> bool:
        """The device fails this gate."""
        return self.verdict == "fail"

    @property
    def message(self) -> str:
        """``FAIL heads/cosine_min on bbox_16: 0.91 (needs >= 0.999) - why``;
        ``INCONCLUSIVE anchors/fg_cosine_min on score_32: no face >= 181 px ...``."""
        op = ">=" if self.gate.endswith("_min") else "<="
        value = self.note if self.note else f"{self.value:.6g}"
        if self.interval is not None:
            lo, hi = self.interval
            value += f" [{lo:.6g}, {hi:.6g}]"
        if self.fail_interval is not None:
            lo, hi = self.fail_interval
            value += f", corrected [{lo:.6g}, {hi:.6g}]"
        if self.images_to_decide:
            value += f"; about {self.images_to_decide} images would decide it"
        return (f"{_WORD[self.verdict]} {self.level}/{self.gate} on {self.subject}: {value} "
                f"(needs {op} {self.limit:g}) - {self.why}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers as strings)."""
        d = asdict(self)
        d["value"] = self.value if math.isfinite(self.value) else str(self.value)
        d["interval"] = list(self.interval) if self.interval is not None else None
        d["fail_interval"] = (list(self.fail_interval) if self.fail_interval is not None
                              else None)
        return d


def judged(g: Any, t: Any, subject: str, value: float,
           interval: tuple[float, float] | None, images: int | None, *,
           fail_interval: tuple[float, float] | None = None) -> GateResult:
    """The row of gate ``g`` (a :class:`~scrfd_ref.conformance.gates.GateSpec`) with
    threshold ``t`` for one measured value, judged on its interval when it has one: pass
    or fail only when the whole interval is on one side of the limit, else inconclusive
    with the images that would decide it.

    With ``fail_interval`` (a wider, multiplicity-corrected interval containing
    ``interval``): pass when ``interval`` is inside the limit, fail only when the whole
    ``fail_interval`` is beyond it, inconclusive otherwise."""
    if interval is not None and fail_interval is not None and not math.isnan(value):
        row = judged(g, t, subject, value, interval, images)
        flo, fhi = float(fail_interval[0]), float(fail_interval[1])
        if row.verdict != "fail":
            return replace(row, fail_interval=(flo, fhi))
        wide = judged(g, t, subject, value, (flo, fhi), images)
        if wide.verdict == "fail":
            return replace(row, fail_interval=(flo, fhi))
        return replace(wide, interval=row.interval, fail_interval=(flo, fhi),
                       lack="the interval is beyond the limit but the corrected one "
                            "(multiplicity across slices) reaches it")
    def ok(v: float) -> bool:
        return (v >= t.value) if g.kind == "min" else (v <= t.value)

    if math.isnan(value):
        return GateResult(g.level, g.name, subject, value, t.value, False, t.why)
    if interval is None:
        return GateResult(g.level, g.name, subject, value, t.value, ok(value), t.why)
    lo, hi = (float(interval[0]), float(interval[1]))
    if any(math.isnan(x) for x in (lo, hi)):   # e.g. a resample whose reference AP is 0
        return GateResult(g.level, g.name, subject, value, t.value, False, t.why,
                          verdict="inconclusive", interval=(lo, hi),
                          lack="the interval is undefined (a resample of the images has "
                               "nothing to compare); add images")
    if ok(lo) and ok(hi):
        return GateResult(g.level, g.name, subject, value, t.value, True, t.why,
                          interval=(lo, hi))
    if not ok(lo) and not ok(hi):
        return GateResult(g.level, g.name, subject, value, t.value, False, t.why,
                          interval=(lo, hi))
    # the half-width on the limit's side of the point estimate, shrinking as 1/sqrt(N)
    from scrfd_ref.widerface.bootstrap import images_to_decide

    half = value - lo if t.value <= value else hi - value
    need = images_to_decide(images, half, abs(value - t.value)) if images else math.nan
    return GateResult(g.level, g.name, subject, value, t.value, False, t.why,
                      verdict="inconclusive", interval=(lo, hi),
                      images_to_decide=int(need) if math.isfinite(need) else None,
                      lack="the confidence interval straddles the limit")
