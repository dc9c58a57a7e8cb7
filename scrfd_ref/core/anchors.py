"""Anchor centres of SCRFD's strided heads.

Centre of anchor ``a`` at feature cell ``(row, col)`` of stride ``s`` is
``(col * s, row * s)`` (no half-pixel offset); the anchor index is innermost, so the
flat index is ``(row * W + col) * A + a`` (seed-flow.md section 1).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

STRIDES: tuple[int, ...] = (8, 16, 32)
NUM_ANCHORS = 2


@lru_cache(maxsize=128)
def anchor_centers(height: int, width: int, stride: int, num_anchors: int = NUM_ANCHORS
                   ) -> np.ndarray:
    """Return the ``(height * width * num_anchors, 2)`` float32 (x, y) anchor centres.

    Cached by ``(height, width, stride, num_anchors)``; the array is read-only.
    """
    if height <= 0 or width <= 0 or stride <= 0 or num_anchors <= 0:
        raise ValueError(f"bad anchor grid {height}x{width} stride {stride} x{num_anchors}")
    cols = np.arange(width, dtype=np.float32) * np.float32(stride)
    rows = np.arange(height, dtype=np.float32) * np.float32(stride)
    grid = np.empty((height, width, num_anchors, 2), dtype=np.float32)
    grid[..., 0] = cols[None, :, None]
    grid[..., 1] = rows[:, None, None]
    grid = grid.reshape(-1, 2)
    grid.flags.writeable = False
    return grid


def feature_size(input_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Feature map ``(height, width)`` of a stride for an ``input_size=(W, H)`` network input."""
    w, h = input_size
    return h // stride, w // stride
