"""Acceptance gates: one declaration of every gate in code, and the gates file checked
against it.

:data:`DECLARED` lists every gate once: its TOML level (``heads``, ``detections``,
``ap``), the check that reads it (``group``), its kind (a lower bound ``min``, an upper
bound ``max`` or a ``param`` of a check), the metric it bounds, the allowed value range
and what it reads. Every dtype section (``fp32``, ``fp16``, ``int8``) holds the same
gates. Issues that add gates add a :class:`GateSpec` here, and a value to
``data/gates.toml``.

A gates file (``data/gates.toml``, or ``--gates FILE``) holds
``[dtype.level]`` tables of ``name = { value = ..., why = "..." }``. :meth:`Gates.load`
validates it against the declaration and reports every problem at once: an unknown
section or gate name (with the closest valid name), a value of the wrong type or out of
range, a missing justification. Gates a file leaves out take the committed defaults, and
:attr:`Gates.defaulted` lists them so the caller prints one notice.

:meth:`Gates.check` applies every bound of one check to measured values and gives each
row one of three verdicts (``../shared/docs/conventions.md``):

- **pass**: the value (or, for an AP gate with a bootstrap interval, the whole interval)
  is on the right side of the limit;
- **fail**: the value (the whole interval) is on the wrong side, NaN, or a metric the
  device should have given is missing (a device without the reference's landmark heads,
  no match although the reference has faces): a device failure;
- **inconclusive**: the images cannot decide: the metric has nothing to measure in them
  (no foreground anchor on a stride, no face in a size bucket, no reference face above
  the floor), said in words with what to add, or an AP interval that straddles the limit,
  with the number of images that would decide it. Never a pass, never worded as a device
  failure.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from scrfd_ref.conformance.gates_declared import DECLARED, INF, GateSpec  # noqa: F401
from scrfd_ref.conformance.verdicts import (  # noqa: F401 - re-exported
    VERDICTS,
    GateResult,
    judged,
    worst_verdict,
)
from scrfd_ref.core.dtypes import DTYPES
from scrfd_ref.core.errors import InputError, did_you_mean
from scrfd_ref.formats.datadir import project_file

DEFAULT_GATES = project_file("gates.toml")
LEVELS = ("heads", "detections", "ap", "slices")
#: the checks that read gates: per head (all anchors; foreground / background), pooled
#: detections, per size bucket, score collapse, per AP setting, per face-attribute slice
GROUPS = ("heads", "anchors", "detections", "buckets", "collapse", "ap", "diagnose", "slices")
#: keys allowed in the ``[meta]`` table
META_KEYS = ("version", "description")


_BY_KEY: dict[tuple[str, str], GateSpec] = {(g.level, g.name): g for g in DECLARED}


def declared(level: str | None = None, group: str | None = None) -> list[GateSpec]:
    """Declared gates, optionally of one TOML level and/or one check group."""
    return [g for g in DECLARED if (level is None or g.level == level)
            and (group is None or g.group == group)]


def spec(level: str, name: str) -> GateSpec:
    """The declaration of ``[*.level].name``; InputError naming the closest gate."""
    try:
        return _BY_KEY[(level, name)]
    except KeyError:
        raise InputError(f"[{level}] {name}: unknown gate"
                         + _suggest(name, [g.name for g in declared(level)])) from None


def _suggest(word: str, choices: list[str]) -> str:
    return did_you_mean(word, choices)


@dataclass(frozen=True)
class Threshold:
    """One value from the gates file and why it is what it is."""

    value: float
    why: str


def _type_problem(g: GateSpec, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"value must be a number, got {type(value).__name__} {value!r}"
    v = float(value)
    if math.isnan(v):
        return "value is nan"
    if g.integer and not v.is_integer():
        return f"value must be a whole number, got {value!r}"
    if not g.lo <= v <= g.hi:
        return f"value {value!r} is outside {g.lo:g} .. {g.hi:g}"
    if g.kind == "param" and not math.isfinite(v):
        return f"value {value!r} is not finite"
    return None


def _parse(raw: Mapping[str, Any], p: Path) -> tuple[dict, list[str]]:
    """Validate a parsed gates document: ``(table, problems)``."""
    problems: list[str] = []
    table: dict[str, dict[str, dict[str, Threshold]]] = {}
    for section, levels in raw.items():
        if section == "meta":
            if not isinstance(levels, dict):
                problems.append("[meta] must be a table")
                continue
            for k in levels:
                if k not in META_KEYS:
                    problems.append(f"[meta] {k}: unknown key" + _suggest(k, list(META_KEYS)))
            continue
        if section not in DTYPES:
            problems.append(f"[{section}]: unknown section" + _suggest(section, [*DTYPES, "meta"]))
            continue
        if not isinstance(levels, dict):
            problems.append(f"{section}: must be a table of levels ({', '.join(LEVELS)})")
            continue
        for level, entries in levels.items():
            if level not in LEVELS:
                problems.append(f"[{section}.{level}]: unknown level"
                                + _suggest(level, list(LEVELS)))
                continue
            if not isinstance(entries, dict):
                problems.append(f"[{section}.{level}]: must be a table of gates")
                continue
            for name, entry in entries.items():
                where = f"[{section}.{level}] {name}"
                if (level, name) not in _BY_KEY:
                    problems.append(f"{where}: unknown gate"
                                    + _suggest(name, [g.name for g in declared(level)]))
                    continue
                if not isinstance(entry, dict):
                    problems.append(f"{where}: needs {{ value = ..., why = \"...\" }}, got "
                                    f"{entry!r}")
                    continue
                extra = sorted(set(entry) - {"value", "why"})
                if extra:
                    problems.append(f"{where}: unknown key(s) {', '.join(extra)} "
                                    "(an entry holds value and why)")
                if "value" not in entry:
                    problems.append(f"{where}: no value")
                    continue
                bad = _type_problem(_BY_KEY[(level, name)], entry["value"])
                if bad:
                    problems.append(f"{where}: {bad}")
                    continue
                why = entry.get("why")
                if not isinstance(why, str) or not why.strip():
                    problems.append(f"{where}: needs a one-line justification (why = \"...\")")
                    continue
                table.setdefault(section, {}).setdefault(level, {})[name] = Threshold(
                    float(entry["value"]), why.strip())
    return table, problems


def _bootstrap_problems(table: Mapping[str, Any]) -> list[str]:
    """An AP interval needs enough resamples for its confidence (widerface.resample)."""
    from scrfd_ref.widerface.resample import min_resamples

    out = []
    for dtype, levels in table.items():
        ap = levels.get("ap", {})
        if "bootstrap_resamples" in ap:
            conf = ap["bootstrap_confidence"].value if "bootstrap_confidence" in ap else 0.95
            need = min_resamples(conf)
            if ap["bootstrap_resamples"].value < need:
                out.append(f"[{dtype}.ap] bootstrap_resamples: {ap['bootstrap_resamples'].value:g}"
                           f" are too few for a {100 * conf:g}% interval (at least {need})")
    return out


def _read(p: Path) -> Mapping[str, Any]:
    from scrfd_ref.formats.strict import StrictFormatError, regular_file_text

    try:
        text = regular_file_text(p)  # a UTF-8 BOM (Windows editors) is skipped
    except FileNotFoundError:
        raise InputError(f"gates file not found: {p}") from None
    except StrictFormatError as exc:
        raise InputError(f"gates file {p}: {exc}; give a .toml file") from None
    except OSError as exc:
        raise InputError(f"gates file {p}: cannot read: {exc}") from None
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise InputError(f"{p}: not valid TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{p}: not valid TOML: {exc}") from None


@dataclass(frozen=True)
class Gates:
    """All thresholds of a gates file: ``gates.get(dtype, level, name)``.

    Attributes:
        source: the file read.
        table: ``{dtype: {level: {name: Threshold}}}``, complete (every declared gate).
        defaulted: ``dtype.level.name`` of the gates taken from the defaults because the
            file left them out.
    """

    source: str
    table: Mapping[str, Mapping[str, Mapping[str, Threshold]]]
    defaulted: tuple[str, ...] = field(default=())

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Gates":
        """Read and validate a gates TOML file (default: the committed ``data/gates.toml``).

        Raises:
            InputError: the file is missing, not TOML, or breaks the declaration; the
                message lists every problem, one per line, naming the file.
        """
        p = Path(path) if path else DEFAULT_GATES
        table, problems = _parse(_read(p), p)
        problems += _bootstrap_problems(table)
        if problems:
            raise InputError(f"{p}: " + (problems[0] if len(problems) == 1 else
                                         f"{len(problems)} problems:\n  " + "\n  ".join(problems)))
        defaulted: list[str] = []
        if p.resolve() != DEFAULT_GATES.resolve():
            defaults = cls.load(DEFAULT_GATES)
            for dtype in DTYPES:
                for g in DECLARED:
                    if g.name not in table.get(dtype, {}).get(g.level, {}):
                        table.setdefault(dtype, {}).setdefault(g.level, {})[g.name] = \
                            defaults.get(dtype, g.level, g.name)
                        defaulted.append(f"{dtype}.{g.level}.{g.name}")
        else:
            missing = [f"{d}.{g.level}.{g.name}" for g in DECLARED for d in DTYPES
                       if g.name not in table.get(d, {}).get(g.level, {})]
            if missing:
                raise InputError(f"{p}: the default gates file lacks "
                                 f"{', '.join(missing)}")
        return cls(str(p), table, tuple(defaulted))

    def notice(self) -> str | None:
        """One line naming the gates taken from the defaults, or None."""
        if not self.defaulted:
            return None
        shown = ", ".join(self.defaulted[:12]) + (" ..." if len(self.defaulted) > 12 else "")
        return (f"gates file {self.source} leaves out {len(self.defaulted)} gate(s); using the "
                f"defaults of {DEFAULT_GATES} for: {shown}")

    def get(self, dtype: str, level: str, name: str) -> Threshold:
        """The threshold ``[dtype.level].name``; a clear error when absent."""
        try:
            return self.table[dtype][level][name]
        except KeyError:
            raise InputError(f"{self.source}: no gate {dtype}.{level}.{name}") from None

    def value(self, dtype: str, level: str, name: str) -> float:
        """Just the number of :meth:`get`."""
        return self.get(dtype, level, name).value

    def bootstrap_settings(self, dtype: str) -> dict[str, Any]:
        """``{confidence, resamples, seed}`` of ``dtype``'s AP intervals (the keyword
        arguments of :func:`scrfd_ref.widerface.bootstrap.paired_bootstrap`)."""
        p = lambda name: self.value(dtype, "ap", name)  # noqa: E731
        return {"confidence": p("bootstrap_confidence"),
                "resamples": int(p("bootstrap_resamples")), "seed": int(p("bootstrap_seed"))}

    def gate_names(self, dtype: str, level: str) -> list[str]:
        """Names of the bounds (``*_min`` / ``*_max``) at one level."""
        return [g.name for g in declared(level) if g.kind != "param"]

    def check(self, dtype: str, group: str, subject: str, measured: Mapping[str, float],
              details: Mapping[str, str] | None = None,
              not_applicable: Mapping[str, str] | None = None,
              lacking: Mapping[str, str] | None = None,
              intervals: Mapping[str, tuple[float, float]] | None = None,
              images: int | None = None,
              fail_intervals: Mapping[str, tuple[float, float]] | None = None
              ) -> list[GateResult]:
        """Apply every declared bound of check ``group`` to ``measured``.

        The metric of gate ``cosine_min`` is ``measured["cosine"]``. Verdicts (module
        docstring):

        - ``lacking`` names metrics the images cannot measure, with what they lack: such
          a row is **inconclusive** ("no face >= 181 px ... add images with large faces");
        - a bound whose metric is absent otherwise **fails** with a note saying it was not
          measured (the device did not give it); NaN never passes;
        - ``intervals`` gives a confidence interval per metric (the AP gates): the row
          passes or fails only when the whole interval is on one side of the limit, else
          it is inconclusive, with the number of images that would decide it estimated
          from ``images`` and the interval's width
          (:func:`scrfd_ref.widerface.bootstrap.images_to_decide`).

        ``fail_intervals`` gives, per metric, a wider interval that alone can fail the row
        (the slice gates: pass on the plain interval, fail only on the multiplicity-corrected
        one, inconclusive between).

        ``details`` adds a per-metric remark to the subject (``worst: image``);
        ``not_applicable`` names metrics that do not apply to this device, with the reason
        (the row passes and says so: the model has no landmark heads).
        """
        if group not in GROUPS:
            raise InputError(f"unknown gate group {group!r} (one of {', '.join(GROUPS)})")
        rows = []
        for g in declared(group=group):
            if g.kind == "param":
                continue
            t = self.get(dtype, g.level, g.name)
            subj = f"{subject} ({details[g.metric]})" if details and g.metric in details \
                else subject
            if not_applicable and g.metric in not_applicable and g.metric not in measured:
                rows.append(GateResult(g.level, g.name, subj, math.nan, t.value, True, t.why,
                                       note=f"not applicable: {not_applicable[g.metric]}"))
                continue
            if lacking and g.metric in lacking and g.metric not in measured:
                rows.append(GateResult(g.level, g.name, subj, math.nan, t.value, False, t.why,
                                       note=f"not measured: {lacking[g.metric]}",
                                       verdict="inconclusive", lack=lacking[g.metric]))
                continue
            if g.metric not in measured:
                rows.append(GateResult(g.level, g.name, subj, math.nan, t.value, False,
                                       t.why, note=f"not measured ({g.what})"))
                continue
            v = float(measured[g.metric])
            interval = (intervals or {}).get(g.metric)
            rows.append(judged(g, t, subj, v, interval, images,
                               fail_interval=(fail_intervals or {}).get(g.metric)))
        return rows


def describe_declaration() -> list[str]:
    """One line per declared gate (for ``scrfd-ref gates list``)."""
    return [f"{g.level:<10} {g.name:<22} {g.kind:<5} {g.op:<2} {g.what}" for g in DECLARED]
