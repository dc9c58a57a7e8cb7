"""Perf pipeline mode: the full flow (pre + infer + decode/NMS) per call (its images come
from :mod:`scrfd_ref.perf.inputs`).

``pipeline=True`` measures the full flow instead of ``backend.run``: per call, ``batch``
real images are letterboxed and normalised (pre), run (infer) and decoded + NMS'd (post),
with the :mod:`scrfd_ref.detector` pieces. The images are read from disk once before the
run (JPEG decoding is not part of *pre*). A call's latency is then its end-to-end time,
from the start of its pre-processing to the end of its post-processing (queue waits
included), and the result also holds the mean pre / infer / post time per call. Two
executors:

- ``serial=False`` (pipelined): per instance a pre-processing thread, the instance
  thread (inference) and a post-processing thread joined by bounded queues, so
  pre-processing of batch k+1 and post-processing of batch k-1 overlap inference of
  batch k (numpy, OpenCV and ORT release the GIL in their heavy calls).
- ``serial=True``: one thread per instance doing pre, infer, post one after the other.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from scrfd_ref.core.errors import InputError
from scrfd_ref.perf.inputs import pipeline_images
from scrfd_ref.perf.instances import _Instance, _make_backend
from scrfd_ref.perf.settings import PerfSettings

#: depth of the pipelined executor's queues (batches waiting between stages)
QUEUE_DEPTH = 2


@dataclass
class _Batch:
    """One call travelling through the pipeline."""

    start: int
    images: list[np.ndarray]
    blob: np.ndarray | None = None
    transforms: list[Any] | None = None
    outputs: list[np.ndarray] | None = None
    pre_ns: int = 0
    infer_ns: int = 0
    post_ns: int = 0


_DONE = object()


class _PipelineInstance(_Instance):
    """Full flow: preprocess + backend.run + decode + NMS, pipelined or serial."""

    def __init__(self, settings: PerfSettings, model_file: str, index: int,
                 images: list[np.ndarray]) -> None:
        super().__init__(settings, index)
        from scrfd_ref.detector import Detector

        backend = _make_backend(settings, model_file)
        c, h, w = settings.shape
        if c != 3:
            raise InputError(f"pipeline mode needs 3 input channels, shape has {c}")
        self.detector = Detector(backend, profile=settings.profile, input_size=(w, h))
        self.images = images
        self.cursor = index * settings.batch
        self.stage_ns: list[tuple[int, int, int]] = []
        self.faces = 0

    def _next_images(self) -> list[np.ndarray]:
        n, b = len(self.images), self.settings.batch
        picked = [self.images[(self.cursor + j) % n] for j in range(b)]
        self.cursor = (self.cursor + b) % n
        return picked

    def _pre(self, batch: _Batch) -> _Batch:
        from scrfd_ref.core.preprocess import preprocess

        s = time.perf_counter_ns()
        batch.blob, batch.transforms = preprocess(batch.images, self.detector.profile)
        batch.pre_ns = time.perf_counter_ns() - s
        return batch

    def _infer(self, batch: _Batch) -> _Batch:
        s = time.perf_counter_ns()
        batch.outputs = self.detector.backend.run(batch.blob)
        batch.infer_ns = time.perf_counter_ns() - s
        batch.blob = None
        return batch

    def _post(self, batch: _Batch) -> tuple[int, int]:
        """Decode + NMS; return the number of faces and the end time (ns)."""
        from scrfd_ref.core.heads import normalize_heads

        s = time.perf_counter_ns()
        heads = normalize_heads(batch.outputs, self.detector.profile.input_size,
                                where=f"{self.detector.backend.name} outputs")
        dets = self.detector.detections_from_heads(heads, batch.transforms)
        e = time.perf_counter_ns()
        batch.post_ns = e - s
        return sum(len(d) for d in dets), e

    def call_once(self) -> None:
        self._post(self._infer(self._pre(_Batch(0, self._next_images()))))

    def _finish(self, batch: _Batch) -> None:
        faces, end = self._post(batch)
        self.faces += faces
        self.starts.append(batch.start)
        self.ends.append(end)
        self.stage_ns.append((batch.pre_ns, batch.infer_ns, batch.post_ns))

    def _more(self, n: int, deadline: int | None, now: int) -> bool:
        return n < (self.settings.iterations or 0) if deadline is None else now < deadline

    def measure(self, t0: int) -> None:
        if self.settings.serial:
            self._measure_serial(t0)
        else:
            self._measure_pipelined(t0)

    def _measure_serial(self, t0: int) -> None:
        deadline, n = self.deadline(t0), 0
        while True:
            s = time.perf_counter_ns()
            if not self._more(n, deadline, s):
                return
            self._finish(self._infer(self._pre(_Batch(s, self._next_images()))))
            n += 1

    def _measure_pipelined(self, t0: int) -> None:
        """pre thread -> queue -> inference (this thread) -> queue -> post thread."""
        to_infer: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        to_post: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        stop = threading.Event()
        errors: list[BaseException] = []
        deadline = self.deadline(t0)

        def produce() -> None:
            n = 0
            while not stop.is_set():
                s = time.perf_counter_ns()
                if not self._more(n, deadline, s):
                    break
                _put(to_infer, self._pre(_Batch(s, self._next_images())), stop)
                n += 1
            _put(to_infer, _DONE, stop)

        def consume() -> None:
            while (item := _get(to_post, stop)) is not _DONE and item is not None:
                self._finish(item)

        workers = [threading.Thread(target=_guard(fn, errors, stop), name=f"perf-{tag}",
                                    daemon=True)
                   for fn, tag in ((produce, "pre"), (consume, "post"))]
        for w in workers:
            w.start()
        self.extra_threads = [w.native_id or 0 for w in workers]
        try:
            while (item := _get(to_infer, stop)) is not _DONE and item is not None:
                _put(to_post, self._infer(item), stop)
            _put(to_post, _DONE, stop)
        except BaseException:
            stop.set()
            raise
        finally:
            for w in workers:
                w.join()
        if errors:
            raise errors[0]

    def record(self, keep_calls: bool) -> dict[str, Any]:
        rec = super().record(keep_calls)
        rec["stage_ns"] = [list(s) for s in self.stage_ns]
        rec["detections"] = self.faces
        return rec

    def info(self) -> dict[str, Any]:
        return self.detector.backend.info()

    def close(self) -> None:
        self.detector.close()


def _guard(fn: Callable[[], None], errors: list[BaseException],
           stop: threading.Event) -> Callable[[], None]:
    """Wrap a worker so an exception is kept and stops the other stages."""
    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)
            stop.set()
    return run


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    """``q.put`` that gives up when ``stop`` is set (so a failed stage cannot deadlock)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    """``q.get`` that returns None when ``stop`` is set."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return None


def _make_pipeline_instance(settings: PerfSettings, model_file: str, index: int) -> _Instance:
    return _PipelineInstance(settings, model_file, index, pipeline_images(settings))
