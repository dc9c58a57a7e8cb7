"""Two conformance reports side by side (``scrfd-ref report diff OLD NEW``): what a release
reviewer must see before signing the newer one.

From two ``report.json`` documents :func:`diff_reports` lists

- the session verdicts and every device whose verdict changed (better or worse);
- devices added or removed;
- gate rows whose value moved beyond the interval it was judged with (an AP row: the new
  value outside the old interval, or the old one outside the new), and rows whose verdict
  changed;
- the gates file (sha256, and each limit that differs between the two runs) and every
  verdict-changing option that differs.

A regression (:attr:`ReportDiff.regressed`) is a session or device verdict that got worse.
"""
from __future__ import annotations

import math

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from scrfd_ref.core.errors import InputError, UsageError
from scrfd_ref.report.format import device_verdict, row_verdict

#: verdicts from best to worst (a device or session moving right regressed)
_RANK = {"pass": 0, "PASS": 0, "inconclusive": 1, "INCONCLUSIVE": 1, "NOT RUN": 2,
         "not run": 2, "NOTHING JUDGED": 2, "error": 3, "ERROR": 3, "fail": 4, "FAIL": 4}


@dataclass(frozen=True)
class Change:
    """One difference between the two reports.

    Attributes:
        kind: ``session``, ``device``, ``added``, ``removed``, ``gate``, ``gates-file``,
            ``option``.
        subject: what changed (a device id, ``device level/gate on subject``, an option).
        old, new: the two values as text (``-`` when absent).
        worse: the change is a regression (a verdict got worse).
    """

    kind: str
    subject: str
    old: str
    new: str
    worse: bool = False

    def line(self) -> str:
        """One line of the text diff."""
        mark = "!" if self.worse else "-"
        return f"{mark} {self.kind}: {self.subject}: {self.old} -> {self.new}"


@dataclass(frozen=True)
class ReportDiff:
    """Everything that differs between an old and a new report."""

    old: str
    new: str
    changes: tuple[Change, ...] = field(default_factory=tuple)

    @property
    def regressed(self) -> bool:
        """A session or device verdict got worse."""
        return any(c.worse for c in self.changes)

    def lines(self) -> list[str]:
        """The diff as text: a header, then one line a change (or "no difference")."""
        head = [f"report diff: {self.old} -> {self.new}"]
        if not self.changes:
            return head + ["no difference in verdicts, devices, gates or options"]
        kinds = {}
        for c in self.changes:
            kinds[c.kind] = kinds.get(c.kind, 0) + 1
        head.append(", ".join(f"{n} {k}" for k, n in kinds.items())
                    + ("; REGRESSED" if self.regressed else ""))
        return head + [c.line() for c in self.changes]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"old": self.old, "new": self.new, "regressed": self.regressed,
                "changes": [asdict(c) for c in self.changes]}


