"""Overlap work with threads: ``prefetch`` runs a function over items ahead of the consumer,
``map_with_pool`` runs whole items on several model sessions at once; ``StageClock`` times
the stages.

numpy, OpenCV and ONNX Runtime release the GIL in their heavy calls, so decoding and
letterboxing the next images on a worker thread overlaps inference on the main thread.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch(fn: Callable[[T], R], items: Iterable[T], *, workers: int = 1,
             depth: int = 4) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(item))`` in input order, computing up to ``depth`` items ahead.

    Exceptions raised by ``fn`` are re-raised when their item is reached.
    """
    if depth < 1 or workers < 1:
        raise ValueError("depth and workers must be >= 1")
    it = iter(items)
    window: deque[tuple[T, Future[R]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prefetch") as pool:
        for item in it:
            window.append((item, pool.submit(fn, item)))
            if len(window) >= depth:
                head, fut = window.popleft()
                yield head, fut.result()
        while window:
            head, fut = window.popleft()
            yield head, fut.result()


class StageClock:
    """Seconds spent in each named stage, summed over the threads that ran it.

    ``with clock.stage("read"): ...`` adds the block's duration to ``read``; safe to use
    from several threads at once. Stages that overlap (a worker decoding while the main
    thread infers) each count their own time, so the sum may exceed the wall time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - start
            with self._lock:
                self.seconds[name] = self.seconds.get(name, 0.0) + took

    def split(self, images: int, wall_s: float) -> dict[str, dict[str, float]]:
        """``{stage: {"seconds", "ms_per_image", "share_of_wall"}}`` for a run of
        ``images`` images that took ``wall_s`` seconds."""
        return {name: {"seconds": round(s, 4),
                       "ms_per_image": round(1000.0 * s / images, 3) if images else 0.0,
                       "share_of_wall": round(s / wall_s, 4) if wall_s > 0 else 0.0}
                for name, s in self.seconds.items()}


def format_split(split: dict[str, dict[str, float]]) -> str:
    """``read 3.10 | infer 8.90 | write 0.20 ms/image`` from :meth:`StageClock.split`."""
    return " | ".join(f"{k} {v['ms_per_image']:.2f}" for k, v in split.items()) + " ms/image"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:              # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def map_with_pool(fn: Callable[[Any, T], R], items: Iterable[T],
                  resources: Sequence[Any]) -> Iterator[R]:
    """``fn(resource, item)`` for every item, in input order, with ``len(resources)`` calls
    at once on worker threads, each holding one resource (a model session) exclusively;
    a single resource runs every call on the calling thread. At most twice as many items
    as resources are in flight, so memory stays flat in the number of items."""
    if len(resources) == 1:
        yield from (fn(resources[0], item) for item in items)
        return
    free: queue.SimpleQueue = queue.SimpleQueue()
    for resource in resources:
        free.put(resource)

    def task(item: T) -> R:
        resource = free.get()
        try:
            return fn(resource, item)
        finally:
            free.put(resource)

    for _, result in prefetch(task, items, workers=len(resources), depth=2 * len(resources)):
        yield result
