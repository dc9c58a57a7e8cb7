"""vamp-style performance runs: instances x processes x batch, throughput and latency.

The vendor's ``vamp`` tool (seed-flow.md section 4) runs a model with ``-i`` concurrent
instances, ``-p`` processes, batch ``-b`` and input shape ``-s``; :func:`run_perf` does
the same with any scrfd-ref backend:

- **Processes**: ``processes`` OS processes (``multiprocessing``, *spawn* context), each
  building its own backends. With ``processes == 1`` the instances run in the calling
  process (no spawn).
- **Instances**: ``instances`` threads per process, each with its *own* backend (its own
  ONNX Runtime session), calling ``backend.run(blob)`` on a ``(batch, C, H, W)`` float32
  blob (uniform random values in [-1, 1), the range of a normalised image). ORT
  releases the GIL inside ``session.run``, so the instances really run concurrently.
- **Warm-up**: every instance first makes ``warmup`` calls that are not measured.
- **Start barrier**: then every instance of every process waits on a start barrier
  (a ``threading.Barrier`` per process whose last arrival also waits on a
  ``multiprocessing.Barrier`` across processes); its release time is ``t0``.
- **Measured calls**: ``iterations`` calls per instance, or, with ``duration_s``, calls
  started before ``t0 + duration_s`` (a call in flight at the deadline completes).
  Each call's latency is ``time.perf_counter_ns()`` after minus before (CLOCK_MONOTONIC
  on Linux, one clock for every process).
- **Window**: ``wall_s`` runs from the barrier release (the earliest ``t0`` over the
  processes) to the end of the last measured call of any instance.
- **Throughput**: :func:`throughput` = ``batch x measured calls (all instances) / wall_s``
  images per second.
- **Percentiles**: :func:`latency_stats`: mean and p50 / p90 / p95 / p99 of the per-call
  latencies of all instances pooled, with ``numpy.percentile(method="linear")``: linear
  interpolation between the closest ranks (NumPy's default, Hyndman & Fan type 7).

``pipeline=True`` measures the full flow instead: per call, ``batch`` real images are
letterboxed and normalised (pre), run (infer) and decoded + NMS'd (post), with the
:mod:`scrfd_ref.detector` pieces. The images are read from disk once before the run (JPEG
decoding is not part of *pre*). A call's latency is then its end-to-end time, from the
start of its pre-processing to the end of its post-processing (queue waits included),
and the result also holds the mean pre / infer / post time per call. Two executors:

- ``serial=False`` (pipelined): per instance a pre-processing thread, the instance
  thread (inference) and a post-processing thread joined by bounded queues, so
  pre-processing of batch k+1 and post-processing of batch k-1 overlap inference of
  batch k (numpy, OpenCV and ORT release the GIL in their heavy calls).
- ``serial=True``: one thread per instance doing pre, infer, post one after the other.

:func:`run_bare` is the control: a plain ``onnxruntime.InferenceSession.run`` loop in the
same threads x processes with the same blob, threads setting, barrier and window, and no
harness (no Backend class, no queues), so the harness overhead can be checked with
``scrfd-ref perf --bare``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .errors import InputError, ScrfdRefError

PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)
PERCENTILE_METHOD = ("linear interpolation between closest ranks "
                     "(numpy.percentile method='linear', Hyndman-Fan type 7)")
WINDOW_DEFINITION = ("from the start barrier's release (after warm-up, all instances of all "
                     "processes) to the end of the last measured call")
DEFAULT_ITERATIONS = 50
DEFAULT_WARMUP = 5
#: images the pipeline mode reads by default (first N of WIDER val, sorted)
DEFAULT_MAX_IMAGES = 32
#: seconds a process may wait at the start barrier for the others
BARRIER_TIMEOUT_S = 600.0
#: depth of the pipelined executor's queues (batches waiting between stages)
QUEUE_DEPTH = 2


class PerfError(ScrfdRefError):
    """A perf run failed (a worker process or thread raised, or died)."""


# ----------------------------------------------------------------------------- arithmetic

def latency_stats(latencies_ms: Iterable[float]) -> dict[str, float]:
    """Mean, p50, p90, p95, p99, min and max of per-call latencies (ms).

    Percentiles use ``numpy.percentile(..., method="linear")``: the q-th percentile of n
    sorted values sits at rank ``(n - 1) * q / 100`` and is linearly interpolated between
    the two closest ranks (NumPy's default, Hyndman & Fan type 7).

    Raises:
        InputError: no latencies.
    """
    values = np.asarray(list(latencies_ms), dtype=np.float64)
    if values.size == 0:
        raise InputError("no measured calls: cannot compute latency statistics")
    stats = {"mean": float(values.mean())}
    for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES, method="linear")):
        stats[f"p{q}"] = float(v)
    stats["min"] = float(values.min())
    stats["max"] = float(values.max())
    return stats


def throughput(batch: int, calls: int, wall_s: float) -> float:
    """Images per second: ``batch x calls / wall_s``.

    Raises:
        InputError: ``wall_s`` is not positive.
    """
    if wall_s <= 0:
        raise InputError(f"wall time {wall_s} s is not positive")
    return batch * calls / wall_s


# ----------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class PerfSettings:
    """Everything that defines a perf run (see the module docstring for the semantics).

    Attributes:
        model: model file (ONNX path; a replay folder for ``backend="replay"``).
        backend: backend registry name (``ort``, ``replay``, plugins).
        backend_options: extra keyword options for the backend factory.
        dtype: ``fp32``, ``fp16`` or ``int8``; an ``.onnx`` model is converted with
            :func:`scrfd_ref.quantize.convert_model` when not fp32 (cached).
        instances: concurrent instances (threads, one backend each) per process.
        processes: OS processes (spawned), each with ``instances`` instances.
        batch: images per call.
        shape: one input ``(C, H, W)``; the blob is ``(batch, C, H, W)``.
        iterations: measured calls per instance (default :data:`DEFAULT_ITERATIONS`
            when ``duration_s`` is not given).
        duration_s: run each instance for this many seconds instead.
        warmup: unmeasured calls per instance before the start barrier.
        pipeline: run the full flow (pre + infer + post) instead of ``backend.run``.
        serial: in pipeline mode, do pre, infer, post one after another (no overlap).
        threads: ONNX Runtime intra-op threads per instance (None: ORT's default);
            passed to the backend as ``intra_threads``.
        images: pipeline images (default: the first ``max_images`` WIDER val images of
            ``data_dir``; random images when there are none).
        data_dir: data directory for the default images.
        max_images: how many default images to load.
        profile: pipeline profile name (pre/post-processing settings).
        record_calls: keep every call's start/end (ns from ``t0``) in the result.
        seed: seed of the random blob / random images.
    """

    model: str
    backend: str = "ort"
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    dtype: str = "fp32"
    instances: int = 1
    processes: int = 1
    batch: int = 1
    shape: tuple[int, int, int] = (3, 640, 640)
    iterations: int | None = None
    duration_s: float | None = None
    warmup: int = DEFAULT_WARMUP
    pipeline: bool = False
    serial: bool = False
    threads: int | None = None
    images: tuple[str, ...] = ()
    data_dir: str | None = None
    max_images: int = DEFAULT_MAX_IMAGES
    profile: str = "insightface"
    record_calls: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", str(self.model))
        object.__setattr__(self, "shape", _check_shape(self.shape))
        object.__setattr__(self, "images", tuple(str(p) for p in self.images))
        object.__setattr__(self, "backend_options", dict(self.backend_options))
        for name in ("instances", "processes", "batch", "max_images"):
            _check_positive(name, getattr(self, name))
        if self.warmup < 0:
            raise InputError(f"warmup {self.warmup} is negative")
        if self.threads is not None:
            _check_positive("threads", self.threads)
        if self.iterations is not None and self.duration_s is not None:
            raise InputError("give iterations or a duration, not both")
        if self.duration_s is not None and not self.duration_s > 0:
            raise InputError(f"duration {self.duration_s} s is not positive")
        if self.iterations is not None:
            _check_positive("iterations", self.iterations)
        elif self.duration_s is None:
            object.__setattr__(self, "iterations", DEFAULT_ITERATIONS)
        if self.serial and not self.pipeline:
            raise InputError("serial applies to the pipeline mode only (add pipeline)")

    @property
    def mode(self) -> str:
        """``bench`` (backend.run only), ``pipelined`` or ``serial`` (full flow)."""
        if not self.pipeline:
            return "bench"
        return "serial" if self.serial else "pipelined"

    def blob_shape(self) -> tuple[int, int, int, int]:
        """``(batch, C, H, W)``."""
        return (self.batch, *self.shape)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (``shape`` as a list)."""
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        d["images"] = list(self.images)
        d["mode"] = self.mode
        return d


def _check_positive(name: str, value: Any) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape must be C,H,W integers, got {shape!r}") from None
    if len(dims) != 3 or min(dims) < 1:
        raise InputError(f"shape must be three positive integers C,H,W, got {shape!r}")
    return dims  # type: ignore[return-value]


# ----------------------------------------------------------------------------- result

@dataclass
class PerfResult:
    """Outcome of a perf run; :meth:`to_json` gives the JSON contract.

    Attributes:
        mode: ``bench``, ``pipelined``, ``serial`` or ``bare``.
        throughput_ips: images per second over the window.
        latency_ms: :func:`latency_stats` of the per-call latencies.
        settings: :meth:`PerfSettings.to_dict` plus ``model_file`` (the file run).
        versions: :func:`library_versions`.
        calls: measured calls, all instances.
        wall_s: the measured window in seconds.
        pids: process ids that ran instances.
        instances: one record per instance (process, thread ids, calls, ...).
        stages_ms: pipeline modes: mean ``pre`` / ``infer`` / ``post`` ms per call.
        detections: pipeline modes: faces found over the measured calls.
        backend: the first instance's ``backend.info()`` (bare: session providers).
    """

    mode: str
    throughput_ips: float
    latency_ms: dict[str, float]
    settings: dict[str, Any]
    versions: dict[str, str]
    calls: int
    wall_s: float
    pids: list[int]
    instances: list[dict[str, Any]]
    stages_ms: dict[str, float] | None = None
    detections: int | None = None
    backend: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the definitions of the window and the percentiles."""
        d = dataclasses.asdict(self)
        d["total_images"] = self.settings["batch"] * self.calls
        d["percentile_method"] = PERCENTILE_METHOD
        d["window"] = WINDOW_DEFINITION
        if self.stages_ms is None:
            del d["stages_ms"], d["detections"]
        return d

    def to_json(self, indent: int | None = 2) -> str:
        """The result as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def library_versions() -> dict[str, str]:
    """Python, numpy, onnxruntime, opencv and scrfd_ref versions (``absent`` if missing)."""
    from . import __version__

    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "scrfd_ref": __version__}
    for key, module in (("onnxruntime", "onnxruntime"), ("opencv", "cv2")):
        try:
            versions[key] = __import__(module).__version__
        except ImportError:
            versions[key] = "absent"
    versions["platform"] = platform.platform()
    versions["cpus"] = str(os.cpu_count())
    return versions


# ----------------------------------------------------------------------------- entry points

def model_for_dtype(model: str | os.PathLike[str], dtype: str) -> Path:
    """The model file to run for ``dtype``: the model itself for fp32 (or a non-ONNX
    model such as a replay folder), else the cached conversion of
    :func:`scrfd_ref.model_prep.prepare_model`."""
    path = Path(model)
    if dtype == "fp32" or path.suffix.lower() != ".onnx":
        return path
    from .model_prep import prepare_model

    return prepare_model(path, dtype=dtype)


def run_perf(settings: PerfSettings) -> PerfResult:
    """Run the harness (``backend.run``, or the full flow in pipeline mode) as set.

    Raises:
        InputError: bad settings, model or images.
        PerfError: a worker process or thread failed.
    """
    model_file = model_for_dtype(settings.model, settings.dtype)
    kind = "pipeline" if settings.pipeline else "bench"
    reports = _launch(kind, settings, str(model_file))
    return _assemble(settings.mode, settings, str(model_file), reports)


def run_bare(settings: PerfSettings) -> PerfResult:
    """The plain onnxruntime control loop: ``session.run`` in the same threads x processes,
    same blob, intra-op threads, warm-up, barrier and window; no Backend, no queues.

    A model with a fixed batch of 1 is run as ``batch`` one-image ``session.run`` calls per
    call (as the ORT backend does). Only ``backend="ort"`` without pipeline makes sense.

    Raises:
        InputError: settings that the bare loop cannot mirror.
        PerfError: a worker failed.
    """
    if settings.pipeline:
        raise InputError("the bare onnxruntime loop has no pipeline mode")
    if settings.backend != "ort":
        raise InputError(f"the bare loop is onnxruntime only; backend is {settings.backend!r}")
    model_file = model_for_dtype(settings.model, settings.dtype)
    reports = _launch("bare", settings, str(model_file))
    return _assemble("bare", settings, str(model_file), reports)


def compare_with_bare(settings: PerfSettings, rounds: int = 5) -> dict[str, Any]:
    """Harness overhead check: alternate :func:`run_perf` and :func:`run_bare` ``rounds``
    times (the order flips every round, so drifting machine load hits both alike).

    Returns:
        ``harness_ips`` and ``bare_ips`` (lists, one per round), their medians, and
        ``overhead_pct`` = 100 x (1 - median over rounds of harness / bare throughput).
    """
    _check_positive("rounds", rounds)
    harness: list[float] = []
    bare: list[float] = []
    for r in range(rounds):
        for run in ((run_perf, run_bare) if r % 2 == 0 else (run_bare, run_perf)):
            (harness if run is run_perf else bare).append(run(settings).throughput_ips)
    ratios = [h / b for h, b in zip(harness, bare)]
    return {"harness_ips": harness, "bare_ips": bare,
            "median_harness_ips": float(np.median(harness)),
            "median_bare_ips": float(np.median(bare)),
            "overhead_pct": 100.0 * (1.0 - float(np.median(ratios)))}


# ----------------------------------------------------------------------------- processes

def _launch(kind: str, settings: PerfSettings, model_file: str) -> list[dict[str, Any]]:
    """Run ``settings.processes`` process reports, in this process when there is one."""
    if settings.processes == 1:
        return [_process_run(kind, settings, model_file, None)]
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(settings.processes)
    results = ctx.Queue()
    procs = [ctx.Process(target=_child_main, name=f"scrfd-perf-{i}", daemon=True,
                         args=(kind, settings, model_file, barrier, results))
             for i in range(settings.processes)]
    for p in procs:
        p.start()
    try:
        return _collect(procs, results, barrier)
    finally:
        _stop(procs)


def _child_main(kind: str, settings: PerfSettings, model_file: str, barrier: Any,
                results: Any) -> None:
    """Spawned process body: run and send ``("ok", report)`` or ``("error", ...)``."""
    try:
        results.put(("ok", _process_run(kind, settings, model_file, barrier)))
    except BaseException as exc:  # report everything, the parent re-raises
        try:
            barrier.abort()
        except Exception:
            pass
        results.put(("error", {"pid": os.getpid(), "type": type(exc).__name__,
                               "message": str(exc), "user": isinstance(exc, ScrfdRefError),
                               "broken_barrier": isinstance(exc, threading.BrokenBarrierError),
                               "traceback": traceback.format_exc()}))


def _collect(procs: list[Any], results: Any, barrier: Any) -> list[dict[str, Any]]:
    """Gather one message per process; raise the first real error."""
    reports: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    while len(reports) + len(errors) < len(procs):
        try:
            status, payload = results.get(timeout=0.5)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if errors and all(p.exitcode is not None for p in procs):
                break  # the failure is known; the rest ended without a word
            if dead and not errors:
                barrier.abort()
                raise PerfError(f"perf process {dead[0].pid} died with exit code "
                                f"{dead[0].exitcode} before reporting")
            continue
        if status == "ok":
            reports.append(payload)
        else:
            errors.append(payload)
            barrier.abort()
    if errors:
        _raise_child_error(errors)
    return reports


def _raise_child_error(errors: list[dict[str, Any]]) -> None:
    first = next((e for e in errors if not e["broken_barrier"]), errors[0])
    if first["user"]:
        raise InputError(first["message"])
    raise PerfError(f"perf process {first['pid']} failed: {first['type']}: {first['message']}"
                    f"\n{first['traceback']}")


def _stop(procs: list[Any]) -> None:
    """Join the processes this run started, terminating any that hang."""
    for p in procs:
        p.join(timeout=10)
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(timeout=5)


# ----------------------------------------------------------------------------- one process

def _process_run(kind: str, settings: PerfSettings, model_file: str,
                 mp_barrier: Any) -> dict[str, Any]:
    """Build this process's instances, run them behind the barrier, return its report."""
    makers = {"bench": _make_bench_instance, "pipeline": _make_pipeline_instance,
              "bare": _make_bare_instance}
    instances: list[_Instance] = []
    try:
        for i in range(settings.instances):
            instances.append(makers[kind](settings, model_file, i))
    except BaseException:
        for inst in instances:
            inst.close()
        raise
    clock: dict[str, int] = {}

    def release() -> None:  # runs in the last thread to reach the local barrier
        if mp_barrier is not None:
            mp_barrier.wait(timeout=BARRIER_TIMEOUT_S)
        clock["t0"] = time.perf_counter_ns()

    barrier = threading.Barrier(len(instances), action=release)
    try:
        _run_threads(instances, barrier, clock)
        info = instances[0].info()
    finally:
        for inst in instances:
            inst.close()
    records = [inst.record(settings.record_calls) for inst in instances]
    return {"pid": os.getpid(), "t0_ns": clock["t0"], "instances": records, "backend": info}


def _run_threads(instances: list["_Instance"], barrier: threading.Barrier,
                 clock: dict[str, int]) -> None:
    """Start one thread per instance, wait for all, re-raise the first real error."""
    errors: list[BaseException] = []

    def body(inst: "_Instance") -> None:
        try:
            inst.warm_up()
            barrier.wait()
            inst.measure(clock["t0"])
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=body, args=(inst,), name=f"perf-instance-{i}",
                                daemon=True) for i, inst in enumerate(instances)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]


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
    if settings.threads is not None:
        options.setdefault("intra_threads", settings.threads)
    return options


