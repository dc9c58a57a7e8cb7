"""Comparators that do not average a fault away: detections in size buckets, and heads on
foreground anchors apart from the background.

Size buckets. A fault in one stride (its boxes 15% too large) touches only the faces that
stride detects; pooled over every face it disappears in the mean. Each matched reference
face is put in the bucket of the stride whose anchors fit its size at the network input
(``sqrt(w * h) * scale``, ``scale`` the image's letterbox scale; SCRFD's anchors are 16 /
32 px at stride 8, 64 / 128 at 16, 256 / 512 at 32, so the bucket edges are the geometric
midpoints 45.25 and 181 px). Per bucket: recall at the operating point, mean IoU of the
matched pairs, the box scale ratio as the mean and the spread (standard deviation) of
``log(w_dev / w_ref)`` and ``log(h_dev / h_ref)``, and the landmark error normalised by
face size (NME: mean distance of the five points over the reference box diagonal, in %).

Foreground / background anchors. Head statistics over every anchor weigh the background,
whose box and landmark offsets are never decoded, like faces. Foreground anchors are those
whose reference score is at least ``fg_floor``; the box and landmark heads are compared on
their rows only (cosine, SNR), and the background's score distribution separately: the
99th percentile of the device's background scores against the reference's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from scrfd_ref.conformance.compare import cosine_snr, match_detections
from scrfd_ref.core.detections import Detections
from scrfd_ref.core.heads import Heads

#: (name, lower edge, upper edge) of the face size at the network input, px
BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("s8", 0.0, math.sqrt(32 * 64)), ("s16", math.sqrt(32 * 64), math.sqrt(128 * 256)),
    ("s32", math.sqrt(128 * 256), math.inf))


def bucket_index(sizes: np.ndarray) -> np.ndarray:
    """``(n,)`` bucket index (0, 1, 2) of face sizes at the network input (px)."""
    edges = np.array([b[2] for b in BUCKETS[:-1]])
    return np.searchsorted(edges, np.asarray(sizes, np.float64), side="right")


def face_sizes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """``(n,)`` ``sqrt(w * h) * scale`` of ``(n, 4)`` x1 y1 x2 y2 boxes (0 for inverted)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = np.clip(b[:, 2] - b[:, 0], 0, None)
    h = np.clip(b[:, 3] - b[:, 1], 0, None)
    return np.sqrt(w * h) * scale