def load_report(path: str | Path, option: str) -> dict[str, Any]:
    """A ``report.json`` document from a file or a report folder.

    Raises:
        InputError: not a report (unreadable, not JSON, no ``devices``), naming ``option``.
    """
    p = Path(path)
    f = p / "report.json" if p.is_dir() else p
    from scrfd_ref.formats.strict import StrictFormatError, json_loads, regular_file_text

    try:
        doc = json_loads(regular_file_text(f))
    except FileNotFoundError:
        raise UsageError(f"{option} {p}: no report.json there; give a report folder or its "
                         "report.json") from None
    except (OSError, StrictFormatError) as exc:
        raise InputError(f"{option} {f}: not a readable report.json ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("devices"), dict):
        raise InputError(f"{option} {f}: not a scrfd-ref report.json (no devices table)")
    problem = _report_problem(doc)
    if problem:
        raise InputError(f"{option} {f}: {problem}")
    return doc


def _report_problem(doc: Mapping[str, Any]) -> str | None:
    """What makes a report.json unfit to compare: a newer layout, no session verdict, or a
    session verdict its own devices contradict (an edited or damaged file)."""
    from scrfd_ref.conformance.session_verdict import SESSION_VERDICTS
    from scrfd_ref.report.document import REPORT_FORMAT

    fmt = (doc.get("meta") or {}).get("report_format", 1) if isinstance(doc.get("meta"), dict) \
        else 1
    if not isinstance(fmt, int) or isinstance(fmt, bool) or not 1 <= fmt <= REPORT_FORMAT:
        return (f"report format {fmt!r}, but this scrfd-ref reads 1..{REPORT_FORMAT}: written by "
                "a newer scrfd-ref (upgrade to compare it)")
    session = doc.get("session")
    verdict = session.get("verdict") if isinstance(session, dict) else None
    if verdict not in SESSION_VERDICTS:
        return ("no session verdict (a report written before the sign-off, or a damaged "
                "file): run the suite again to get a report that can be compared")
    if verdict == "PASS":
        states = {d: device_verdict(rec) for d, rec in doc["devices"].items()
                  if isinstance(rec, dict)}
        for rec in session.get("devices") or ():   # the verdict's own list of devices
            if isinstance(rec, dict) and isinstance(rec.get("device"), str):
                states.setdefault(rec["device"], str(rec.get("state")))
                if rec.get("state") not in ("pass", "inconclusive"):
                    states[rec["device"]] = str(rec.get("state"))
        bad = [d for d, state in states.items() if state not in ("pass", "inconclusive")]
        if bad:
            return (f"says PASS but device {bad[0]} is {states[bad[0]]}: the verdict "
                    "contradicts the file's own devices (edited or damaged)")
    return None


def _rows(rec: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``level/gate on subject`` -> gate row (the subject without its varying detail)."""
    out = {}
    for level, lv in (rec.get("levels") or {}).items():
        for g in lv.get("gates") or []:
            subject = str(g.get("subject", "")).split(" (", 1)[0]
            out[f"{level}/{g.get('gate')} on {subject}"] = g
    return out


def _number(x: Any) -> bool:
    """A finite number (report.json writes an unmeasured value as the string "nan")."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _outside(value: Any, interval: Any) -> bool:
    return (_number(value) and isinstance(interval, (list, tuple)) and len(interval) == 2
            and all(_number(x) for x in interval) and not interval[0] <= value <= interval[1])


def _gate_changes(device: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    out = []
    a, b = _rows(old), _rows(new)
    for key in [k for k in b if k in a]:
        ga, gb = a[key], b[key]
        va, vb = row_verdict(ga), row_verdict(gb)
        moved = _outside(gb.get("value"), ga.get("interval")) or \
            _outside(ga.get("value"), gb.get("interval"))
        if va != vb or moved:
            why = "" if va != vb else " (beyond its interval)"
            out.append(Change("gate", f"{device} {key}{why}",
                              f"{ga.get('value')} {va}", f"{gb.get('value')} {vb}",
                              _RANK.get(vb, 0) > _RANK.get(va, 0)))
    return out


def _meta_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    out = []
    ga = (old.get("meta") or {}).get("gates_disclosure") or {}
    gb = (new.get("meta") or {}).get("gates_disclosure") or {}
    if ga.get("sha256") != gb.get("sha256"):
        out.append(Change("gates-file", "sha256", str(ga.get("sha256", "-"))[:16],
                          str(gb.get("sha256", "-"))[:16]))
        la = {c["gate"]: c["used"] for c in ga.get("changes") or []}
        lb = {c["gate"]: c["used"] for c in gb.get("changes") or []}
        for gate in sorted(set(la) | set(lb)):
            if la.get(gate) != lb.get(gate):
                out.append(Change("gates-file", gate, str(la.get(gate, "shipped")),
                                  str(lb.get(gate, "shipped"))))
    oa = ((old.get("meta") or {}).get("run") or {}).get("verdict_options") or {}
    ob = ((new.get("meta") or {}).get("run") or {}).get("verdict_options") or {}
    for option in sorted(set(oa) | set(ob)):
        if oa.get(option) != ob.get(option):
            out.append(Change("option", option, str(oa.get(option, "-")),
                              str(ob.get(option, "-"))))
    return out


def diff_reports(old: Mapping[str, Any], new: Mapping[str, Any], *, old_name: str = "OLD",
                 new_name: str = "NEW") -> ReportDiff:
    """Every difference between two ``report.json`` documents (module docstring)."""
    changes: list[Change] = []
    sa = (old.get("session") or {}).get("verdict", "-")
    sb = (new.get("session") or {}).get("verdict", "-")
    if sa != sb:
        changes.append(Change("session", "verdict", sa, sb, _RANK.get(sb, 0) > _RANK.get(sa, 0)))
    da, db = old.get("devices") or {}, new.get("devices") or {}
    for device in sorted(set(da) | set(db)):
        if device not in db:
            changes.append(Change("removed", device, device_verdict(da[device]), "-"))
        elif device not in da:
            changes.append(Change("added", device, "-", device_verdict(db[device])))
        else:
            va, vb = device_verdict(da[device]), device_verdict(db[device])
            if va != vb:
                changes.append(Change("device", device, va, vb,
                                      _RANK.get(vb, 0) > _RANK.get(va, 0)))
            changes += _gate_changes(device, da[device], db[device])
    changes += _meta_changes(old, new)
    return ReportDiff(old_name, new_name, tuple(changes))


def render_diff_html(diff: ReportDiff) -> str:
    """The diff as a self-contained page in the report's style."""
    from scrfd_ref.report.html import render_template

    return render_template("diff.html.j2", diff=diff,
                           verdict="fail" if diff.regressed else "pass")
