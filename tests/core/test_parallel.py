"""The threading helpers of the end-to-end runs: order, exclusivity of the pooled sessions,
errors, bounded look-ahead, and the stage clock's arithmetic."""
from __future__ import annotations

import threading
import time

import pytest

from scrfd_ref.core.parallel import (
    StageClock,
    format_split,
    map_with_pool,
    prefetch,
    usable_cores,
)


def test_map_with_pool_keeps_order_and_uses_each_resource_alone():
    busy: set[str] = set()
    lock = threading.Lock()
    used: list[str] = []

    def fn(resource: str, item: int) -> int:
        with lock:
            assert resource not in busy, "a resource was shared by two calls at once"
            busy.add(resource)
            used.append(resource)
        time.sleep(0.001 * (item % 3))
        with lock:
            busy.discard(resource)
        return item * item

    out = list(map_with_pool(fn, range(40), ["a", "b", "c"]))
    assert out == [i * i for i in range(40)]
    assert set(used) == {"a", "b", "c"}


def test_map_with_pool_with_one_resource_runs_on_the_calling_thread():
    threads = list(map_with_pool(lambda r, i: threading.get_ident(), range(3), ["only"]))
    assert set(threads) == {threading.get_ident()}


def test_map_with_pool_raises_the_error_of_its_item():
    def fn(resource, item):
        if item == 5:
            raise ValueError("item 5 is bad")
        return item

    got = []
    with pytest.raises(ValueError, match="item 5 is bad"):
        for value in map_with_pool(fn, range(10), [0, 1]):
            got.append(value)
    assert got == [0, 1, 2, 3, 4]


def test_prefetch_looks_ahead_at_most_depth_items():
    started: list[int] = []

    def fn(item: int) -> int:
        started.append(item)
        return item

    gen = prefetch(fn, range(100), depth=4)
    assert next(gen) == (0, 0)
    time.sleep(0.05)
    assert max(started) <= 4


def test_stage_clock_sums_per_stage_and_splits_per_image():
    clock = StageClock()
    for _ in range(4):
        with clock.stage("infer"):
            time.sleep(0.01)
    with clock.stage("write"):
        pass
    split = clock.split(images=4, wall_s=0.08)
    seconds = clock.seconds["infer"]                 # the split rounds; compare unrounded
    assert seconds >= 0.04 and split["infer"]["seconds"] == round(seconds, 4)
    assert split["infer"]["ms_per_image"] == round(1000 * seconds / 4, 3)
    assert split["infer"]["share_of_wall"] == round(seconds / 0.08, 4)
    text = format_split(split)
    assert text.startswith("infer ") and "| write " in text and text.endswith("ms/image")
    assert clock.split(images=0, wall_s=0.0)["infer"]["ms_per_image"] == 0.0


def test_usable_cores_is_positive():
    assert usable_cores() >= 1
