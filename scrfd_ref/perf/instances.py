"""Perf instances: the :class:`_Instance` base, the harness (bench) and bare instances.

- **Instances**: each instance runs in its own thread with its *own* backend (its own
  ONNX Runtime session), calling ``backend.run(blob)`` on a ``(batch, C, H, W)`` float32
  blob (uniform random values in [-1, 1), the range of a normalised image). ORT
  releases the GIL inside ``session.run``, so the instances really run concurrently.
- **Warm-up**: every instance first makes ``warmup`` calls that are not measured.
- **Measured calls**: ``iterations`` calls per instance, or, with ``duration_s``, calls
  started before ``t0 + duration_s`` (a call in flight at the deadline completes).
  Each call's latency is ``time.perf_counter_ns()`` after minus before (CLOCK_MONOTONIC
  on Linux, one clock for every process).

The bare instance is the control of :func:`scrfd_ref.perf.runner.run_bare`: a plain
``onnxruntime.InferenceSession.run`` loop with the same blob and threads setting, and no
harness (no Backend class, no queues).
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Sequence

import numpy as np

from scrfd_ref.core.errors import InputError
from scrfd_ref.perf.settings import PerfSettings


class _Instance:
    """One instance: warm-up, measured loop, and its record."""

    def __init__(self, settings: PerfSettings, index: int) -> None:
        self.settings = settings
        self.index = index
        self.thread_id = 0
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.extra_threads: list[int] = []

    def deadline(self, t0: int) -> int | None:
        """``t0 + duration`` in ns, or None in iterations mode."""
        d = self.settings.duration_s
        return None if d is None else t0 + int(d * 1e9)

    def warm_up(self) -> None:
        """Unmeasured calls before the barrier."""
        self.thread_id = threading.get_native_id()
        for _ in range(self.settings.warmup):
            self.call_once()

    def call_once(self) -> None:
        raise NotImplementedError

    def measure(self, t0: int) -> None:
        """The measured calls (fills ``starts`` / ``ends``)."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass

    def record(self, keep_calls: bool) -> dict[str, Any]:
        """Record with absolute ``perf_counter_ns`` times (the parent makes them relative
        to the run's ``t0``) and the latencies in ns for the parent's statistics."""
        rec: dict[str, Any] = {
            "instance": self.index, "pid": os.getpid(), "thread_id": self.thread_id,
            "calls": len(self.starts), "warmup_calls": self.settings.warmup,
            "latencies_ns": [e - s for s, e in zip(self.starts, self.ends)],
            "first_start_ns": self.starts[0] if self.starts else None,
            "last_end_ns": max(self.ends) if self.ends else None,
        }
        if self.extra_threads:
            rec["worker_thread_ids"] = list(self.extra_threads)
        if keep_calls:
            rec["call_times_ns"] = [[s, e] for s, e in zip(self.starts, self.ends)]
        return rec


def _random_blob(settings: PerfSettings, index: int, dtype: Any = np.float32) -> np.ndarray:
    rng = np.random.default_rng([settings.seed, os.getpid(), index])
    return rng.uniform(-1.0, 1.0, settings.blob_shape()).astype(dtype)


def _backend_options(settings: PerfSettings) -> dict[str, Any]:
    """Backend factory options: the given ones plus ``dtype`` and ``intra_threads``."""
    options = dict(settings.backend_options)
    options.setdefault("dtype", settings.dtype)
    if settings.backend == "ort" and settings.dtype != "bf16":
        # time ORT's fused int8 kernels; a bf16 model is the storage emulation, whose
        # rounding casts must stay (the backend's own default for bf16)
        options.setdefault("graph_optimization", "all")
    if settings.threads is not None:
        options.setdefault("intra_threads", settings.threads)
    return options


def _make_backend(settings: PerfSettings, model_file: str) -> Any:
    from scrfd_ref.backends import get_backend

    try:
        backend = get_backend(settings.backend, model_file, **_backend_options(settings))
    except TypeError as exc:
        raise InputError(f"backend {settings.backend!r} does not take the options "
                         f"{sorted(_backend_options(settings))}: {exc}") from exc
    return backend if settings.wrap is None else settings.wrap(backend)


# ----------------------------------------------------------------------------- bench (harness)

