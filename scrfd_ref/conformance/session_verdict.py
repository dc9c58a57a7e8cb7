"""One verdict for a whole conformance run, computed once from what happened to each device.

A run sets out to judge some devices (every device a selected test was parametrized with).
Each ends in one state:

- **pass** / **fail** / **inconclusive**: judged; the worst verdict of its levels (a test
  that failed without recording a level counts as a failure: an assertion of the suite
  itself failed);
- **error**: a test of it errored (its setup raised: the model could not be built, its
  data vanished) or failed before judging anything; the first line of the error is kept;
- **not run**: every test of it was skipped (the reasons are kept).

The run's verdict (:func:`session_verdict`) is ``PASS`` only when at least one device was
judged and every device the run set out to judge passed (with ``accept_inconclusive``,
inconclusive ones count as accepted, and the verdict says so). Otherwise, worst first:
``FAIL`` (a device failed), ``ERROR`` (a device errored), ``NOT RUN`` (a device was not
run: the run is incomplete), ``INCONCLUSIVE``; and ``NOTHING JUDGED`` when no device was.
Combinations the matrix plan leaves out (no weights, no GPU, a dtype a backend cannot run)
were never set out to be judged: they are listed with their reason and do not change it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from scrfd_ref.conformance.verdicts import worst_verdict

#: device states, worst first (what a device's row says)
DEVICE_STATES = ("fail", "error", "not run", "inconclusive", "pass")
#: session verdicts (what the banner, the exit status and JUnit say)
SESSION_VERDICTS = ("FAIL", "ERROR", "NOT RUN", "INCONCLUSIVE", "NOTHING JUDGED", "PASS")
_SESSION_OF = {"fail": "FAIL", "error": "ERROR", "not run": "NOT RUN",
               "inconclusive": "INCONCLUSIVE"}


@dataclass(frozen=True)
class PhaseOutcome:
    """One phase of one test of a device, as pytest reported it.

    Attributes:
        device: the device id (``ort-int8-500m_bnkps``).
        test: the test's node id.
        when: ``setup``, ``call`` or ``teardown``.
        outcome: ``passed``, ``failed`` or ``skipped``.
        message: the first line of the failure or skip reason.
        inconclusive: the failure is an inconclusive verdict, not a failure.
        seconds: how long the phase took.
    """

    device: str
    test: str
    when: str
    outcome: str
    message: str = ""
    inconclusive: bool = False
    seconds: float = 0.0


@dataclass(frozen=True)
class DeviceOutcome:
    """What happened to one device of the run.

    Attributes:
        device: its id.
        state: one of :data:`DEVICE_STATES`.
        levels: level -> verdict of the levels it was judged on.
        reasons: why it errored, was not run, or failed outside a level.
        tests: how many tests of it ran.
        seconds: the time its tests took (every phase).
    """

    device: str
    state: str
    levels: Mapping[str, str] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    tests: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class SessionVerdict:
    """The verdict of a whole run and how it was reached.

    Attributes:
        verdict: one of :data:`SESSION_VERDICTS`.
        reason: one line saying why (what a user sees beside the verdict).
        devices: every device the run set out to judge.
        left_out: the combinations the plan left out, with why (never judged).
        accepted_inconclusive: inconclusive devices counted as accepted
            (``--accept-inconclusive``); the verdict is then ``PASS`` with this said.
    """

    verdict: str
    reason: str
    devices: tuple[DeviceOutcome, ...]
    left_out: tuple[str, ...] = ()
    accepted_inconclusive: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """True only for ``PASS``."""
        return self.verdict == "PASS"

    def counts(self) -> dict[str, int]:
        """Devices per state (every state, zeros included)."""
        return {s: sum(1 for d in self.devices if d.state == s) for s in DEVICE_STATES}

    def headline(self) -> str:
        """``FAIL, 6 devices: 4 pass, 2 error`` (the banner's words)."""
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items() if n)
        n = len(self.devices)
        text = f"{self.verdict}, {n} device{'s' * (n != 1)}" + (f": {counts}" if counts else "")
        if self.accepted_inconclusive:
            text += f" ({len(self.accepted_inconclusive)} inconclusive accepted by " \
                    "--accept-inconclusive)"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (report.json ``session``)."""
        return {"verdict": self.verdict, "reason": self.reason, "headline": self.headline(),
                "counts": self.counts(), "left_out": list(self.left_out),
                "accepted_inconclusive": list(self.accepted_inconclusive),
                "devices": [{**asdict(d), "levels": dict(d.levels), "reasons": list(d.reasons)}
                            for d in self.devices]}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "SessionVerdict":
        """Inverse of :meth:`to_dict`."""
        devices = tuple(DeviceOutcome(d["device"], d["state"], dict(d.get("levels", {})),
                                      tuple(d.get("reasons", ())), int(d.get("tests", 0)),
                                      float(d.get("seconds", 0.0)))
                        for d in doc.get("devices", ()))
        return cls(doc["verdict"], doc.get("reason", ""), devices,
                   tuple(doc.get("left_out", ())), tuple(doc.get("accepted_inconclusive", ())))


def device_outcome(device: str, outcomes: Sequence[PhaseOutcome],
                   levels: Mapping[str, str]) -> DeviceOutcome:
    """The state of one device from its tests' outcomes and its recorded level verdicts."""
    from dataclasses import replace

    seconds = round(sum(o.seconds for o in outcomes), 3)
    return replace(_state(device, outcomes, levels), seconds=seconds)


