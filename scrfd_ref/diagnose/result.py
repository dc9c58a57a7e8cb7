"""What a diagnosis says: one hypothesis and its evidence (:class:`Cause`), the judgement of
the device before any explanation (:class:`Verdict`), and the ranked result
(:class:`Diagnosis`) with its human lines and JSON form; plus the one cause read off the
output files themselves (:func:`raw_dtype_cause`). The hypotheses live in
:mod:`scrfd_ref.diagnose.heads` (raw heads),
:mod:`scrfd_ref.diagnose.predictions` (WIDER files) and
:mod:`scrfd_ref.diagnose.precision` (the arithmetic).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from scrfd_ref.conformance.compare import SNR_CAP


@dataclass
class Cause:
    """One hypothesis and its evidence.

    Attributes:
        name: short id (``scale_head``, ``sigmoid_twice``...).
        text: what the device did, in words (``bbox_32 scaled x1.150``).
        heads: the heads the hypothesis touches.
        before_db: mean foreground SNR of those heads as the device gave them.
        after_db: the same after undoing the hypothesised fault.
        params: fitted parameters (slope, offset, shift...); an ``evidence`` entry (text)
            is added to the description.
        metric: what ``before_db`` / ``after_db`` measure.
        anchors: the foreground anchors the evidence rests on (None: not anchor-based).
        fitted: the correction was fitted on ``anchors`` (a per-head least-squares fit or
            bias), so it needs ``min_anchors`` of them to count as a cause.
        detail: the whole evidence in words, shown instead of the before / after figures
            (the precision hypothesis).
    """

    name: str
    text: str
    heads: list[str]
    before_db: float
    after_db: float
    params: dict[str, Any] = field(default_factory=dict)
    metric: str = "foreground SNR"
    anchors: int | None = None
    fitted: bool = False
    detail: str = ""

    @property
    def gain_db(self) -> float:
        """How much undoing the fault improves the match (dB)."""
        return self.after_db - self.before_db

    def describe(self, min_anchors: int = 0) -> str:
        """``bbox_32 scaled x1.150 (foreground SNR 9.1 -> 38.2 dB on bbox_32, 212 foreground
        anchors)``; a fit on fewer than ``min_anchors`` anchors says so."""
        if self.detail:
            return f"{self.text} ({self.detail})"
        if not self.heads:
            return self.text
        evidence = f"; {self.params['evidence']}" if self.params.get("evidence") else ""
        count = ""
        if self.anchors is not None:
            count = f", {self.anchors} foreground anchors"
            if self.fitted and self.anchors < min_anchors:
                count += f" (fitted on fewer than the {min_anchors} a cause needs)"
        return (f"{self.text} ({self.metric} {self.before_db:.1f} -> {self.after_db:.1f} dB "
                f"on {', '.join(self.heads)}{count}{evidence})")

    def counts(self, min_gain_db: float, min_anchors: int) -> bool:
        """True when this hypothesis is a cause: it gains ``min_gain_db`` and, when fitted,
        rests on at least ``min_anchors`` foreground anchors."""
        enough = not self.fitted or (self.anchors or 0) >= min_anchors
        return self.gain_db >= min_gain_db and enough

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the gain."""
        return {**asdict(self), "gain_db": self.gain_db}


