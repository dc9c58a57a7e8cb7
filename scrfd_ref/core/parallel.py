"""Overlap work with threads: ``prefetch`` runs a function over items ahead of the consumer.

numpy, OpenCV and ONNX Runtime release the GIL in their heavy calls, so decoding and
letterboxing the next images on a worker thread overlaps inference on the main thread.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

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
