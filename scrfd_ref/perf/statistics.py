"""Perf statistics: throughput over the measured window and latency percentiles.

- **Window**: ``wall_s`` runs from the barrier release (the earliest ``t0`` over the
  processes) to the end of the last measured call of any instance.
- **Throughput**: :func:`throughput` = ``batch x measured calls (all instances) / wall_s``
  images per second.
- **Percentiles**: :func:`latency_stats`: mean and p50 / p90 / p95 / p99 of the per-call
  latencies of all instances pooled, with ``numpy.percentile(method="linear")``: linear
  interpolation between the closest ranks (NumPy's default, Hyndman & Fan type 7).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from scrfd_ref.core.errors import InputError

PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)
PERCENTILE_METHOD = ("linear interpolation between closest ranks "
                     "(numpy.percentile method='linear', Hyndman-Fan type 7)")
WINDOW_DEFINITION = ("from the start barrier's release (after warm-up, all instances of all "
                     "processes) to the end of the last measured call")


def latency_stats(latencies_ms: Iterable[float]) -> dict[str, float]:
    """Mean, p50, p90, p95, p99, min and max of per-call latencies (ms).

    Percentiles use ``numpy.percentile(..., method="linear")``: the q-th percentile of n
    sorted values sits at rank ``(n - 1) * q / 100`` and is linearly interpolated between
    the two closest ranks (NumPy's default, Hyndman & Fan type 7).

    Raises:
        InputError: no latencies.
    """
    values = np.asarray(list(latencies_ms), dtype=np.float64)
    if values.size == 0:
        raise InputError("no measured calls: cannot compute latency statistics")
    stats = {"mean": float(values.mean())}
    for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES, method="linear")):
        stats[f"p{q}"] = float(v)
    stats["min"] = float(values.min())
    stats["max"] = float(values.max())
    return stats


def throughput(batch: int, calls: int, wall_s: float) -> float:
    """Images per second: ``batch x calls / wall_s``.

    Raises:
        InputError: ``wall_s`` is not positive.
    """
    if wall_s <= 0:
        raise InputError(f"wall time {wall_s} s is not positive")
    return batch * calls / wall_s
