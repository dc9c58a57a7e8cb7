"""Benchmark settings for ``--benchmark-compare`` as a regression gate on a small shared
machine (README, "Performance regression gate").

Every ``benchmark`` of this folder, unless ``--benchmark-disable``:

- measures for at least :data:`MIN_WINDOW_S` seconds (``--benchmark-max-time``, if
  larger, wins): at least :data:`MIN_ROUNDS` rounds of at least :data:`MIN_ROUND_S` each
  (a 20 us call is repeated inside a round, so one scheduler hiccup cannot move a round),
  after :data:`WARMUP_ITERATIONS` warm-up iterations. This shared machine has slow spells
  of seconds that slow some kinds of work by 20-70% and others not at all; a window of
  seconds lets the **min** statistic find the machine's normal speed in most runs. Gate
  on ``min``;
- is timed in plain seconds unless ``--bench-calibrate``, which times it in
  **calibrated seconds** (:class:`CalibratedClock`: its own time x (:data:`REFERENCE_S`
  / the time of :func:`calibration_kernel`, timed beside it every
  :data:`RECALIBRATE_S`)). Measured on the 2-core machine (save + five compares of an
  unchanged tree, the six scrfd-ref benchmarks of ``test_bench_micro.py``), calibration
  made the gate worse, not better: 0-2 of 5 unchanged compares passed at 10-25% against 3
  of 5 in plain seconds with ``min`` (the slow spells do not slow the kernel and the
  benchmarks alike: a cache-resident kernel and an 8 MB streaming pass kept a ratio
  between 2.0 and 5.1 over 20 s);
- can be slowed on purpose, to show that the gate fails: ``--bench-slowdown
  SUBSTRING=FACTOR`` makes every benchmark whose test id contains ``SUBSTRING`` take
  ``FACTOR`` times as long (it busy-waits after each call for ``FACTOR - 1`` times the
  call's own duration).
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np
import pytest

#: what the calibration kernel takes, by definition, in calibrated seconds
REFERENCE_S = 1e-3
MIN_ROUNDS = 15
MIN_WINDOW_S = 4.0
MIN_ROUND_S = 2e-3
WARMUP_ITERATIONS = 20
RECALIBRATE_S = 2e-3
_KERNEL_DATA = np.random.default_rng(0).random(4096, dtype=np.float32)
_KERNEL_BUFFERS = (np.empty_like(_KERNEL_DATA), np.empty_like(_KERNEL_DATA))
_KERNEL_LIST = _KERNEL_DATA[:500].tolist()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("scrfd-ref benchmarks")
    group.addoption("--bench-calibrate", action="store_true",
                    help="time benchmarks in calibrated seconds (units of a calibration "
                         "kernel timed beside them) instead of plain seconds")
    group.addoption("--bench-slowdown", default=None, metavar="SUBSTRING=FACTOR",
                    help="slow every benchmark whose test id contains SUBSTRING by FACTOR "
                         "(busy wait), to check that --benchmark-compare-fail catches it")
    group.addoption("--bench-only", default=None, metavar="NODE_IDS",
                    help="run only these comma-separated test node ids (benchmarks/gate.py "
                         "re-measures the benchmarks that looked slower with it)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--bench-only``: keep the named node ids, deselect the rest; refuse ids that name
    nothing collected."""
    only = config.getoption("--bench-only")
    if not only:
        return
    wanted = {n for n in only.split(",") if n}
    unknown = wanted - {item.nodeid for item in items}
    if unknown:
        raise pytest.UsageError(f"--bench-only: no collected test is {', '.join(sorted(unknown))}")
    config.hook.pytest_deselected(items=[i for i in items if i.nodeid not in wanted])
    items[:] = [i for i in items if i.nodeid in wanted]


def calibration_kernel() -> float:
    """A fixed, cache-resident mix of the work the benchmarks do (numpy sorts and
    elementwise passes in preallocated buffers, a Python loop), about 0.1 ms; returns a
    checksum so nothing is optimised away."""
    a, b = _KERNEL_BUFFERS
    total = 0.0
    for _ in range(4):
        a[...] = _KERNEL_DATA
        a.sort()
        np.multiply(a, np.float32(0.5), out=b)
        for v in _KERNEL_LIST:
            total += v
    return total + float(b[-1])


def _time_kernel() -> float:
    start = time.perf_counter()
    calibration_kernel()
    return time.perf_counter() - start