def _make_backend(settings: PerfSettings, model_file: str) -> Any:
    from .backends import get_backend

    try:
        return get_backend(settings.backend, model_file, **_backend_options(settings))
    except TypeError as exc:
        raise InputError(f"backend {settings.backend!r} does not take the options "
                         f"{sorted(_backend_options(settings))}: {exc}") from exc


# ----------------------------------------------------------------------------- bench (harness)

class _BenchInstance(_Instance):
    """``backend.run(blob)`` in a loop: the harness measurement."""

    def __init__(self, settings: PerfSettings, model_file: str, index: int) -> None:
        super().__init__(settings, index)
        self.backend = _make_backend(settings, model_file)
        self.blob = _random_blob(settings, index)

    def call_once(self) -> None:
        self.backend.run(self.blob)

    def measure(self, t0: int) -> None:
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

        from .backends.ort import resolve_providers

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


# ----------------------------------------------------------------------------- pipeline

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
        from .detector import Detector

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
        from .preprocess import preprocess

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
        from .heads import normalize_heads

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


_IMAGE_CACHE: dict[tuple[Any, ...], list[np.ndarray]] = {}


def pipeline_images(settings: PerfSettings) -> list[np.ndarray]:
    """The BGR images of the pipeline mode: ``settings.images``, else the first
    ``max_images`` WIDER val images of the data directory, else random images
    (720x1280, seeded). Read once per process.

    Raises:
        DataMissingError / InputError: an explicit image is missing or unreadable.
    """
    key = (settings.images, settings.data_dir, settings.max_images, settings.seed)
    if key not in _IMAGE_CACHE:
        images = _load_images(settings)
        _IMAGE_CACHE.clear()  # keep one image set per process, not every one ever used
        _IMAGE_CACHE[key] = images
    return _IMAGE_CACHE[key]


