"""Perf verdicts with intervals: a candidate against a baseline, measured interleaved.

Comparing two saved runs taken minutes apart mixes the change under test with whatever
the machine did in between (a shared 2-core host has slow spells of several seconds). The
comparison here is made from **rounds measured in one session, interleaved**: round ``i``
times the baseline and the candidate back to back, in the order ABBA ABBA ... (the order
alternates so that a steady drift of the machine adds to both sides equally), after
``warmup`` rounds that are measured and dropped.

The statistic is the **ratio of the candidate's time to the baseline's** (a latency, or
seconds per image for throughput): ``r_i = t_B,i / t_A,i`` per round, and the estimate is
the **median round**, ``exp(median(log r_i))`` (on the log scale a 2x slowdown and a 2x
speedup are symmetric; the median, not the mean, because a slow spell of the machine that
hits one side of a round makes that round's ratio an outlier: on this 2-core machine the
geometric mean caught a 5% slowdown in 17 of 20 sessions, the median in 19 (replayed on the same
sessions' rounds), with no more false alarms). Its interval is the percentile interval of the
**bootstrap over rounds** (rounds resampled with replacement, ``resamples`` times, seeded,
the median of each resample). Against a threshold ``t``
(the slowdown the user accepts, e.g. 0.05):

- **fail**: the whole interval is above ``1 + t`` (the candidate is slower than allowed);
- **pass**: the whole interval is below ``1 + t``;
- **inconclusive**: the interval contains ``1 + t``, or the rounds were unstable (see
  below); it says about how many more rounds would decide (the interval's half-width
  shrinks as ``1 / sqrt(n)``: ``n * (w / d)**2 - n`` more, ``d`` the estimate's distance
  from the limit), never a pass.

**Stability check**: the effect must hold still during the session: the ratio estimated
on the second half of the rounds and on the first half must agree within ``max_drift``
(their quotient minus 1, ``ratio_drift``). A session whose effect moved (a candidate that
was slow only for a while, a machine whose slow spell hit one side's rounds more) is
inconclusive whatever the interval says. The baseline's own drift (second-half mean over
first-half mean) is reported (``drift``) but not judged: a machine that slows down as a
whole slows both sides of every round, which the interleaving cancels (measured: slow
spells of this 2-core machine moved the baseline by 15-30% within a 20-second session
while the ratio held).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from scrfd_ref.core.errors import InputError
from scrfd_ref.perf.rounds import interleave

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0
#: the slowdown a comparison allows unless told (``perf --compare --threshold``)
DEFAULT_THRESHOLD = 0.03
#: the most the ratio may move between the two halves of a session (0.1: 10 %)
MAX_DRIFT = 0.10


@dataclass(frozen=True)
class PerfVerdict:
    """The verdict of an interleaved comparison.

    Attributes:
        verdict: ``pass``, ``fail`` or ``inconclusive``.
        ratio: candidate time / baseline time (the median round; > 1 slower).
        interval: its bootstrap interval ``(low, high)``.
        threshold: the slowdown allowed (``0.05``: 5 %).
        rounds: rounds judged (after the warm-up).
        more_rounds: about how many more rounds would decide an inconclusive verdict
            (None when decided, or when no number of rounds would: the estimate is on the
            limit or the session is unstable).
        drift: the baseline's second-half / first-half mean, minus 1 (reported).
        ratio_drift: the second half's ratio / the first half's, minus 1 (judged).
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
    ratio_drift: float = 0.0

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
    """Percentile interval of ``exp(median(log r))`` over rounds resampled with
    replacement."""
    rng = np.random.default_rng(seed)
    n = log_ratios.size
    idx = rng.integers(0, n, size=(resamples, n))
    medians = np.median(log_ratios[idx], axis=1)
    lo, hi = np.quantile(medians, [(1 - confidence) / 2, (1 + confidence) / 2])
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
        max_drift: the largest ratio drift of a stable session.

    Raises:
        InputError: mismatched, non-positive or too few rounds; a bad parameter.
    """
    if not (0 < confidence < 1) or resamples < 100 or threshold < 0:
        raise InputError("confidence in (0, 1), at least 100 resamples and a threshold >= 0")
    a, b = _check(baseline, candidate, warmup)
    logs = np.log(b) - np.log(a)
    ratio = float(math.exp(np.median(logs)))
    lo, hi = bootstrap_ratio(logs, confidence, resamples, seed)
    half = a.size // 2
    drift = float(a[half:].mean() / a[:half].mean() - 1.0) if half else 0.0
    moved = (float(math.exp(np.median(logs[half:]) - np.median(logs[:half])) - 1.0)
             if half else 0.0)
    limit = 1.0 + threshold
    n = a.size
    if abs(moved) > max_drift:
        return PerfVerdict("inconclusive", ratio, (lo, hi), threshold, n, None, drift,
                           f"the effect moved: the ratio of the second half of the rounds is "
                           f"{100 * moved:+.1f}% from the first half's (more than "
                           f"{100 * max_drift:g}%): rerun on a quiet machine", moved)
    if lo > limit:
        return PerfVerdict("fail", ratio, (lo, hi), threshold, n, None, drift,
                           f"slower by {100 * (ratio - 1):.1f}% [{100 * (lo - 1):.1f}, "
                           f"{100 * (hi - 1):.1f}], more than the {100 * threshold:g}% allowed",
                           moved)
    if hi < limit:
        return PerfVerdict("pass", ratio, (lo, hi), threshold, n, None, drift,
                           f"{100 * (ratio - 1):+.1f}% [{100 * (lo - 1):+.1f}, "
                           f"{100 * (hi - 1):+.1f}], inside the {100 * threshold:g}% allowed",
                           moved)
    d = abs(math.log(ratio) - math.log(limit))
    w = (math.log(ratio) - math.log(lo)) if limit <= ratio else (math.log(hi) - math.log(ratio))
    more = None if d == 0 else max(1, math.ceil(n * (w / d) ** 2) - n)
    return PerfVerdict("inconclusive", ratio, (lo, hi), threshold, n, more, drift,
                       f"{100 * (ratio - 1):+.1f}% [{100 * (lo - 1):+.1f}, "
                       f"{100 * (hi - 1):+.1f}] reaches the {100 * threshold:g}% limit"
                       + (f"; about {more} more rounds would decide" if more else ""), moved)


#: what one round's number can be (``compare_settings(statistic=)``): its unit
STATISTICS = {"p50": "s/call (median call latency)", "throughput": "s/image (1 / throughput)",
              "latency": "s/call (mean latency)"}
#: rounds judged first by :func:`compare_sequential` before it adds more
MIN_ROUNDS = 6
#: the most rounds a comparison judges unless told (``perf --compare --rounds``)
MAX_ROUNDS = 20


@dataclass(frozen=True)
class PerfComparison:
    """An interleaved comparison: its verdict, the round times (replayable with
    :func:`judge_rounds`) and what it cost.

    Attributes:
        verdict: the :class:`PerfVerdict` of the last look.
        baseline, candidate: seconds per round of each, warm-up rounds included.
        warmup: leading rounds dropped.
        looks: rounds judged at each look (``[6, 10, 20]``: judged after 6, then 10...).
        seconds: wall time of the whole session.
        statistic: what one round's number is (``s/image``: 1 / throughput).
    """

    verdict: PerfVerdict
    baseline: list[float]
    candidate: list[float]
    warmup: int
    looks: list[int]
    seconds: float
    statistic: str

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = asdict(self)
        d["verdict"] = self.verdict.to_dict()
        return d


def compare_sequential(measure_a: Callable[[], float], measure_b: Callable[[], float], *,
                       threshold: float, rounds: int = MAX_ROUNDS,
                       min_rounds: int = MIN_ROUNDS,
                       warmup: int = 1, statistic: str = "s/image",
                       progress: Callable[[PerfVerdict], None] | None = None,
                       on_round: Callable[[], None] | None = None,
                       **judge: object) -> PerfComparison:
    """Measure A (baseline) and B (candidate) interleaved until the verdict is decided or
    ``rounds`` rounds are judged.

    First ``warmup + min_rounds`` rounds; while the verdict is inconclusive, as many more
    rounds as it says would decide (at least 2, so the ABBA order stays balanced; 4 when it
    cannot say), never past ``rounds``. Every look is a :func:`judge_rounds` of all the
    rounds so far (a sequential design: the 95% interval is recomputed at each look, at
    most a handful of looks; the measured false-alarm rate is in the README's power
    table).

    Raises:
        InputError: ``rounds < min_rounds``, ``min_rounds < 2``.
    """
    if min_rounds < 2 or rounds < min_rounds:
        raise InputError(f"rounds {rounds} and min_rounds {min_rounds}: need 2 <= min_rounds "
                         f"<= rounds")
    t = time.perf_counter()
    a, b = interleave(measure_a, measure_b, warmup + min_rounds, on_round=on_round)
    looks = [min_rounds]
    v = judge_rounds(a, b, threshold=threshold, warmup=warmup, **judge)
    while v.verdict == "inconclusive" and v.rounds < rounds:
        if progress is not None:
            progress(v)
        add = min(rounds - v.rounds, max(2, v.more_rounds or 4))
        a2, b2 = interleave(measure_a, measure_b, add, start=len(a), on_round=on_round)
        a += a2
        b += b2
        v = judge_rounds(a, b, threshold=threshold, warmup=warmup, **judge)
        looks.append(v.rounds)
    return PerfComparison(v, a, b, warmup, looks, time.perf_counter() - t, statistic)


def compare_settings(baseline: object, candidate: object, *, threshold: float,
                     rounds: int = MAX_ROUNDS, min_rounds: int = MIN_ROUNDS, warmup: int = 1,
                     statistic: str = "p50",
                     run: Callable[[object], object] | None = None,
                     progress: Callable[[PerfVerdict], None] | None = None,
                     on_round: Callable[[], None] | None = None, **judge: object
                     ) -> PerfComparison:
    """Time two :class:`~scrfd_ref.perf.settings.PerfSettings` interleaved
    (:func:`compare_sequential`), one :func:`~scrfd_ref.perf.runner.run_perf` of each per
    round; a round's number is the median call latency in seconds (``statistic="p50"``,
    the default: a slow spell of the machine that hits a few calls of a round moves it
    least), the seconds per image (``"throughput"``: ``1 / throughput``, the one to use
    with several instances or processes) or the mean call latency (``"latency"``).

    Raises:
        InputError: an unknown statistic, bad rounds (and what ``run`` raises).
    """
    if run is None:
        from scrfd_ref.perf.runner import run_perf as run
    if statistic not in STATISTICS:
        raise InputError(f"statistic {statistic!r}: one of {', '.join(STATISTICS)}")

    def one(s: object) -> float:
        r = run(s)
        if statistic == "throughput":
            return 1.0 / r.throughput_ips
        return r.latency_ms["mean" if statistic == "latency" else "p50"] / 1e3
    unit = STATISTICS[statistic]
    return compare_sequential(lambda: one(baseline), lambda: one(candidate),
                              threshold=threshold, rounds=rounds, min_rounds=min_rounds,
                              warmup=warmup, statistic=unit, progress=progress,
                              on_round=on_round, **judge)


__all__ = ["CONFIDENCE", "DEFAULT_THRESHOLD", "MAX_DRIFT", "MAX_ROUNDS", "MIN_ROUNDS", "RESAMPLES", "SEED", "STATISTICS", "PerfComparison",
           "PerfVerdict", "bootstrap_ratio", "compare_sequential", "compare_settings",
           "interleave", "judge_rounds"]