class CalibratedClock:
    """A clock in calibrated seconds, for pytest-benchmark's ``timer``.

    The machine this runs on switches between speeds for seconds at a time (a shared core:
    the same kernel takes 0.66 or 1.0-1.26 ms), so a unit measured once is stale a moment
    later. The benchmarked function is wrapped (:meth:`wrap`): every
    :data:`RECALIBRATE_S` of its running the calibration kernel is timed beside it (its
    own time is left out of the clock), and the clock advances by the function's time x
    (:data:`REFERENCE_S` / the fastest of the last three kernel timings). Outside the
    function the clock runs at the same calibrated rate.
    """

    def __init__(self) -> None:
        self.recent: deque[float] = deque([_time_kernel() for _ in range(3)], maxlen=3)
        self.scale = REFERENCE_S / float(np.median(self.recent))
        self._value = 0.0
        self._since = time.perf_counter()
        self._calibrated = self._since

    def __call__(self) -> float:
        return self._value + (time.perf_counter() - self._since) * self.scale

    def wrap(self, fn):
        """``fn`` with its time on this clock; every :data:`RECALIBRATE_S` the kernel is
        timed after a call, and that call's time is scaled by the mean of the kernel times
        before and after it (a speed switch during a long call is then half seen)."""
        def run(*args, **kwargs):
            start = time.perf_counter()
            self._value += (start - self._since) * self.scale
            result = fn(*args, **kwargs)
            end = time.perf_counter()
            if end - self._calibrated > RECALIBRATE_S:
                before = self.recent[-1]
                self.recent.append(_time_kernel())
                self._calibrated = time.perf_counter()
                self._value += (end - start) * REFERENCE_S / (0.5 * (before + self.recent[-1]))
                # calibrated seconds per second from now on: the median of the last three
                self.scale = REFERENCE_S / sorted(self.recent)[1]
            else:
                self._value += (end - start) * self.scale
            self._since = time.perf_counter()
            return result
        return run


def _slowdown(spec: str | None, nodeid: str) -> float:
    if not spec:
        return 1.0
    pattern, _, factor = spec.rpartition("=")
    try:
        value = float(factor)
    except ValueError:
        raise pytest.UsageError(f"--bench-slowdown {spec!r}: expected SUBSTRING=FACTOR, e.g. "
                                "decode_scrfd_ref=1.2") from None
    if not pattern or value < 1.0:
        raise pytest.UsageError(f"--bench-slowdown {spec!r}: expected SUBSTRING=FACTOR with "
                                "FACTOR >= 1")
    return value if pattern in nodeid else 1.0


def _slowed(fn, factor: float):
    def run(*args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        end = start + factor * (time.perf_counter() - start)
        while time.perf_counter() < end:
            pass
        return result
    return run


def _wrap_target(fixture, wrap) -> None:
    """Apply ``wrap`` to whatever ``fixture`` benchmarks (pytest-benchmark insists on its
    own fixture class, so its two entry points are wrapped in place)."""
    raw, raw_pedantic = fixture._raw, fixture._raw_pedantic
    fixture._raw = lambda fn, *a, **k: raw(wrap(fn), *a, **k)
    fixture._raw_pedantic = lambda target, *a, **k: raw_pedantic(wrap(target), *a, **k)


@pytest.fixture
def benchmark(benchmark, request):
    """pytest-benchmark's fixture with the settings of this module."""
    if benchmark.disabled:
        yield benchmark
        return
    benchmark._min_rounds = max(benchmark._min_rounds, MIN_ROUNDS)
    benchmark._min_time = max(benchmark._min_time, MIN_ROUND_S)
    benchmark._warmup = max(benchmark._warmup or 0, WARMUP_ITERATIONS)
    benchmark._max_time = max(benchmark._max_time, MIN_WINDOW_S)
    clock = CalibratedClock() if request.config.getoption("--bench-calibrate") else None
    if clock is not None:
        benchmark._timer = clock
        _wrap_target(benchmark, clock.wrap)       # innermost: the clock sees the slowdown
    factor = _slowdown(request.config.getoption("--bench-slowdown"), request.node.nodeid)
    if factor != 1.0:
        _wrap_target(benchmark, lambda fn: _slowed(fn, factor))
        benchmark.extra_info["slowed_by"] = factor
    yield benchmark
    if clock is not None:
        benchmark.extra_info["calibration_kernel_s"] = min(clock.recent)
