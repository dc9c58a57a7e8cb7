"""Name the likely cause of a failing device from its raw head outputs.

Each hypothesis is a correction: "if the device had done X, undoing X makes it match the
reference". :func:`diagnose` applies every correction to the device's heads (batch-1
:class:`~scrfd_ref.core.heads.Heads` of the same images as the reference's), measures the
match before and after, and ranks the hypotheses by the gain. The match of one head is
its SNR (dB, capped at :data:`SNR_CAP`) against the reference on the foreground anchors
(reference score >= the gates' ``fg_score_floor``; the pairing hypotheses use every
anchor); a hypothesis touching several heads scores the mean gain over them. A cause is
reported only when its gain reaches the gates' ``diagnose_min_gain_db`` (per dtype, data/gates.toml); otherwise the result says
"no known cause matches" and lists the closest hypotheses with their gains.

Hypotheses on the outputs (this module): a head scaled or offset (least-squares fit
device = a * reference + b on the foreground anchors), one channel of a box or landmark
head scaled or offset (the same fit per channel), score logits biased, sigmoid applied
twice or not at all, box channels in tlbr order, a landmark pair swapped, the two anchors
of a cell swapped, a dead (constant) head, values clipped at a constant (fp16 saturation),
NaN / Inf; on the pairing: outputs shifted, swapped or repeated against the datalist. Preprocessing
hypotheses need the model (:mod:`scrfd_ref.conformance.diagnose_run`) and come in as
``extra`` causes. Raw int8 outputs never
dequantized are named from the files themselves (:func:`raw_dtype_cause`), before the
strict reader refuses them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from scrfd_ref.conformance.compare import cosine_snr
from scrfd_ref.core.heads import Heads

#: SNR of a head that matches exactly (dB); keeps gains finite
SNR_CAP = 80.0
KINDS = (("score", "scores"), ("bbox", "boxes"), ("kps", "kps"))


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
    """

    name: str
    text: str
    heads: list[str]
    before_db: float
    after_db: float
    params: dict[str, Any] = field(default_factory=dict)
    metric: str = "foreground SNR"

    @property
    def gain_db(self) -> float:
        """How much undoing the fault improves the match (dB)."""
        return self.after_db - self.before_db

    def describe(self) -> str:
        """``bbox_32 scaled x1.150 (foreground SNR 9.1 -> 38.2 dB on bbox_32)``."""
        if not self.heads:
            return self.text
        evidence = f"; {self.params['evidence']}" if self.params.get("evidence") else ""
        return (f"{self.text} ({self.metric} {self.before_db:.1f} -> {self.after_db:.1f} dB "
                f"on {', '.join(self.heads)}{evidence})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the gain."""
        return {**asdict(self), "gain_db": self.gain_db}


@dataclass
class Diagnosis:
    """Ranked hypotheses; ``causes`` are those whose gain reaches ``min_gain_db``."""

    causes: list[Cause]
    closest: list[Cause]
    min_gain_db: float
    images: int

    def lines(self) -> list[str]:
        """The human report, one line per cause (or the closest ones)."""
        if self.causes:
            return [f"{i + 1}. {c.describe()}" for i, c in enumerate(self.causes)]
        out = [f"no known cause matches (no correction gains {self.min_gain_db:g} dB); "
               "closest:"]
        return out + [f"   {c.describe()}" for c in self.closest[:3]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"causes": [c.to_dict() for c in self.causes],
                "closest": [c.to_dict() for c in self.closest[:5]],
                "min_gain_db": self.min_gain_db, "images": self.images}


# ----------------------------------------------------------------------------- helpers

def _get(h: Heads, kind: str, stride: int) -> np.ndarray | None:
    arrays = getattr(h, dict(KINDS)[kind])
    if arrays is None:
        return None
    return arrays[h.strides.index(stride)]


def _with(h: Heads, kind: str, stride: int, new: np.ndarray) -> Heads:
    attr = dict(KINDS)[kind]
    arrays = list(getattr(h, attr))
    arrays[h.strides.index(stride)] = new
    return Heads(h.layout, h.input_size, *[tuple(arrays) if a == attr else getattr(h, a)
                                           for a in ("scores", "boxes", "kps")], h.strides)


def _snr(ref: np.ndarray, dev: np.ndarray) -> float:
    """SNR as the head checks compute it, capped at :data:`SNR_CAP`; a device with NaN /
    Inf is as far off as possible (-cap)."""
    if not ref.size:
        return SNR_CAP
    if not np.isfinite(dev).all():
        return -SNR_CAP
    return float(min(SNR_CAP, cosine_snr(ref, dev)[1]))


class _Pairs:
    """Reference and device heads of the same images, with the foreground masks."""

    def __init__(self, ref: Sequence[Heads], dev: Sequence[Heads], floor: float) -> None:
        self.ref, self.dev, self.floor = list(ref), list(dev), floor
        h = self.ref[0]
        self.heads = [(k, s) for k, attr in KINDS for s in h.strides
                      if getattr(h, attr) is not None and all(
                          getattr(d, attr) is not None for d in self.dev)]
        self.masks = [[r.scores[i][0] >= floor for i in range(len(r.strides))]
                      for r in self.ref]

    def fg(self, kind: str, stride: int, dev: Sequence[Heads] | None = None,
           ref: Sequence[Heads] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Concatenated foreground rows (reference, device) of one head."""
        i = self.ref[0].strides.index(stride)
        rs, ds = [], []
        for j, (r, d) in enumerate(zip(ref or self.ref, dev or self.dev)):
            m = self.masks[j][i]
            ra, da = _get(r, kind, stride)[0], _get(d, kind, stride)[0]
            if ra.shape != da.shape:
                continue
            rs.append(ra.reshape(m.shape[0], -1)[m])
            ds.append(da.reshape(m.shape[0], -1)[m])
        return (np.concatenate(rs) if rs else np.empty((0, 1)),
                np.concatenate(ds) if ds else np.empty((0, 1)))

    def snr(self, kind: str, stride: int, dev: Sequence[Heads] | None = None,
            ref: Sequence[Heads] | None = None) -> float:
        return _snr(*self.fg(kind, stride, dev, ref))

    def name(self, kind: str, stride: int) -> str:
        return f"{kind}_{stride}"


Correction = Callable[[np.ndarray], np.ndarray]


def _per_head(p: _Pairs, name: str, text: str, kind: str, stride: int, fix: Correction,
              params: dict[str, Any] | None = None) -> Cause:
    before = p.snr(kind, stride)
    fixed = [_with(d, kind, stride, fix(_get(d, kind, stride))) for d in p.dev]
    return Cause(name, text, [p.name(kind, stride)], before, p.snr(kind, stride, fixed),
                 params or {})


def _all_strides(p: _Pairs, name: str, text: str, kind: str, fix: Correction) -> Cause:
    strides = [s for k, s in p.heads if k == kind]
    before = float(np.mean([p.snr(kind, s) for s in strides]))
    fixed = list(p.dev)
    for s in strides:
        fixed = [_with(d, kind, s, fix(_get(d, kind, s))) for d in fixed]
    after = float(np.mean([p.snr(kind, s, fixed) for s in strides]))
    return Cause(name, text, [p.name(kind, s) for s in strides], before, after)


def _logit(x: np.ndarray) -> np.ndarray:
    x = np.clip(x.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(x / (1 - x))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x.astype(np.float64), -60, 60)))


# ----------------------------------------------------------------------------- hypotheses

def _affine(p: _Pairs) -> list[Cause]:
    out = []
    for kind, stride in p.heads:
        r, d = p.fg(kind, stride)
        r, d = r.astype(np.float64).ravel(), d.astype(np.float64).ravel()
        ok = np.isfinite(d)
        if ok.sum() < 8 or float(np.var(r[ok])) == 0:
            continue
        a, b = np.polyfit(r[ok], d[ok], 1)
        if not np.isfinite(a) or abs(a) < 1e-6:
            continue
        corr = float(np.corrcoef(r[ok], d[ok])[0, 1]) if np.std(d[ok]) > 0 else 0.0
        scale = abs(b) < 0.05 * (np.abs(r).mean() + 1e-12)
        text = (f"{kind}_{stride} scaled x{a:.3f}" if scale else
                f"{kind}_{stride} = {a:.3f} x reference {b:+.4f}")
        if kind == "score" or (abs(a - 1) < 0.01 and scale):
            continue  # scores: the logit-domain hypotheses below; a ~1 slope explains nothing
        out.append(_per_head(p, "scale_head" if scale else "affine_head",
                             f"{text} (least-squares fit on foreground anchors, r {corr:.3f})",
                             kind, stride, lambda x, a=a, b=b: ((x - b) / a).astype(x.dtype),
                             {"slope": float(a), "offset": float(b), "r": corr}))
    return out


CHANNEL_NAMES = {"bbox": ("left", "top", "right", "bottom"),
                 "kps": tuple(f"{axis}{i}" for i in range(5) for axis in "xy")}


def _per_channel(p: _Pairs) -> list[Cause]:
    """One channel of a box or landmark head scaled / offset (a per-channel requantisation
    or a folded constant gone wrong): a least-squares fit per channel; only channels whose
    fit differs from identity are tried (a whole-head fault fits every channel alike and
    its whole-head correction then gains more)."""
    out = []
    for kind, stride in p.heads:
        if kind == "score":
            continue
        r, d = p.fg(kind, stride)
        if r.ndim != 2 or r.shape[0] < 8:
            continue
        for c in range(r.shape[1]):
            rc, dc = r[:, c].astype(np.float64), d[:, c].astype(np.float64)
            ok = np.isfinite(dc)
            if ok.sum() < 8 or float(np.var(rc[ok])) == 0:
                continue
            a, b = np.polyfit(rc[ok], dc[ok], 1)
            spread = float(np.abs(rc[ok]).mean()) + 1e-12
            if not np.isfinite(a) or abs(a) < 1e-6 or (abs(a - 1) < 0.01
                                                       and abs(b) < 0.01 * spread):
                continue
            names = CHANNEL_NAMES.get(kind, ())
            label = names[c] if c < len(names) else str(c)
            fit = (f"scaled x{a:.3f}" if abs(b) < 0.05 * spread else
                   f"= {a:.3f} x reference {b:+.4f}")

            def fix(x: np.ndarray, c: int = c, a: float = a, b: float = b) -> np.ndarray:
                y = x.copy()
                y[..., c] = ((x[..., c] - b) / a).astype(x.dtype)
                return y
            out.append(_per_head(p, "channel_affine",
                                 f"{kind}_{stride} channel {c} ({label}) {fit} (least-squares "
                                 "fit on foreground anchors)", kind, stride, fix,
                                 {"channel": c, "slope": float(a), "offset": float(b)}))
    return out


def _score_hypotheses(p: _Pairs) -> list[Cause]:
    out = [_all_strides(p, "sigmoid_twice", "scores passed through sigmoid twice", "score",
                        lambda x: _logit(x).astype(np.float32)),
           _all_strides(p, "sigmoid_missing", "scores are logits (sigmoid not applied)",
                        "score", lambda x: _sigmoid(x).astype(np.float32))]
    for kind, stride in p.heads:
        if kind != "score":
            continue
        r, d = p.fg(kind, stride)
        ok = np.isfinite(d).ravel()
        if ok.sum() < 4:
            continue
        bias = float(np.median(_logit(d.ravel()[ok]) - _logit(r.ravel()[ok])))
        if abs(bias) < 0.1:
            continue                  # a tenth of a logit: rounding, not a bias
        out.append(_per_head(p, "score_bias", f"score_{stride} logits biased by {bias:+.2f}",
                             kind, stride,
                             lambda x, b=bias: _sigmoid(_logit(x) - b).astype(np.float32),
                             {"logit_bias": bias}))
    return out


def _permutations(p: _Pairs) -> list[Cause]:
    out = []
    if any(k == "bbox" for k, _ in p.heads):
        out.append(_all_strides(p, "box_order", "box channels in t,l,b,r order (ltrb expected)",
                                "bbox", lambda x: x[..., [1, 0, 3, 2]]))
    if any(k == "kps" for k, _ in p.heads):
        best = None
        for a in range(5):
            for b in range(a + 1, 5):
                order = list(range(10))
                order[2 * a:2 * a + 2] = [2 * b, 2 * b + 1]
                order[2 * b:2 * b + 2] = [2 * a, 2 * a + 1]
                c = _all_strides(p, "swap_landmarks", f"landmark points {a} and {b} swapped",
                                 "kps", lambda x, o=order: x[..., o])
                c.params = {"pair": [a, b]}
                if best is None or c.gain_db > best.gain_db:
                    best = c
        out.append(best)
    for kind, _ in KINDS:
        if any(k == kind for k, _ in p.heads):
            out.append(_all_strides(p, "anchor_order", f"{kind}: the two anchors of each cell "
                                                        "swapped", kind, _swap_anchors))
    return out


def _swap_anchors(x: np.ndarray) -> np.ndarray:
    """(B, N, C) with N = cells * 2, anchor-minor: swap the two anchors of every cell."""
    b, n = x.shape[:2]
    y = x.reshape(b, n // 2, 2, *x.shape[2:])[:, :, ::-1]
    return np.ascontiguousarray(y).reshape(x.shape)


def _pair_snr(p: _Pairs, i: int, j: int) -> float:
    """Mean whole-head SNR of device output ``i`` against reference image ``j`` (every
    anchor: the background's boxes and landmarks are as image-specific as the faces, and
    an image without faces has no foreground to compare)."""
    d, r = p.dev[i], p.ref[j]
    return float(np.mean([_snr(_get(r, k, s), _get(d, k, s)) for k, s in p.heads
                          if _get(r, k, s).shape == _get(d, k, s).shape]))


def _pairing(p: _Pairs) -> list[Cause]:
    """Device output i belongs to another reference image (shifted, swapped, repeated)."""
    n = len(p.dev)
    if n < 2:
        return []
    snr = np.array([[_pair_snr(p, i, j) for j in range(n)] for i in range(n)])
    best = snr.argmax(axis=1)
    moved = [i for i in range(n) if best[i] != i and snr[i, best[i]] > snr[i, i]]
    if not moved:
        return []
    before = float(np.mean([snr[i, i] for i in moved]))
    after = float(np.mean([snr[i, best[i]] for i in moved]))
    offsets = [int(best[i] - i) for i in moved]
    k = max(set(offsets), key=offsets.count)
    pairs = ", ".join(f"{i}->{int(best[i])}" for i in moved[:6])
    if offsets.count(k) >= max(2, len(moved) - 1) and len(moved) >= n - 2:
        text = f"device outputs shifted by {k:+d} against the datalist (output i is image i{k:+d})"
    elif len(set(best.tolist())) < n:
        text = f"outputs repeated or out of order against the datalist (output->image {pairs})"
    else:
        text = f"outputs swapped against the datalist (output->image {pairs})"
    return [Cause("pairing", text, ["all heads"], before, after,
                  {"moved": {int(i): int(best[i]) for i in moved}})]


def _symptoms(p: _Pairs) -> list[Cause]:
    """Faults without a correction: NaN / Inf, a dead head, clipped values. Their 'after'
    is the match the head would need (the cap), so they rank by how bad the head is."""
    out = []
    for kind, stride in p.heads:
        d = np.concatenate([_get(x, kind, stride).ravel() for x in p.dev])
        r = np.concatenate([_get(x, kind, stride).ravel() for x in p.ref])
        before = _snr(r, d)             # the whole head: NaN and dead heads are not only faces
        name = f"{kind}_{stride}"
        bad = int((~np.isfinite(d)).sum())
        if bad:
            out.append(Cause("nonfinite", f"{name} has {bad} NaN / Inf values", [name],
                             before, SNR_CAP, {"count": bad}))
            continue
        if np.std(d) < 1e-6 * (np.std(r) + 1e-12) and np.std(r) > 0:
            out.append(Cause("dead_head", f"{name} is constant ({float(d[0]):.4g}): a dead head",
                             [name], before, SNR_CAP, {"value": float(d[0])}))
            continue
        top = float(np.abs(d).max())
        hits = int((np.abs(d) >= top * (1 - 1e-6)).sum())
        at_top = hits / d.size
        if top > 0 and hits >= 3 and at_top > 0.001 and float(np.abs(r).max()) > top * 1.05:
            out.append(Cause("clipped", f"{name} clipped at +-{top:.4g} ({100 * at_top:.2f}% "
                                        "of values; fp16 overflow / saturation)", [name],
                             before, SNR_CAP, {"limit": top, "share": at_top}))
    return out


HYPOTHESES = (_affine, _per_channel, _score_hypotheses, _permutations, _pairing, _symptoms)


def match_db(reference: Sequence[Heads], device: Sequence[Heads], fg_floor: float) -> float:
    """Mean foreground SNR over every head the two sides share (the match a preprocessing
    hypothesis improves)."""
    p = _Pairs(reference, device, fg_floor)
    return float(np.mean([p.snr(k, s) for k, s in p.heads]))


def diagnose(reference: Sequence[Heads], device: Sequence[Heads], *, fg_floor: float,
             min_gain_db: float, extra: Sequence[Cause] = ()) -> Diagnosis:
    """Rank every hypothesis for device heads against reference heads of the same images
    (same order), plus ``extra`` causes tested elsewhere (preprocessing variants); a cause
    is one whose gain reaches ``min_gain_db``."""
    p = _Pairs(reference, device, fg_floor)
    found: list[Cause] = list(extra)
    for hypotheses in HYPOTHESES:
        found += [c for c in hypotheses(p) if c is not None]
    ranked = sorted(found, key=lambda c: -c.gain_db)
    causes = [c for c in ranked if c.gain_db >= min_gain_db]
    return Diagnosis(causes, ranked, min_gain_db, len(reference))


def raw_dtype_cause(arrays: Sequence[np.ndarray]) -> Cause | None:
    """int8 / uint8 outputs in a device file: the outputs were never dequantized."""
    ints = [a for a in arrays if np.issubdtype(a.dtype, np.integer)]
    if not ints:
        return None
    return Cause("not_dequantized", f"{len(ints)} of {len(arrays)} outputs are "
                                    f"{ints[0].dtype} (int8 outputs never dequantized: "
                                    "multiply by the output scale, subtract the zero point)",
                 [], -SNR_CAP, SNR_CAP, {"dtype": str(ints[0].dtype)})