@dataclass
class Verdict:
    """The device judged against its dtype's gates on the diagnosed images, before any
    explanation (:func:`scrfd_ref.diagnose.run.judge`).

    Attributes:
        state: the worst verdict of the rows (:mod:`scrfd_ref.conformance.verdicts`):
            ``fail``, else ``inconclusive`` (the images cannot decide some gate: never
            worded as a failure), else ``pass``.
        dtype: whose gates judged.
        levels: the check levels applied (heads, anchors, detections...).
        failures: the messages of the failed gate rows.
        images: how many images were judged.
        inconclusive: the messages of the rows these images cannot decide.
    """

    state: str
    dtype: str
    levels: list[str]
    failures: list[str]
    images: int
    inconclusive: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when the device passed every gate applied."""
        return self.state == "pass"

    @property
    def failed(self) -> bool:
        """True when the device failed a gate (inconclusive rows are not failures)."""
        return self.state == "fail"

    def lines(self) -> list[str]:
        """One line for a pass; for a failure (or inconclusive rows) the count and the
        first rows."""
        where = f"{self.images} images; {', '.join(self.levels)}"
        if self.passed:
            return [f"the device passes every {self.dtype} gate on these images ({where})"]
        if self.failed:
            out = [f"the device fails {len(self.failures)} {self.dtype} gate row(s) on these "
                   f"images ({where}):"]
            shown = self.failures
        else:
            out = [f"the device fails no {self.dtype} gate on these images, but "
                   f"{len(self.inconclusive)} gate row(s) are inconclusive: these images "
                   f"cannot decide them ({where}):"]
            shown = self.inconclusive
        more = len(shown) - 3
        return (out + [f"   {m}" for m in shown[:3]]
                + ([f"   ... and {more} more"] if more > 0 else [])
                + ([f"   (and {len(self.inconclusive)} inconclusive row(s))"]
                   if self.failed and self.inconclusive else []))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class Diagnosis:
    """Ranked hypotheses.

    Attributes:
        causes: the hypotheses that count as causes (:meth:`Cause.counts`), corrections by
            gain first, then the precision hypothesis; empty when the device passed.
        closest: every hypothesis that brings the device closer (gain > 0), best first.
        min_gain_db: the margin a cause needs.
        images: how many images were diagnosed.
        verdict: the judgement before the explanation (None: the caller did not judge).
        observations: for a device that passed, what would have been causes: systematic
            deviations inside the gates.
        ranked: every hypothesis, gaining or not, best first (for measurements).
        precision: the noise level against honest devices
            (:class:`~scrfd_ref.diagnose.precision.PrecisionFit`), or None.
        min_anchors: the foreground anchors a fitted cause needs.
    """

    causes: list[Cause]
    closest: list[Cause]
    min_gain_db: float
    images: int
    verdict: Verdict | None = None
    observations: list[Cause] = field(default_factory=list)
    ranked: list[Cause] = field(default_factory=list)
    precision: Any = None
    min_anchors: int = 0

    @classmethod
    def judged(cls, causes: list[Cause], closest: list[Cause], min_gain_db: float,
               images: int, verdict: Verdict | None, precision: Any = None,
               ranked: list[Cause] | None = None, min_anchors: int = 0) -> "Diagnosis":
        """The diagnosis of ``causes`` (corrections that count, best first): the precision
        hypothesis's cause appended where it names one; for a device whose ``verdict``
        passed, all of them become observations."""
        causes = list(causes)
        named = precision.cause() if precision is not None else None
        if named is not None:
            causes.append(named)
        observations: list[Cause] = []
        if verdict is not None and not verdict.failed:
            observations, causes = causes, []
        return cls(causes, closest, min_gain_db, images, verdict, observations,
                   list(ranked or []), precision, min_anchors)

    @property
    def failed(self) -> bool:
        """True when the device failed its gates, or a cause was named without judging."""
        return self.verdict.failed if self.verdict is not None else bool(self.causes)

    @property
    def inconclusive(self) -> bool:
        """True when the device failed no gate but the images could not decide some."""
        return self.verdict is not None and self.verdict.state == "inconclusive"

    def lines(self) -> list[str]:
        """The human report: the verdict, then one line per cause (or the closest ones),
        observations of a passing device, and the noise level."""
        out = self.verdict.lines() if self.verdict is not None else []
        describe = lambda c: c.describe(self.min_anchors)  # noqa: E731
        if self.verdict is not None and not self.verdict.failed:
            if self.observations:
                out.append("observations (systematic deviations inside the gates, not "
                           "causes):")
                out += [f"   {describe(c)}" for c in self.observations]
            else:
                out.append("nothing to explain")
        elif self.causes:
            out += [f"{i + 1}. {describe(c)}" for i, c in enumerate(self.causes)]
        elif self.closest:
            out.append(f"no known cause matches (no correction gains {self.min_gain_db:g} "
                       "dB); closest:")
            out += [f"   {describe(c)}" for c in self.closest[:3]]
            if any(c.gain_db >= self.min_gain_db for c in self.closest[:3]):
                out.append(f"   (a fit on fewer than {self.min_anchors} foreground anchors "
                           "does not count: diagnose more images, --count)")
        else:
            out.append("no known cause matches; nothing brings the device closer")
        if self.precision is not None:
            out.append(self.precision.line())
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"verdict": self.verdict.to_dict() if self.verdict is not None else None,
                "causes": [c.to_dict() for c in self.causes],
                "observations": [c.to_dict() for c in self.observations],
                "closest": [c.to_dict() for c in self.closest[:5]],
                "precision": self.precision.to_dict() if self.precision is not None else None,
                "min_gain_db": self.min_gain_db, "min_anchors": self.min_anchors,
                "images": self.images}


def raw_dtype_cause(arrays: Sequence[np.ndarray]) -> Cause | None:
    """int8 / uint8 outputs in a device file: the outputs were never dequantized."""
    ints = [a for a in arrays if np.issubdtype(a.dtype, np.integer)]
    if not ints:
        return None
    return Cause("not_dequantized", f"{len(ints)} of {len(arrays)} outputs are "
                                    f"{ints[0].dtype} (int8 outputs never dequantized: "
                                    "multiply by the output scale, subtract the zero point)",
                 [], -SNR_CAP, SNR_CAP, {"dtype": str(ints[0].dtype)})