class _BenchInstance(_Instance):
    """``backend.run(blob)`` in a loop: the harness measurement. With
    ``settings.keep_outputs`` it cycles through the real blobs instead
    (:func:`scrfd_ref.perf.inputs.real_blobs`) and keeps ``(blob index, outputs)`` of
    every ``k``-th timed call (the compliance sample; kept after the call's end time)."""

    def __init__(self, settings: PerfSettings, model_file: str, index: int) -> None:
        super().__init__(settings, index)
        self.backend = _make_backend(settings, model_file)
        self.kept: list[tuple[int, list[np.ndarray]]] = []
        if settings.keep_outputs:
            from scrfd_ref.perf.inputs import real_blobs

            self.blobs = real_blobs(settings)
            self.blob = self.blobs[index % len(self.blobs)]
        else:
            self.blob = _random_blob(settings, index)

    def call_once(self) -> None:
        self.backend.run(self.blob)

    def _keep_every(self) -> int:
        """Keep every k-th call: the sample spread over an iterations run; 7 (a prime, so
        the sample walks over the blobs) in a duration run."""
        its = self.settings.iterations
        return max(1, its // self.settings.keep_outputs) if its else 7

    def _measure_kept(self, t0: int) -> None:
        run, clock, blobs = self.backend.run, time.perf_counter_ns, self.blobs
        deadline, its = self.deadline(t0), self.settings.iterations or 0
        every, keep, n = self._keep_every(), self.settings.keep_outputs, len(blobs)
        i = 0
        while True:
            s = clock()
            if (deadline is None and i == its) or (deadline is not None and s >= deadline):
                return
            k = (self.index + i) % n
            out = run(blobs[k])
            e = clock()
            self.starts.append(s)
            self.ends.append(e)
            if i % every == 0 and len(self.kept) < keep:
                self.kept.append((k, [np.asarray(o) for o in out]))
            i += 1

    def record(self, keep_calls: bool) -> dict[str, Any]:
        """The base record plus ``kept`` (the compliance sample) when outputs were kept."""
        rec = super().record(keep_calls)
        if self.settings.keep_outputs:
            rec["kept"] = self.kept
        return rec

    def measure(self, t0: int) -> None:
        if self.settings.keep_outputs:
            self._measure_kept(t0)
            return
        run, blob, clock = self.backend.run, self.blob, time.perf_counter_ns
        starts, ends = self.starts, self.ends
        deadline = self.deadline(t0)
        if deadline is None:
            for _ in range(self.settings.iterations or 0):
                s = clock()
                run(blob)
                e = clock()
                starts.append(s)
                ends.append(e)
            return
        while True:
            s = clock()
            if s >= deadline:
                return
            run(blob)
            e = clock()
            starts.append(s)
            ends.append(e)

    def info(self) -> dict[str, Any]:
        return self.backend.info()

    def close(self) -> None:
        self.backend.close()


def _make_bench_instance(settings: PerfSettings, model_file: str, index: int) -> _Instance:
    return _BenchInstance(settings, model_file, index)


# ----------------------------------------------------------------------------- bare ORT loop

class _BareInstance(_Instance):
    """A plain ``session.run`` loop (the control for the harness overhead)."""

    def __init__(self, settings: PerfSettings, model_file: str, index: int) -> None:
        super().__init__(settings, index)
        import onnxruntime as ort

        from scrfd_ref.backends.ort import resolve_providers

        opts = ort.SessionOptions()
        if settings.threads:
            opts.intra_op_num_threads = settings.threads
        opts.log_severity_level = 3
        providers = resolve_providers(settings.backend_options.get("providers"))
        try:
            self.session = ort.InferenceSession(model_file, sess_options=opts,
                                                providers=providers)
        except Exception as exc:
            raise InputError(f"{model_file}: ONNX Runtime cannot load the model: "
                             f"{str(exc).strip().splitlines()[0]}") from exc
        inp = self.session.get_inputs()[0]
        _check_fixed_dims(model_file, inp.shape, settings.blob_shape())
        dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        blob = _random_blob(settings, index, dtype)
        fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        # a fixed batch-1 model runs a batch as one-image calls, as the ORT backend does
        self.feeds = ([{inp.name: blob[i:i + 1]} for i in range(settings.batch)]
                      if fixed_batch == 1 and settings.batch > 1 else [{inp.name: blob}])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def call_once(self) -> None:
        for feed in self.feeds:
            self.session.run(self.output_names, feed)

    def measure(self, t0: int) -> None:
        sess_run, names, clock = self.session.run, self.output_names, time.perf_counter_ns
        deadline = self.deadline(t0)
        n = 0
        while True:
            s = clock()
            if (deadline is None and n == self.settings.iterations) or (
                    deadline is not None and s >= deadline):
                return
            for feed in self.feeds:
                sess_run(names, feed)
            e = clock()
            self.starts.append(s)
            self.ends.append(e)
            n += 1

    def info(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"backend": "bare-onnxruntime", "library": "onnxruntime",
                "version": ort.__version__, "providers": self.session.get_providers()}


def _check_fixed_dims(model_file: str, model_shape: Sequence[Any],
                      blob_shape: tuple[int, ...]) -> None:
    """Raise InputError when the blob's C, H, W differ from the model's fixed ones."""
    names = ("channels", "height", "width")
    for name, want, got in zip(names, model_shape[1:], blob_shape[1:]):
        if isinstance(want, int) and want != got:
            raise InputError(f"{model_file}: model input {name} is fixed at {want}, "
                             f"shape asks for {got}")


def _make_bare_instance(settings: PerfSettings, model_file: str, index: int) -> _Instance:
    return _BareInstance(settings, model_file, index)
