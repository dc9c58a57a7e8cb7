"""Localize judging: which stage of the network a device first gets wrong.

Arrays in, verdict out. Each stage's **segment** (its own nodes fed with fp32 golden
inputs) is scored against the fp32 golden outputs:

- ``snr_db``: ``10 log10(sum g^2 / sum (d - g)^2)`` over all images, the worst output of
  the stage (a bit-exact output scores :data:`EXACT_DB`);
- ``cosine``: cosine similarity of the flattened output (the worst output);
- ``channel_snr_db``: per channel, the tensor's mean power over that channel's mean
  squared error: a channel broken on its own stands out even when the tensor's SNR is
  fine (the channel axis is 1 for NCHW maps, the last one for flattened heads).

A stage is **outside its band** when its segment SNR or its worst channel SNR is below the
band honest devices of the same dtype reach for that kind of stage (``data/
localize_bands.yaml``, each band with its one-line justification). The named stage is the
first one, in run order, outside its band; "no stage" when every stage is inside. Prefix
scores (the image -> that stage), when a device returned them, are reported beside the
segments: they show where the damage begins and how it grows, but never name a stage
(noise accumulates through a prefix; a segment's error is the stage's own).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

#: the score of a bit-exact output (and the cap of every SNR, so JSON stays finite)
EXACT_DB = 200.0
#: how many of a stage's worst channels a verdict names
WORST_CHANNELS = 3


def _channel_axis(a: np.ndarray) -> int:
    return 1 if a.ndim == 4 else a.ndim - 1


def _db(signal: float, noise: float) -> float:
    if noise <= 0.0:
        return EXACT_DB
    if signal <= 0.0:
        return -EXACT_DB
    return float(min(EXACT_DB, max(-EXACT_DB, 10.0 * np.log10(signal / noise))))


def output_scores(golden: Sequence[np.ndarray], device: Sequence[np.ndarray]) -> dict[str, Any]:
    """Scores of one output tensor over images (``golden[i]`` / ``device[i]``: image i).

    Returns ``snr_db``, ``cosine``, ``channel_snr_db`` (one per channel) and ``finite``
    (False when the device wrote NaN or Inf: every score is then the worst).
    """
    g = np.stack([np.asarray(a, np.float64) for a in golden])
    d = np.stack([np.asarray(a, np.float64) for a in device])
    axis = _channel_axis(g[0]) + 1
    channels = g.shape[axis]
    if not np.isfinite(d).all():
        return {"snr_db": -EXACT_DB, "cosine": -1.0, "finite": False,
                "channel_snr_db": [-EXACT_DB] * channels}
    err = (d - g) ** 2
    power = float(np.mean(g ** 2))
    other = tuple(i for i in range(g.ndim) if i != axis)
    per_channel = np.mean(err, axis=other)
    norm = float(np.linalg.norm(g) * np.linalg.norm(d))
    cosine = float(np.sum(g * d) / norm) if norm > 0 else (1.0 if not err.any() else 0.0)
    return {"snr_db": _db(float(np.sum(g ** 2)), float(np.sum(err))), "cosine": cosine,
            "finite": True, "channel_snr_db": [_db(power, float(e)) for e in per_channel]}


@dataclass(frozen=True)
class Band:
    """What honest devices of one dtype reach on one kind of stage (lower bounds, dB)."""

    snr_db: float
    channel_snr_db: float
    why: str


@dataclass(frozen=True)
class Bands:
    """The bands of a bands file: per dtype and kind of stage (any model), and per stage of
    the variants they were measured on (tighter: a stage's own honest noise)."""

    source: str
    kinds: Mapping[str, Mapping[str, Band]]
    stages: Mapping[tuple[str, str, str], Band] = field(default_factory=dict)

    def band(self, dtype: str, kind: str, stage: str, variant: str | None = None) -> Band:
        """The band of ``stage`` (of ``kind``) of ``variant`` for a ``dtype`` device: the
        stage's own when it was measured for that variant, else its kind's."""
        return self.stages.get((variant or "", dtype, stage)) or self.kinds[dtype][kind]


@dataclass
class StageScore:
    """One stage's scores and whether it is inside its band."""

    index: int
    name: str
    kind: str
    nodes: list[str]
    op_types: list[str]
    snr_db: float
    cosine: float
    channel_snr_db: float
    worst_channels: list[dict[str, Any]]
    band: Band
    prefix_snr_db: float | None = None
    nonfinite: bool = False
    outside: bool = field(init=False)

    def __post_init__(self) -> None:
        self.outside = (self.snr_db < self.band.snr_db
                        or self.channel_snr_db < self.band.channel_snr_db)

    def describe(self) -> str:
        """One line: scores against the band."""
        prefix = ("" if self.prefix_snr_db is None
                  else f"; prefix (image -> here) {self.prefix_snr_db:.1f} dB")
        bad = "; NaN or Inf in the device's outputs" if self.nonfinite else ""
        return (f"{self.name}: segment SNR {self.snr_db:.1f} dB (band >= {self.band.snr_db:.1f}), "
                f"worst channel {self.channel_snr_db:.1f} dB (band >= "
                f"{self.band.channel_snr_db:.1f}), cosine {self.cosine:.6f}{prefix}{bad}"
                + ("  << outside its band" if self.outside else ""))


@dataclass
class LocalizeResult:
    """The verdict: the first stage outside its band (None: no stage)."""

    dtype: str
    device: str
    images: int
    stages: list[StageScore]
    bands_source: str

    @property
    def named(self) -> StageScore | None:
        """The first stage, in run order, whose own error leaves its band."""
        return next((s for s in self.stages if s.outside), None)

    def lines(self) -> list[str]:
        """The verdict and what it rests on, for the terminal and report.md."""
        s = self.named
        if s is None:
            head = (f"no stage: every stage of {self.device} ({self.dtype}) is inside the band "
                    f"honest {self.dtype} devices reach ({self.images} image(s))")
            return [head]
        ops = sorted(set(s.op_types))
        chans = ", ".join(f"{c['output']}[{c['channel']}] {c['snr_db']:.1f} dB"
                          for c in s.worst_channels)
        later = [t.name for t in self.stages if t.outside and t is not s]
        return [f"stage {s.name} diverges: its own (segment) error leaves the {self.dtype} band "
                f"({self.images} image(s))",
                *(["  the device wrote NaN or Inf in this stage's outputs"] if s.nonfinite else []),
                f"  SNR {s.snr_db:.1f} dB < {s.band.snr_db:.1f} or worst channel "
                f"{s.channel_snr_db:.1f} dB < {s.band.channel_snr_db:.1f}; cosine {s.cosine:.6f}",
                f"  nodes ({len(s.nodes)}): {', '.join(s.nodes[:12])}"
                + (" ..." if len(s.nodes) > 12 else ""),
                f"  op types: {', '.join(ops)}",
                f"  channels most affected: {chans}"]\
            + ([f"  also outside their bands (later): {', '.join(later)}"] if later else [])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``localize.json``)."""
        named = self.named
        return {"dtype": self.dtype, "device": self.device, "images": self.images,
                "bands": self.bands_source, "named_stage": named.name if named else None,
                "stages": [{**{k: v for k, v in asdict(s).items() if k != "band"},
                            "band": asdict(s.band), "outside": s.outside}
                           for s in self.stages]}


def score_stage(index: int, stage: Mapping[str, Any], golden: Sequence[Sequence[np.ndarray]],
                device: Sequence[Sequence[np.ndarray]], band: Band,
                prefix: Sequence[Sequence[np.ndarray]] | None = None) -> StageScore:
    """Score one stage: ``golden[i][k]`` / ``device[i][k]`` is output k of image i."""
    names = [o["name"] for o in stage["outputs"]]
    per_output = [output_scores([g[k] for g in golden], [d[k] for d in device])
                  for k in range(len(names))]
    channels = sorted(({"output": names[k], "channel": c, "snr_db": v}
                       for k, o in enumerate(per_output)
                       for c, v in enumerate(o["channel_snr_db"])), key=lambda c: c["snr_db"])
    prefix_db = None
    if prefix is not None:
        prefix_db = min(output_scores([g[k] for g in golden], [p[k] for p in prefix])["snr_db"]
                        for k in range(len(names)))
    return StageScore(index, stage["name"], stage["kind"], list(stage["nodes"]),
                      list(stage["op_types"]), min(o["snr_db"] for o in per_output),
                      min(o["cosine"] for o in per_output), channels[0]["snr_db"],
                      channels[:WORST_CHANNELS], band, prefix_db,
                      any(not o["finite"] for o in per_output))


__all__ = ["Band", "Bands", "EXACT_DB", "LocalizeResult", "StageScore", "output_scores", "score_stage"]
