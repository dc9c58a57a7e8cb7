"""What a gates file changes against the shipped one: the disclosure a report and
``scrfd-ref gates check`` carry beside every verdict.

A verdict is only as strict as its gates. :func:`disclose` compares the gates a run used
with the shipped ``data/gates.toml``, limit by limit: each difference is named with the
shipped and the used value and its direction (a lower bound lowered, or an upper bound
raised, is **looser**: it lets more devices pass; the opposite is **tighter**; a changed
parameter, such as an IoU threshold or a tolerance, is **changed**, since its effect on
a verdict has no single direction). The file's sha256 identifies it exactly.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from scrfd_ref.conformance.gates import DECLARED, DEFAULT_GATES, DTYPES, Gates
from scrfd_ref.formats.files import file_digest


@dataclass(frozen=True)
class LimitChange:
    """One limit that differs from the shipped gates file.

    Attributes:
        gate: ``dtype.level.name``.
        shipped: the shipped value.
        used: the value the run used.
        direction: ``looser``, ``tighter`` (bounds) or ``changed`` (parameters).
    """

    gate: str
    shipped: float
    used: float
    direction: str

    def line(self) -> str:
        """``fp16.heads.snr_db_min: 35 -> 10 (looser)``."""
        return f"{self.gate}: {self.shipped:g} -> {self.used:g} ({self.direction})"


@dataclass(frozen=True)
class GatesDisclosure:
    """Which gates a run used, compared with the shipped ones.

    Attributes:
        path: the gates file.
        sha256: its bytes' sha256.
        shipped: True when its bytes are the shipped file's.
        changes: every limit that differs from the shipped value.
        defaulted: how many gates the file left out (taken from the shipped file).
    """

    path: str
    sha256: str
    shipped: bool
    changes: tuple[LimitChange, ...]
    defaulted: int = 0

    @property
    def looser(self) -> int:
        """How many limits are looser than shipped."""
        return sum(1 for c in self.changes if c.direction == "looser")

    def banner(self) -> str:
        """The few words shown beside a verdict: ``shipped gates`` or ``custom gates: 7
        limits looser than shipped, 1 tighter, 2 parameters changed``."""
        if self.shipped or not self.changes:
            return "shipped gates" if self.shipped else "custom gates file, same limits as shipped"
        counts = {d: sum(1 for c in self.changes if c.direction == d)
                  for d in ("looser", "tighter", "changed")}
        parts = []
        if counts["looser"]:
            parts.append(f"{counts['looser']} limit{'s' * (counts['looser'] != 1)} looser "
                         "than shipped")
        if counts["tighter"]:
            parts.append(f"{counts['tighter']} tighter")
        if counts["changed"]:
            parts.append(f"{counts['changed']} parameter{'s' * (counts['changed'] != 1)} "
                         "changed")
        return "custom gates: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (report.json ``meta.gates``)."""
        return {"path": self.path, "sha256": self.sha256, "shipped": self.shipped,
                "banner": self.banner(), "looser": self.looser, "defaulted": self.defaulted,
                "changes": [asdict(c) for c in self.changes]}


def direction(kind: str, shipped: float, used: float) -> str:
    """``looser`` / ``tighter`` for a bound (``min``: lower is looser; ``max``: higher is
    looser), ``changed`` for a parameter."""
    if kind == "min":
        return "looser" if used < shipped else "tighter"
    if kind == "max":
        return "looser" if used > shipped else "tighter"
    return "changed"


def disclose(gates: Gates, shipped: Gates | None = None) -> GatesDisclosure:
    """Compare ``gates`` with the shipped gates file (every declared limit of every dtype).

    Args:
        gates: the gates a run used (:meth:`Gates.load`).
        shipped: the shipped gates (default: loaded from ``data/gates.toml``).
    """
    shipped = shipped or Gates.load(DEFAULT_GATES)
    digest = file_digest(gates.source)
    same_bytes = digest == file_digest(shipped.source)
    changes = []
    for dtype in DTYPES:
        for g in DECLARED:
            a = shipped.value(dtype, g.level, g.name)
            b = gates.value(dtype, g.level, g.name)
            if a != b:
                changes.append(LimitChange(f"{dtype}.{g.level}.{g.name}", a, b,
                                           direction(g.kind, a, b)))
    return GatesDisclosure(str(gates.source), digest, same_bytes, tuple(changes),
                           len(gates.defaulted))
