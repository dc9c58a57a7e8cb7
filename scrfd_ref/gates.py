"""Acceptance gates: every threshold of the conformance checks, per dtype, from one file.

The committed ``data/gates.toml`` holds, for each dtype (``fp32``, ``fp16``, ``int8``) and
level (``heads``, ``detections``, ``ap``), entries ``name = { value = ..., why = "..." }``:
the threshold and its one-line justification. Users pass their own file with
``--gates``. A name ending in ``_min`` is a lower bound, ``_max`` an upper bound; other
names (``atol``, ``score_floor``, ...) are parameters of a check, not gates.

:func:`check` turns measured values into :class:`GateResult` rows; a run passes when
every row passes.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import InputError

DEFAULT_GATES = Path(__file__).resolve().parent.parent / "data" / "gates.toml"
LEVELS = ("heads", "detections", "ap")
DTYPES = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Threshold:
    """One value from the gates file and why it is what it is."""

    value: float
    why: str


@dataclass(frozen=True)
class GateResult:
    """One gate applied to one measured value."""

    level: str
    gate: str
    subject: str      # the head, image or AP setting the value belongs to
    value: float
    limit: float
    passed: bool
    why: str

    @property
    def message(self) -> str:
        """``heads/cosine_min on bbox_16: 0.91 < 0.999 (why)``."""
        op = ">=" if self.gate.endswith("_min") else "<="
        verdict = "ok" if self.passed else "FAIL"
        return (f"{verdict} {self.level}/{self.gate} on {self.subject}: {self.value:.6g} "
                f"(needs {op} {self.limit:g}) - {self.why}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers as strings)."""
        d = asdict(self)
        d["value"] = self.value if math.isfinite(self.value) else str(self.value)
        return d


@dataclass(frozen=True)
class Gates:
    """All thresholds of a gates file: ``gates.get(dtype, level, name)``."""

    source: str
    table: Mapping[str, Mapping[str, Mapping[str, Threshold]]]

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Gates":
        """Read and validate a gates TOML file (default: the committed ``data/gates.toml``)."""
        p = Path(path) if path else DEFAULT_GATES
        try:
            raw = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise InputError(f"gates file not found: {p}") from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{p}: not valid TOML: {exc}") from exc
        table: dict[str, dict[str, dict[str, Threshold]]] = {}
        for dtype, levels in raw.items():
            if dtype == "meta":
                continue
            if dtype not in DTYPES or not isinstance(levels, dict):
                raise InputError(f"{p}: unknown section [{dtype}] (expected {', '.join(DTYPES)})")
            for level, entries in levels.items():
                if level not in LEVELS:
                    raise InputError(f"{p}: unknown level [{dtype}.{level}]")
                for name, entry in entries.items():
                    if not (isinstance(entry, dict) and "value" in entry and entry.get("why")):
                        raise InputError(f"{p}: {dtype}.{level}.{name} needs "
                                         "{{ value = ..., why = \"...\" }}")
                    table.setdefault(dtype, {}).setdefault(level, {})[name] = Threshold(
                        float(entry["value"]), str(entry["why"]))
        missing = [d for d in DTYPES if d not in table]
        if missing:
            raise InputError(f"{p}: no gates for dtype(s) {', '.join(missing)}")
        return cls(str(p), table)

    def get(self, dtype: str, level: str, name: str) -> Threshold:
        """The threshold ``[dtype.level].name``; a clear error when absent."""
        try:
            return self.table[dtype][level][name]
        except KeyError:
            raise InputError(f"{self.source}: no gate {dtype}.{level}.{name}") from None

    def value(self, dtype: str, level: str, name: str) -> float:
        """Just the number of :meth:`get`."""
        return self.get(dtype, level, name).value

    def gate_names(self, dtype: str, level: str) -> list[str]:
        """Names of the bounds (``*_min`` / ``*_max``) at one level."""
        return [n for n in self.table.get(dtype, {}).get(level, {})
                if n.endswith(("_min", "_max"))]

    def check(self, dtype: str, level: str, subject: str,
              measured: Mapping[str, float]) -> list[GateResult]:
        """Apply every bound of ``[dtype.level]`` whose metric is in ``measured``.

        The metric of gate ``cosine_min`` is ``measured["cosine"]``. NaN never passes.
        """
        rows = []
        for name in self.gate_names(dtype, level):
            metric = name.rsplit("_", 1)[0]
            if metric not in measured:
                continue
            t = self.get(dtype, level, name)
            v = float(measured[metric])
            ok = (v >= t.value) if name.endswith("_min") else (v <= t.value)
            rows.append(GateResult(level, name, subject, v, t.value, bool(ok and not math.isnan(v)),
                                   t.why))
        return rows
