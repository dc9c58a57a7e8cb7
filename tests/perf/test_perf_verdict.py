"""The interleaved perf verdict on simulated rounds: unchanged passes, a slowdown beyond
the threshold fails, one near it is inconclusive with the rounds that would decide, a
effect that moves during the session is inconclusive, a machine slowing down as a whole is
cancelled by the interleaving."""
from __future__ import annotations

import numpy as np
import pytest

from scrfd_ref.core.errors import InputError
from scrfd_ref.perf.verdict import interleave, judge_rounds


def _rounds(slowdown: float, n: int = 20, noise: float = 0.02, seed: int = 0):
    rng = np.random.default_rng(seed)
    machine = 0.1 * np.exp(rng.normal(0, noise, n))          # shared by both of a round
    a = machine * np.exp(rng.normal(0, noise / 2, n))
    b = machine * (1 + slowdown) * np.exp(rng.normal(0, noise / 2, n))
    return a, b


def test_unchanged_passes_and_ten_percent_fails():
    assert judge_rounds(*_rounds(0.0), threshold=0.05).verdict == "pass"
    v = judge_rounds(*_rounds(0.10), threshold=0.05)
    assert v.verdict == "fail" and v.interval[0] > 1.05


def test_near_the_threshold_is_inconclusive_with_rounds_to_decide():
    a = np.full(8, 0.1)
    b = a * 1.04 * np.exp(np.random.default_rng(1).normal(0, 0.02, 8))
    v = judge_rounds(a, b, threshold=0.05)
    assert v.verdict == "inconclusive" and v.more_rounds and "more rounds" in v.reason


def test_an_effect_that_moves_is_inconclusive():
    a, b = _rounds(0.0)
    b[10:] *= 1.3           # the candidate slow in the second half only
    v = judge_rounds(a, b, threshold=0.05)
    assert v.verdict == "inconclusive" and "the effect moved" in v.reason
    assert v.ratio_drift > 0.2


def test_a_machine_slowing_down_as_a_whole_is_cancelled_by_the_interleaving():
    a, b = _rounds(0.0)
    a[10:] *= 1.3
    b[10:] *= 1.3
    v = judge_rounds(a, b, threshold=0.05)
    assert v.verdict == "pass" and v.drift > 0.2 and abs(v.ratio_drift) < 0.05


def test_interleave_alternates_the_order():
    order = []
    interleave(lambda: order.append("a") or 1.0, lambda: order.append("b") or 1.0, 4)
    assert "".join(order) == "abbaabba"


@pytest.mark.parametrize("a, b", [([1.0], [1.0]), ([1.0, 2.0], [1.0]), ([1.0, -1.0], [1, 1])])
def test_bad_rounds_are_refused(a, b):
    with pytest.raises(InputError):
        judge_rounds(a, b, threshold=0.05, warmup=0)


def test_compare_settings_interleaves_two_runs():
    from types import SimpleNamespace

    from scrfd_ref.perf.verdict import compare_settings

    calls = []

    def run(settings):
        calls.append(settings)
        return SimpleNamespace(throughput_ips=100.0 if settings == "A" else 80.0)

    c = compare_settings("A", "B", threshold=0.05, rounds=6, run=run, statistic="throughput")
    v = c.verdict
    assert calls[:4] == ["A", "B", "B", "A"] and v.verdict == "fail"
    assert abs(v.ratio - 1.25) < 1e-9
    assert c.looks == [6] and len(c.baseline) == 7 and c.statistic.startswith("s/image")


def test_sequential_adds_rounds_while_undecided_and_keeps_the_abba_order():
    from scrfd_ref.perf.verdict import compare_sequential

    rng = np.random.default_rng(1)
    order = []

    def side(name, factor):
        def measure():
            order.append(name)
            return factor * (1 + 0.03 * rng.standard_normal())
        return measure

    c = compare_sequential(side("a", 1.0), side("b", 1.03), threshold=0.03, rounds=12)
    assert c.verdict.verdict == "inconclusive" and c.looks[0] == 6 and c.looks[-1] == 12
    assert len(c.baseline) == len(c.candidate) == 13 and c.verdict.rounds == 12
    rounds = ["".join(order[2 * i:2 * i + 2]) for i in range(13)]
    assert rounds == ["ab" if i % 2 == 0 else "ba" for i in range(13)]
    # replayable: the saved round times give the same verdict
    again = judge_rounds(c.baseline, c.candidate, threshold=0.03, warmup=c.warmup)
    assert again == c.verdict


def test_sequential_stops_at_the_first_look_when_decided():
    from scrfd_ref.perf.verdict import compare_sequential

    c = compare_sequential(lambda: 1.0, lambda: 1.5, threshold=0.03, rounds=20)
    assert c.verdict.verdict == "fail" and c.looks == [6]


def test_sequential_refuses_too_few_rounds():
    from scrfd_ref.perf.verdict import compare_sequential

    with pytest.raises(InputError):
        compare_sequential(lambda: 1.0, lambda: 1.0, threshold=0.03, rounds=4)
