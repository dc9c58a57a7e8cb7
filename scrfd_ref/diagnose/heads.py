"""Name the likely cause of a failing device from its raw head outputs.

Each hypothesis is a correction: "if the device had done X, undoing X makes it match the
reference". :func:`diagnose` applies every correction to the device's heads (batch-1
:class:`~scrfd_ref.core.heads.Heads` of the same images as the reference's), measures the
match before and after, and ranks the hypotheses by the gain. The match of one head is
its SNR (dB, capped at :data:`SNR_CAP`) against the reference on the foreground anchors
(reference score >= the gates' ``fg_score_floor``; the pairing hypotheses use every
anchor); a hypothesis touching several heads scores the mean gain over them.

Like for like: every hypothesis is scored on the anchors of the "before" figure, the
foreground of the reference the device is judged against (a preprocessing hypothesis,
whose reference is re-run with another preprocessing, keeps the recorded profile's
foreground: ``mask_from``). A head with no foreground anchor is not measured, on either
side of the comparison: it never counts as a match. A hypothesis over several heads
measures only the heads with at least ``min_anchors`` foreground anchors (the gates'
``diagnose_min_fg_anchors``); a correction fitted on one head states how many anchors
it was fitted on, and one fitted on fewer than ``min_anchors`` is never a cause.

A cause is a hypothesis whose gain reaches the gates' ``diagnose_min_gain_db`` (per
dtype, data/gates.toml); otherwise the result says "no known cause matches" and lists
the closest hypotheses, those that gain at all (or "nothing brings the device closer").
When the caller judged the device first (:class:`Verdict`) and it failed no gate (pass,
or inconclusive: the images cannot decide some), nothing is named a cause: what would
have been is listed as an observation (a systematic deviation inside the gates). The precision hypothesis (which arithmetic the device's
noise matches, :mod:`scrfd_ref.diagnose.precision`) comes in as
``precision`` and is named after the corrections.

Hypotheses on the outputs (this module): a head scaled or offset (least-squares fit
device = a * reference + b on the foreground anchors), one channel of a box or landmark
head scaled or offset (the same fit per channel), score logits biased, sigmoid applied
twice or not at all, box channels in tlbr order, a landmark pair swapped, the two anchors
of a cell swapped, a dead (constant) head, values clipped at a constant (fp16 saturation),
NaN / Inf; on the pairing: outputs shifted, swapped or repeated against the datalist.
Preprocessing hypotheses need the model (:mod:`scrfd_ref.diagnose.run`) and
come in as ``extra`` causes. The result types and the raw int8 outputs named from the
files themselves: :mod:`scrfd_ref.diagnose.result`.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from scrfd_ref.conformance.compare import cosine_snr
from scrfd_ref.core.heads import Heads
from scrfd_ref.diagnose.result import (  # noqa: F401 - the results, re-exported
    SNR_CAP,
    Cause,
    Diagnosis,
    Verdict,
    raw_dtype_cause,
)

KINDS = (("score", "scores"), ("bbox", "boxes"), ("kps", "kps"))


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


def _snr(ref: np.ndarray, dev: np.ndarray) -> float | None:
    """SNR as the head checks compute it, capped at :data:`SNR_CAP`; a device with NaN /
    Inf is as far off as possible (-cap); None when there is nothing to compare (an empty
    comparison is not measured, never a match)."""
    if not ref.size:
        return None
    if not np.isfinite(dev).all():
        return -SNR_CAP
    return float(min(SNR_CAP, cosine_snr(ref, dev)[1]))


def _mean(values: Sequence[float | None]) -> float | None:
    """Mean of the measured values (None when none was)."""
    got = [v for v in values if v is not None]
    return float(np.mean(got)) if got else None


class _Pairs:
    """Reference and device heads of the same images, with the foreground masks.

    ``mask_from`` (heads of the same images) gives the foreground instead of ``ref``: a
    preprocessing hypothesis compares the device with a re-run reference on the recorded
    reference's anchors. A head is measured by a hypothesis over several heads when its
    stride has at least ``min_anchors`` foreground anchors (and at least one).
    """

    def __init__(self, ref: Sequence[Heads], dev: Sequence[Heads], floor: float,
                 min_anchors: int = 0, mask_from: Sequence[Heads] | None = None) -> None:
        self.ref, self.dev, self.floor = list(ref), list(dev), floor
        self.min_anchors = max(1, int(min_anchors))
        h = self.ref[0]
        self.heads = [(k, s) for k, attr in KINDS for s in h.strides
                      if getattr(h, attr) is not None and all(
                          getattr(d, attr) is not None for d in self.dev)]
        self.masks = [[r.scores[i][0] >= floor for i in range(len(r.strides))]
                      for r in (mask_from if mask_from is not None else self.ref)]
        self.counts = {s: int(sum(m[i].sum() for m in self.masks))
                       for i, s in enumerate(h.strides)}

    def measured(self, kind: str | None = None) -> list[tuple[str, int]]:
        """The heads (of ``kind``) whose stride has enough foreground anchors."""
        return [(k, s) for k, s in self.heads if (kind is None or k == kind)
                and self.counts[s] >= self.min_anchors]

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
            ref: Sequence[Heads] | None = None) -> float | None:
        """Foreground SNR of one head (None: no foreground anchor to compare)."""
        return _snr(*self.fg(kind, stride, dev, ref))

    def name(self, kind: str, stride: int) -> str:
        return f"{kind}_{stride}"


Correction = Callable[[np.ndarray], np.ndarray]


def _per_head(p: _Pairs, name: str, text: str, kind: str, stride: int, fix: Correction,
              params: dict[str, Any] | None = None) -> Cause | None:
    """A correction fitted on one head, scored on that head's foreground (None: the head
    has no foreground anchor)."""
    before = p.snr(kind, stride)
    if before is None:
        return None
    fixed = [_with(d, kind, stride, fix(_get(d, kind, stride))) for d in p.dev]
    after = p.snr(kind, stride, fixed)
    return Cause(name, text, [p.name(kind, stride)], before,
                 after if after is not None else before, params or {},
                 anchors=p.counts[stride], fitted=True)


def _all_strides(p: _Pairs, name: str, text: str, kind: str, fix: Correction) -> Cause | None:
    """A correction of every stride of one kind, scored on the measured heads (None when
    no head of the kind has enough foreground anchors)."""
    strides = [s for _, s in p.measured(kind)]
    if not strides:
        return None
    before = _mean([p.snr(kind, s) for s in strides])
    fixed = list(p.dev)
    for s in strides:
        fixed = [_with(d, kind, s, fix(_get(d, kind, s))) for d in fixed]
    after = _mean([p.snr(kind, s, fixed) for s in strides])
    if before is None or after is None:
        return None
    return Cause(name, text, [p.name(kind, s) for s in strides], before, after,
                 anchors=sum(p.counts[s] for s in strides))


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
                if c is None:
                    continue
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
    got = _mean([_snr(_get(r, k, s), _get(d, k, s)) for k, s in p.heads
                 if _get(r, k, s).shape == _get(d, k, s).shape])
    return -SNR_CAP if got is None else got


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
        if before is None:
            continue
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


def head_snrs(reference: Sequence[Heads], device: Sequence[Heads], fg_floor: float, *,
              min_anchors: int = 0, mask_from: Sequence[Heads] | None = None,
              ) -> dict[str, float]:
    """Foreground SNR (dB, capped) of every head the two sides share whose stride has at
    least ``min_anchors`` foreground anchors (of ``mask_from``, default ``reference``):
    ``{"bbox_16": 41.2, ...}``; heads with nothing to compare are left out."""
    p = _Pairs(reference, device, fg_floor, min_anchors, mask_from)
    out = {p.name(k, s): p.snr(k, s) for k, s in p.measured()}
    return {k: v for k, v in out.items() if v is not None}


def foreground_anchors(reference: Sequence[Heads], fg_floor: float) -> dict[int, int]:
    """Foreground anchors per stride of ``reference`` over its images."""
    return _Pairs(reference, reference, fg_floor).counts


def diagnose(reference: Sequence[Heads], device: Sequence[Heads], *, fg_floor: float,
             min_gain_db: float, extra: Sequence[Cause] = (), min_anchors: int = 0,
             verdict: Verdict | None = None, precision: Any = None) -> Diagnosis:
    """Rank every hypothesis for device heads against reference heads of the same images
    (same order), plus ``extra`` causes tested elsewhere (preprocessing variants).

    A cause is a hypothesis that gains ``min_gain_db`` (a fitted one on at least
    ``min_anchors`` foreground anchors), then the precision hypothesis when ``precision``
    (a :class:`~scrfd_ref.diagnose.precision.PrecisionFit`) names another
    arithmetic. With a ``verdict`` that failed no gate, nothing is a cause: those
    hypotheses become observations.
    """
    p = _Pairs(reference, device, fg_floor, min_anchors)
    found: list[Cause] = [c for c in extra if c is not None]
    for hypotheses in HYPOTHESES:
        found += [c for c in hypotheses(p) if c is not None]
    ranked = sorted(found, key=lambda c: -c.gain_db)
    causes = [c for c in ranked if c.counts(min_gain_db, min_anchors)]
    return Diagnosis.judged(causes, [c for c in ranked if c.gain_db > 0], min_gain_db,
                            len(reference), verdict, precision, ranked, min_anchors)