def default_image_paths(data_dir: str | None, limit: int) -> list[Path]:
    """The first ``limit`` WIDER val images (sorted ``event/name``) of the data directory."""
    from . import data as data_mod

    root = data_mod.widerface_dir(data_mod.data_dir(data_dir)) / "WIDER_val" / "images"
    return sorted(root.glob("*/*.jpg"))[:limit] if root.is_dir() else []


def _load_images(settings: PerfSettings) -> list[np.ndarray]:
    from .formats.images import read_image

    paths = ([Path(p) for p in settings.images] if settings.images
             else default_image_paths(settings.data_dir, settings.max_images))
    if paths:
        return [read_image(p) for p in paths]
    rng = np.random.default_rng(settings.seed)
    return [rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8) for _ in range(4)]


def _make_pipeline_instance(settings: PerfSettings, model_file: str, index: int) -> _Instance:
    return _PipelineInstance(settings, model_file, index, pipeline_images(settings))


# ----------------------------------------------------------------------------- assembly

def _assemble(mode: str, settings: PerfSettings, model_file: str,
              reports: list[dict[str, Any]]) -> PerfResult:
    """Pool the process reports into one :class:`PerfResult`."""
    records = [rec for r in reports for rec in r["instances"]]
    calls = sum(rec["calls"] for rec in records)
    if calls == 0:
        raise PerfError("no call completed in the measured window (duration too short?)")
    t0 = min(r["t0_ns"] for r in reports)
    end = max(rec["last_end_ns"] for rec in records if rec["last_end_ns"] is not None)
    wall_s = (end - t0) / 1e9
    latencies = [ns / 1e6 for rec in records for ns in rec.pop("latencies_ns")]
    for rec in records:
        _relative_to(rec, t0)
    result = PerfResult(
        mode=mode, throughput_ips=throughput(settings.batch, calls, wall_s),
        latency_ms=latency_stats(latencies),
        settings={**settings.to_dict(), "mode": mode, "model_file": model_file},
        versions=library_versions(), calls=calls, wall_s=wall_s,
        pids=sorted({r["pid"] for r in reports}), instances=records,
        backend=reports[0]["backend"])
    if mode in ("pipelined", "serial"):
        result.stages_ms = _stage_means(records)
        result.detections = sum(rec["detections"] for rec in records)
    return result


