"""Heads -> scored candidate boxes and landmarks in network-input pixels.

One decode path serves every layout: :func:`scrfd_ref.core.heads.normalize_heads` has
already brought the outputs to per-stride ``(B, N, C)`` float32. Arithmetic follows
insightface's ``distance2bbox`` / ``distance2kps`` in float32 (distances are multiplied
by the stride first, then added to the anchor centre), so results are bit-identical to
the package's; only candidates at or above the score threshold are decoded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scrfd_ref.core.anchors import NUM_ANCHORS, anchor_centers
from scrfd_ref.core.heads import Heads


@dataclass(frozen=True)
class Candidates:
    """Scored candidates of one image, in descending score order (stable).

    Attributes:
        boxes: ``(n, 4)`` float32 x1 y1 x2 y2.
        scores: ``(n,)`` float32.
        kps: ``(n, 5, 2)`` float32 landmarks, or None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    kps: np.ndarray | None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def take(self, index: np.ndarray) -> "Candidates":
        """Candidates at ``index`` (an integer or boolean index array)."""
        return Candidates(self.boxes[index], self.scores[index],
                          None if self.kps is None else self.kps[index])


def distance2bbox(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """``(n, 2)`` centres and ``(n, 4)`` pixel distances (l, t, r, b) -> ``(n, 4)`` boxes."""
    out = np.empty((points.shape[0], 4), dtype=np.float32)
    np.subtract(points[:, 0], distance[:, 0], out=out[:, 0])
    np.subtract(points[:, 1], distance[:, 1], out=out[:, 1])
    np.add(points[:, 0], distance[:, 2], out=out[:, 2])
    np.add(points[:, 1], distance[:, 3], out=out[:, 3])
    return out


def distance2kps(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """``(n, 2)`` centres and ``(n, 2K)`` pixel offsets -> ``(n, K, 2)`` points."""
    n = points.shape[0]
    return (distance.reshape(n, -1, 2) + points[:, None, :]).astype(np.float32, copy=False)


def decode_image(heads: Heads, index: int, score_thr: float, strict: bool = False) -> Candidates:
    """Decode image ``index`` of a batch, keeping candidates with ``score >= score_thr``
    (``score > score_thr`` when ``strict``, as mmdet's ``multiclass_nms``)."""
    thr = np.float32(score_thr)
    w, h = heads.input_size
    boxes, scores, kps = [], [], []
    for level, stride in enumerate(heads.strides):
        sc = heads.scores[level][index]
        pos = np.flatnonzero(sc > thr if strict else sc >= thr)
        if pos.size == 0:
            continue
        centers = anchor_centers(h // stride, w // stride, stride, NUM_ANCHORS)[pos]
        scores.append(sc[pos])
        boxes.append(distance2bbox(centers, heads.boxes[level][index][pos] * np.float32(stride)))
        if heads.kps is not None:
            kps.append(distance2kps(centers, heads.kps[level][index][pos] * np.float32(stride)))
    if not scores:
        return Candidates(np.empty((0, 4), np.float32), np.empty((0,), np.float32),
                          None if heads.kps is None else np.empty((0, 5, 2), np.float32))
    all_scores = np.concatenate(scores)
    order = np.argsort(-all_scores, kind="stable")
    return Candidates(np.concatenate(boxes)[order], all_scores[order],
                      None if heads.kps is None else np.concatenate(kps)[order])


def decode(heads: Heads, score_thr: float, strict: bool = False) -> list[Candidates]:
    """Decode every image of the batch; one :class:`Candidates` per image (``strict``:
    keep ``score > score_thr`` instead of ``>=``)."""
    return [decode_image(heads, b, score_thr, strict) for b in range(heads.batch)]
