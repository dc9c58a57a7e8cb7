"""Prediction sets derived from a ground truth, for evaluation tests and benchmarks."""
from __future__ import annotations

import numpy as np

from scrfd_ref.formats.ground_truth import GroundTruth


def noisy_predictions(gt: GroundTruth, seed: int, decimals: int | None = 3,
                      shuffle: bool = False, fp_rate: float = 6.0) -> dict:
    """Detections derived from the ground truth: misses, jitter, duplicates, false positives."""
    rng = np.random.default_rng(seed)
    out = {}
    for img in gt.images:
        b = img.boxes
        side = np.sqrt(np.maximum(b[:, 2], 1) * np.maximum(b[:, 3], 1))
        det = rng.random(len(b)) < 0.35 + 0.6 / (1 + np.exp(-(side - 12) / 4))
        src = np.concatenate([np.flatnonzero(det), np.flatnonzero(det & (rng.random(len(b)) < .1))])
        d = b[src].copy()
        jit = rng.normal(0, 0.08, (len(src), 4)) * np.repeat(np.maximum(d[:, 2:4], 2), 2, axis=1)
        d[:, :2] += jit[:, :2]
        d[:, 2:4] = np.maximum(0.0, d[:, 2:4] + jit[:, 2:4])
        sc = 0.9 / (1 + np.exp(-(side[src] - 10) / 6)) + rng.normal(0, 0.08, len(src))
        k = rng.poisson(fp_rate)
        w = rng.uniform(4, 80, k)
        fp = np.column_stack([rng.uniform(0, 1000, k), rng.uniform(0, 700, k), w, w * 1.2,
                              rng.uniform(0, 0.7, k) ** 2])
        rows = np.vstack([np.column_stack([d, sc]), fp])
        rows[:, 4] = np.clip(rows[:, 4], 0.001, 1.0)
        if decimals is not None:
            rows[:, 4] = np.round(rows[:, 4], decimals)
        rows = rows[rng.permutation(len(rows))] if shuffle else \
            rows[np.argsort(-rows[:, 4], kind="stable")]
        if rng.random() < 0.03:
            rows = rows[:0]  # an image without detections
        out[img.key] = rows
    return out