def _relative_to(rec: dict[str, Any], t0: int) -> None:
    """Make a record's times ns from the window start ``t0`` (in place)."""
    for key in ("first_start_ns", "last_end_ns"):
        if rec[key] is not None:
            rec[key] -= t0
    if "call_times_ns" in rec:
        rec["call_times_ns"] = [[s - t0, e - t0] for s, e in rec["call_times_ns"]]


def _stage_means(records: list[dict[str, Any]]) -> dict[str, float]:
    """Mean pre / infer / post ms per call over every instance; drops the raw lists."""
    stages = np.array([s for rec in records for s in rec.pop("stage_ns")], dtype=np.float64)
    means = stages.mean(axis=0) / 1e6
    return {"pre": float(means[0]), "infer": float(means[1]), "post": float(means[2])}


# ----------------------------------------------------------------------------- summary

def format_summary(result: PerfResult) -> str:
    """A vamp / trtexec-like text summary of a result."""
    s, lat = result.settings, result.latency_ms
    run = (f"{s['iterations']} measured calls per instance" if s["duration_s"] is None
           else f"{s['duration_s']:g} s per instance")
    backend = result.backend or {}
    lines = [
        "=== scrfd-ref perf ===",
        f"model       : {s['model']}" + (f" (runs {s['model_file']})"
                                         if s["model_file"] != s["model"] else ""),
        f"backend     : {s['backend'] if result.mode != 'bare' else 'bare onnxruntime'} "
        f"{s['dtype']} {','.join(backend.get('providers', [])) or ''}".rstrip(),
        f"mode        : {_MODE_TEXT[result.mode]}",
        f"instances   : {s['instances']} x processes {s['processes']}, batch {s['batch']}, "
        f"shape {'x'.join(map(str, s['shape']))}, intra-op threads "
        f"{s['threads'] if s['threads'] else 'ORT default'}",
        f"run         : {run}, {s['warmup']} warm-up calls per instance (not measured)",
        "=== results ===",
        f"throughput  : {result.throughput_ips:.2f} images/s ({result.calls} calls x batch "
        f"{s['batch']} in {result.wall_s:.3f} s)",
        f"latency ms  : mean {lat['mean']:.3f}  p50 {lat['p50']:.3f}  p90 {lat['p90']:.3f}  "
        f"p95 {lat['p95']:.3f}  p99 {lat['p99']:.3f}  (min {lat['min']:.3f}, "
        f"max {lat['max']:.3f})",
    ]
    if result.stages_ms:
        st = result.stages_ms
        lines.append(f"stages ms   : pre {st['pre']:.3f}  infer {st['infer']:.3f}  "
                     f"post {st['post']:.3f}  (mean per call; {result.detections} faces)")
    v = result.versions
    lines += [
        f"processes   : pids {', '.join(map(str, result.pids))}",
        f"versions    : python {v['python']}, numpy {v['numpy']}, onnxruntime "
        f"{v['onnxruntime']}, opencv {v['opencv']}, scrfd_ref {v['scrfd_ref']}",
        f"percentiles : {PERCENTILE_METHOD}",
        f"window      : {WINDOW_DEFINITION}",
    ]
    return "\n".join(lines)


_MODE_TEXT = {
    "bench": "backend.run on a random blob",
    "bare": "plain session.run loop, no harness (control)",
    "pipelined": "full flow (pre + infer + decode/NMS), pipelined: pre and post threads "
                 "overlap inference; latency = end to end per call",
    "serial": "full flow (pre + infer + decode/NMS), serial: one stage after another",
}