def _state(device: str, outcomes: Sequence[PhaseOutcome],
           levels: Mapping[str, str]) -> DeviceOutcome:
    tests = {o.test for o in outcomes}
    errors = [o for o in outcomes if o.outcome == "failed" and o.when != "call"]
    failed_calls = [o for o in outcomes if o.outcome == "failed" and o.when == "call"
                    and not o.inconclusive]
    undecided = [o for o in outcomes if o.outcome == "failed" and o.when == "call"
                 and o.inconclusive]
    ran = {o.test for o in outcomes if o.when == "call"}
    if errors:
        return DeviceOutcome(device, "error", dict(levels),
                             _first_lines(f"{_short(o.test)}: {o.message}" for o in errors),
                             len(ran))
    if not levels and not ran:
        skips = [o for o in outcomes if o.outcome == "skipped"]
        why = _first_lines(o.message for o in skips) or ("no test of it ran",)
        return DeviceOutcome(device, "not run", {}, why, 0)
    if not levels and failed_calls:
        # failed before judging anything: the device could not be run as asked
        return DeviceOutcome(device, "error", {},
                             _first_lines(f"{_short(o.test)}: {o.message}"
                                          for o in failed_calls), len(ran))
    verdicts = list(levels.values())
    reasons: tuple[str, ...] = ()
    if failed_calls and "fail" not in verdicts:
        # a test of the suite failed outside the recorded levels: a failure all the same
        verdicts.append("fail")
        reasons = _first_lines(f"{_short(o.test)}: {o.message}" for o in failed_calls)
    if undecided and not verdicts:
        verdicts.append("inconclusive")
    state = worst_verdict(verdicts) if verdicts else "inconclusive"
    if state == "pass" and len(ran) < len(tests):
        skipped = [o for o in outcomes if o.outcome == "skipped"]
        reasons = _first_lines(f"{_short(o.test)} skipped: {o.message}" for o in skipped)
    return DeviceOutcome(device, state, dict(levels), reasons, len(ran))


def session_verdict(outcomes: Iterable[PhaseOutcome], levels: Mapping[str, Mapping[str, str]],
                    left_out: Sequence[str] = (), *,
                    accept_inconclusive: bool = False) -> SessionVerdict:
    """The run's verdict.

    Args:
        outcomes: every test phase of every device the run set out to judge.
        levels: device -> level -> verdict, as the report recorded them (a device only
            here, with no test outcome, counts too).
        left_out: the plan's not-run lines (listed, never judged).
        accept_inconclusive: count inconclusive devices as accepted.
    """
    by_device: dict[str, list[PhaseOutcome]] = {}
    for o in outcomes:
        by_device.setdefault(o.device, []).append(o)
    for device in levels:
        by_device.setdefault(device, [])
    devices = tuple(device_outcome(d, by_device[d], levels.get(d, {}))
                    for d in sorted(by_device))
    accepted = tuple(d.device for d in devices
                     if accept_inconclusive and d.state == "inconclusive")
    judged = [d for d in devices if d.state in ("pass", "fail", "inconclusive")]
    worst = next((s for s in DEVICE_STATES[:-1]
                  if any(d.state == s and d.device not in accepted for d in devices)), None)
    if not devices or not judged:
        verdict = "NOTHING JUDGED"
        told = [x for x in left_out if "reference itself" not in x] or list(left_out)
        why = (f"no device to judge: the matrix left every one out ({told[0] if told else ''}"
               f"{f' and {len(told) - 1} more' if len(told) > 1 else ''})"
               if not devices and left_out else
               "no device was set out to be judged (no conformance test was selected)"
               if not devices else
               f"no device was judged: {_summary(devices)}")
    elif worst is None:
        verdict = "PASS"
        why = f"every device the run set out to judge passed ({len(devices)})"
        if accepted:
            why += f"; {len(accepted)} inconclusive, accepted by --accept-inconclusive"
    else:
        verdict = _SESSION_OF[worst]
        why = _summary([d for d in devices if d.state != "pass" and d.device not in accepted])
    return SessionVerdict(verdict, why, devices, tuple(left_out), accepted)


def _summary(devices: Sequence[DeviceOutcome]) -> str:
    """``ort-int8-500m_bnkps error (setup: calibration images missing); ...``."""
    parts = []
    for d in devices[:4]:
        levels = [name for name, v in d.levels.items() if v == d.state]
        why = d.reasons[0] if d.reasons else (f"at {', '.join(levels)}"
                                               if levels else "")
        parts.append(f"{d.device} {d.state}" + (f" ({why})" if why else ""))
    if len(devices) > 4:
        parts.append(f"and {len(devices) - 4} more")
    return "; ".join(parts)


def _short(nodeid: str) -> str:
    """The test's name without its path and device parameter."""
    name = nodeid.rsplit("::", 1)[-1]
    return name.split("[", 1)[0]


def _first_lines(texts: Iterable[str], most: int = 3) -> tuple[str, ...]:
    """The first line of each distinct text, at most ``most``."""
    out: list[str] = []
    for t in texts:
        line = (t.strip().splitlines() or [""])[0][:300]
        if line and line not in out:
            out.append(line)
    return tuple(out[:most])
