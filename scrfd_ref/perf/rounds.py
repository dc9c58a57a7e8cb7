"""Interleaved rounds: two measurements taken in the order ABBA ABBA ..., so that a steady
drift of the machine adds to both alike. Used by the A/B verdict
(:mod:`scrfd_ref.perf.verdict`), the harness-overhead check
(:func:`scrfd_ref.perf.runner.compare_with_bare`) and ``benchmarks/gate.py``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")


def interleave(measure_a: Callable[[], T], measure_b: Callable[[], U], rounds: int,
               start: int = 0, on_round: Callable[[], None] | None = None
               ) -> tuple[list[T], list[U]]:
    """``rounds`` rounds of both measurements in the order ABBA ABBA ...: round ``i`` times
    A then B when ``i`` is even, B then A when odd (``i`` counted from ``start``, so that a
    session extended by more rounds keeps the order); ``on_round()`` after each round (a
    progress bar). Returns the two lists of times."""
    a, b = [], []
    for i in range(start, start + rounds):
        if i % 2 == 0:
            a.append(measure_a())
            b.append(measure_b())
        else:
            b.append(measure_b())
            a.append(measure_a())
        if on_round is not None:
            on_round()
    return a, b


__all__ = ["interleave"]
