"""The interleaved perf verdict on simulated rounds: unchanged passes, a slowdown beyond
the threshold fails, one near it is inconclusive with the rounds that would decide, a
drifting machine is inconclusive."""
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


def test_a_drifting_machine_is_inconclusive():
    a, b = _rounds(0.0)
    a[10:] *= 1.3
    b[10:] *= 1.3
    v = judge_rounds(a, b, threshold=0.05)
    assert v.verdict == "inconclusive" and "drifted" in v.reason


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

    v = compare_settings("A", "B", threshold=0.05, rounds=6, run=run)
    assert calls[:4] == ["A", "B", "B", "A"] and v.verdict == "fail"
    assert abs(v.ratio - 1.25) < 1e-9
