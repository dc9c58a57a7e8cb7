"""Perf verdicts with intervals: a candidate against a baseline, measured interleaved.

Comparing two saved runs taken minutes apart mixes the change under test with whatever
the machine did in between (a shared 2-core host has slow spells of several seconds). The
comparison here is made from **rounds measured in one session, interleaved**: round ``i``
times the baseline and the candidate back to back, in the order ABBA ABBA ... (the order
alternates so that a steady drift of the machine adds to both sides equally), after
``warmup`` rounds that are measured and dropped.

The statistic is the **ratio of the candidate's time to the baseline's** (seconds per image
for throughput, or a latency): ``r_i = t_B,i / t_A,i`` per round, and the estimate is their
geometric mean ``exp(mean(log r_i))`` (a ratio's natural average: a 2x slowdown and a 2x
speedup cancel). Its interval is the percentile interval of the **bootstrap over rounds**
(rounds resampled with replacement, ``resamples`` times, seeded). Against a threshold ``t``
(the slowdown the user accepts, e.g. 0.05):

- **fail**: the whole interval is above ``1 + t`` (the candidate is slower than allowed);
- **pass**: the whole interval is below ``1 + t``;
- **inconclusive**: the interval contains ``1 + t``, or the rounds were unstable (see
  below); it says about how many more rounds would decide (the interval's half-width
  shrinks as ``1 / sqrt(n)``: ``n * (w / d)**2 - n`` more, ``d`` the estimate's distance
  from the limit), never a pass.

**Stability check**: the baseline's own rounds must agree with each other: the ratio of
the mean of the second half of its rounds to the first half's (a drift of the machine) must
stay within ``max_drift``. An unstable session is inconclusive whatever the interval says.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from scrfd_ref.core.errors import InputError

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0
#: the most the baseline may drift between the two halves of a session (0.1: 10 %)
MAX_DRIFT = 0.10


@dataclass(frozen=True)
class PerfVerdict:
    """The verdict of an interleaved comparison.

    Attributes:
        verdict: ``pass``, ``fail`` or ``inconclusive``.
        ratio: candidate time / baseline time (geometric mean over the rounds; > 1 slower).
        interval: its bootstrap interval ``(low, high)``.
        threshold: the slowdown allowed (``0.05``: 5 %).
        rounds: rounds judged (after the warm-up).
        more_rounds: about how many more rounds would decide an inconclusive verdict
            (None when decided, or when no number of rounds would: the estimate is on the
            limit or the session is unstable).
        drift: the baseline's second-half / first-half mean, minus 1.
        reason: one line saying why.
    """

    verdict: str
    ratio: float
    interval: tuple[float, float]
    threshold: float
    rounds: int
    more_rounds: int | None
    drift: float
    reason: str

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = asdict(self)
        d["interval"] = list(self.interval)
        return d


def _check(baseline: Sequence[float], candidate: Sequence[float], warmup: int) -> tuple:
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise InputError(f"baseline and candidate need one time per round each, got "
                         f"{a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all() and (a > 0).all() and (b > 0).all()):
        raise InputError("round times must be finite and positive")
    if warmup < 0 or a.size - warmup < 2:
        raise InputError(f"{a.size} rounds with {warmup} warm-up: at least 2 must be judged")
    return a[warmup:], b[warmup:]


def bootstrap_ratio(log_ratios: np.ndarray, confidence: float, resamples: int,
                    seed: int) -> tuple[float, float]:
    """Percentile interval of ``exp(mean(log r))`` over rounds resampled with replacement."""
    rng = np.random.default_rng(seed)
    n = log_ratios.size
    idx = rng.integers(0, n, size=(resamples, n))
    means = log_ratios[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(math.exp(lo)), float(math.exp(hi))


def judge_rounds(baseline: Sequence[float], candidate: Sequence[float], *,
                 threshold: float, warmup: int = 1, confidence: float = CONFIDENCE,
                 resamples: int = RESAMPLES, seed: int = SEED,
                 max_drift: float = MAX_DRIFT) -> PerfVerdict:
    """The verdict of interleaved rounds (module docstring).

    Args:
        baseline, candidate: seconds per round of each (same length, round order).
        threshold: the slowdown allowed (``0.05``).
        warmup: leading rounds dropped.
        confidence, resamples, seed: the bootstrap.
        max_drift: the largest baseline drift of a stable session.

    Raises:
        InputError: mismatched, non-positive or too few rounds; a bad parameter.
    """
    if not (0 < confidence < 1) or resamples < 100 or threshold < 0:
        raise InputError("confidence in (0, 1), at least 100 resamples and a threshold >= 0")
    a, b = _check(baseline, candidate, warmup)
    logs = np.log(b) - np.log(a)
    ratio = float(math.exp(logs.mean()))
    lo, hi = bootstrap_ratio(logs, confidence, resamples, seed)
    half = a.size // 2
    drift = float(a[half:].mean() / a[:half].mean() - 1.0) if half else 0.0
    limit = 1.0 + threshold
    n = a.size
    if abs(drift) > max_drift:
        return PerfVerdict("inconclusive", ratio, (lo, hi), threshold, n, None, drift,
                           f"the machine drifted: the baseline's second half is "
                           f"{100 * drift:+.1f}% from its first (more than "
                           f"{100 * max_drift:g}%): rerun on a quiet machine")
    if lo > limit:
        return PerfVerdict("fail", ratio, (lo, hi), threshold, n, None, drift,
                           f"slower by {100 * (ratio - 1):.1f}% [{100 * (lo - 1):.1f}, "
                           f"{100 * (hi - 1):.1f}], more than the {100 * threshold:g}% allowed")
    if hi < limit:
        return PerfVerdict("pass", ratio, (lo, hi), threshold, n, None, drift,
                           f"{100 * (ratio - 1):+.1f}% [{100 * (lo - 1):+.1f}, "
                           f"{100 * (hi - 1):+.1f}], inside the {100 * threshold:g}% allowed")
    d = abs(math.log(ratio) - math.log(limit))
    w = (math.log(ratio) - math.log(lo)) if limit <= ratio else (math.log(hi) - math.log(ratio))
    more = None if d == 0 else max(1, math.ceil(n * (w / d) ** 2) - n)
    return PerfVerdict("inconclusive", ratio, (lo, hi), threshold, n, more, drift,
                       f"{100 * (ratio - 1):+.1f}% [{100 * (lo - 1):+.1f}, "
                       f"{100 * (hi - 1):+.1f}] reaches the {100 * threshold:g}% limit"
                       + (f"; about {more} more rounds would decide" if more else ""))


def interleave(measure_a: Callable[[], float], measure_b: Callable[[], float], rounds: int
               ) -> tuple[list[float], list[float]]:
    """``rounds`` rounds of both measurements in the order ABBA ABBA ...: round ``i`` times
    A then B when ``i`` is even, B then A when odd. Returns the two lists of times."""
    a, b = [], []
    for i in range(rounds):
        if i % 2 == 0:
            a.append(measure_a())
            b.append(measure_b())
        else:
            b.append(measure_b())
            a.append(measure_a())
    return a, b




def compare_settings(baseline: object, candidate: object, *, threshold: float,
                     rounds: int = 20, warmup: int = 1,
                     run: Callable[[object], object] | None = None, **judge: object
                     ) -> PerfVerdict:
    """Time two :class:`~scrfd_ref.perf.settings.PerfSettings` interleaved (:func:`interleave`,
    ``rounds`` rounds plus ``warmup``), each round's statistic the seconds per image
    (``1 / throughput``), and judge them (:func:`judge_rounds`; ``judge``: its options)."""
    if run is None:
        from scrfd_ref.perf.runner import run_perf as run
    a, b = interleave(lambda: 1.0 / run(baseline).throughput_ips,
                      lambda: 1.0 / run(candidate).throughput_ips, rounds + warmup)
    return judge_rounds(a, b, threshold=threshold, warmup=warmup, **judge)


__all__ = ["CONFIDENCE", "MAX_DRIFT", "RESAMPLES", "SEED", "PerfVerdict", "bootstrap_ratio",
           "compare_settings",
           "interleave", "judge_rounds"]