@dataclass
class BucketStats:
    """What one size bucket collected over the images."""

    name: str
    ref_faces: int = 0          # reference faces >= floor + margin
    found: int = 0              # of them, matched by the device
    ious: list[float] = field(default_factory=list)
    log_w: list[float] = field(default_factory=list)
    log_h: list[float] = field(default_factory=list)
    nme: list[float] = field(default_factory=list)

    def measured(self) -> dict[str, float]:
        """The metrics the bucket gates read (absent when there is nothing to measure)."""
        out: dict[str, float] = {}
        if self.ref_faces:
            out["bucket_recall"] = self.found / self.ref_faces
        if self.ious:
            out["bucket_mean_iou"] = float(np.mean(self.ious))
            out["bucket_log_scale_mean"] = max(abs(float(np.mean(self.log_w))),
                                               abs(float(np.mean(self.log_h))))
            out["bucket_log_scale_std"] = max(float(np.std(self.log_w)),
                                              float(np.std(self.log_h)))
        if self.nme:
            out["bucket_nme_pct"] = float(np.mean(self.nme))
        return out

    def scale_bias_interval(self, confidence: float) -> tuple[float, float] | None:
        """The ``confidence`` interval of the scale-bias metric (``max(|mean log w ratio|,
        |mean log h ratio|)``): a Student-t interval of each mean over the matched faces,
        folded to absolute values, the larger of the two sides. A bias measured on a
        handful of faces then decides only when it is far outside the noise (one face: the
        interval is unbounded). None when nothing is matched."""
        if not self.ious:
            return None
        from scipy import stats

        n = len(self.log_w)
        q = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) if n > 1 else math.inf
        ends = []
        for values in (self.log_w, self.log_h):
            m = float(np.mean(values))
            half = q * float(np.std(values, ddof=1)) / math.sqrt(n) if n > 1 else math.inf
            lo, hi = m - half, m + half
            ends.append((0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi)),
                         max(abs(lo), abs(hi))))
        return max(e[0] for e in ends), max(e[1] for e in ends)

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts and metrics (signed mean scale ratios included)."""
        d: dict[str, Any] = {"bucket": self.name, "reference_faces": self.ref_faces,
                             "found": self.found, "matched": len(self.ious),
                             **self.measured()}
        if self.ious:
            d["mean_scale_w"] = float(np.exp(np.mean(self.log_w)))
            d["mean_scale_h"] = float(np.exp(np.mean(self.log_h)))
        return d


def compare_buckets(pairs: Sequence[tuple[Detections, Detections, float]], *,
                    iou_match: float = 0.5, floor: float = 0.0,
                    margin: float = 0.0) -> list[BucketStats]:
    """Per-bucket statistics over images.

    Args:
        pairs: ``(reference, device, scale)`` per image; ``scale`` converts original
            pixels to network-input pixels.
        iou_match, floor, margin: as in :func:`~scrfd_ref.conformance.compare.compare_detections`.
    """
    stats = [BucketStats(name) for name, _, _ in BUCKETS]
    for ref, dev, scale in pairs:
        r_idx, d_idx, ious = match_detections(ref, dev, iou_match=iou_match, floor=floor,
                                              margin=margin)
        strict = np.flatnonzero(ref.scores >= floor + margin)
        buckets = bucket_index(face_sizes(ref.boxes, scale))
        matched = set(r_idx.tolist())
        for i in strict:
            stats[buckets[i]].ref_faces += 1
            stats[buckets[i]].found += int(i in matched)
        if not r_idx.size:
            continue
        rb = ref.boxes[r_idx].astype(np.float64)
        db = dev.boxes[d_idx].astype(np.float64)
        tiny = 1e-3
        side = lambda b, i: np.maximum(b[:, i + 2] - b[:, i], tiny)  # noqa: E731
        log_w = np.log(side(db, 0) / side(rb, 0))
        log_h = np.log(side(db, 1) / side(rb, 1))
        nme = None
        if ref.landmarks is not None and dev.landmarks is not None:
            diag = np.maximum(np.hypot(rb[:, 2] - rb[:, 0], rb[:, 3] - rb[:, 1]), tiny)
            dist = np.linalg.norm(ref.landmarks[r_idx].astype(np.float64)
                                  - dev.landmarks[d_idx].astype(np.float64), axis=-1)
            nme = 100.0 * dist.mean(axis=1) / diag
        for k, i in enumerate(r_idx):
            s = stats[buckets[i]]
            s.ious.append(float(ious[k]))
            s.log_w.append(float(log_w[k]))
            s.log_h.append(float(log_h[k]))
            if nme is not None:
                s.nme.append(float(nme[k]))
    return stats


@dataclass
class AnchorStats:
    """Foreground statistics of one head (``bbox_32``) and the background of its stride."""

    name: str
    fg_anchors: int = 0
    fg_cosine: float | None = None
    fg_snr_db: float | None = None
    bg_ref_p99: float | None = None
    bg_dev_p99: float | None = None

    def measured(self) -> dict[str, float]:
        """The metrics the anchor gates read (absent when there is nothing to measure)."""
        out: dict[str, float] = {}
        if self.fg_cosine is not None:
            out["fg_cosine"] = self.fg_cosine
            out["fg_snr_db"] = self.fg_snr_db  # type: ignore[assignment]
        if self.bg_dev_p99 is not None and self.bg_ref_p99 is not None:
            out["bg_score_p99_delta"] = abs(self.bg_dev_p99 - self.bg_ref_p99)
        return out


def compare_anchors(pairs: Sequence[tuple[Heads, Heads]], fg_floor: float) -> list[AnchorStats]:
    """Foreground / background head statistics over images (batch-1 heads of the same
    layout and input size; rows that differ in shape are skipped, the shape gate of the
    all-anchor check reports them)."""
    kinds = [("score", "scores"), ("bbox", "boxes"), ("kps", "kps")]
    fg: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    bg: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for ref, dev in pairs:
        for level, stride in enumerate(ref.strides):
            rs = ref.scores[level][0].reshape(-1)
            if level >= len(dev.scores) or dev.scores[level][0].reshape(-1).shape != rs.shape:
                continue
            mask = rs >= fg_floor
            bg.setdefault(stride, []).append((rs[~mask], dev.scores[level][0].reshape(-1)[~mask]))
            for kind, attr in kinds:
                r_all, d_all = getattr(ref, attr), getattr(dev, attr)
                if r_all is None or d_all is None or d_all[level][0].shape != r_all[level][0].shape:
                    continue
                r = r_all[level][0].reshape(rs.shape[0], -1)[mask]
                d = d_all[level][0].reshape(rs.shape[0], -1)[mask]
                fg.setdefault(f"{kind}_{stride}", []).append((r, d))
    out = []
    for name, chunks in fg.items():
        s = AnchorStats(name)
        r = np.concatenate([c[0].ravel() for c in chunks]) if chunks else np.empty(0)
        d = np.concatenate([c[1].ravel() for c in chunks]) if chunks else np.empty(0)
        s.fg_anchors = int(sum(c[0].shape[0] for c in chunks))
        if s.fg_anchors:
            s.fg_cosine, s.fg_snr_db = cosine_snr(r, d)
        if name.startswith("score_"):
            back = bg.get(int(name.split("_")[1]), [])
            rb = np.concatenate([c[0] for c in back]) if back else np.empty(0)
            db = np.concatenate([c[1] for c in back]) if back else np.empty(0)
            if rb.size:
                s.bg_ref_p99 = float(np.percentile(rb, 99))
                s.bg_dev_p99 = float(np.percentile(np.nan_to_num(db, nan=1.0), 99))
        out.append(s)
    return out
