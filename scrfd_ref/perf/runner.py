"""vamp-style performance runs: instances x processes x batch, throughput and latency.

The vendor's ``vamp`` tool (seed-flow.md section 4) runs a model with ``-i`` concurrent
instances, ``-p`` processes, batch ``-b`` and input shape ``-s``; :func:`run_perf` does
the same with any scrfd-ref backend:

- **Processes**: ``processes`` OS processes (``multiprocessing``, *spawn* context), each
  building its own backends. With ``processes == 1`` the instances run in the calling
  process (no spawn).
- **Instances**: ``instances`` threads per process, each with its *own* backend; see
  :mod:`scrfd_ref.perf.instances` (warm-up, measured calls, the random blob).
- **Start barrier**: after the warm-up every instance of every process waits on a start
  barrier (a ``threading.Barrier`` per process whose last arrival also waits on a
  ``multiprocessing.Barrier`` across processes); its release time is ``t0``.
- **Window, throughput, percentiles**: see :mod:`scrfd_ref.perf.statistics`; the process
  reports are pooled into a :class:`~scrfd_ref.perf.result.PerfResult` by
  :mod:`scrfd_ref.perf.result`.

``pipeline=True`` measures the full flow (pre + infer + decode/NMS) instead, pipelined or
serial: see :mod:`scrfd_ref.perf.pipeline`.

:func:`run_bare` is the control: a plain ``onnxruntime.InferenceSession.run`` loop in the
same threads x processes with the same blob, threads setting, barrier and window, and no
harness (no Backend class, no queues), so the harness overhead can be checked with
``scrfd-ref perf --bare``.
"""
from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from scrfd_ref.core.errors import InputError, ScrfdRefError
from scrfd_ref.perf.instances import _Instance, _make_bare_instance, _make_bench_instance
from scrfd_ref.perf.pipeline import _make_pipeline_instance
from scrfd_ref.perf.result import PerfResult, _assemble
from scrfd_ref.perf.rounds import interleave
from scrfd_ref.perf.settings import PerfError, PerfSettings, _check_positive

#: seconds a process may wait at the start barrier for the others
BARRIER_TIMEOUT_S = 600.0


# ----------------------------------------------------------------------------- entry points

def model_for_dtype(model: str | os.PathLike[str], dtype: str, backend: str = "ort") -> Path:
    """The model file ``backend`` runs for ``dtype``: the model itself for fp32 (or a
    non-ONNX model such as a replay folder), else the cached conversion of
    :func:`scrfd_ref.quantize.prepare.prepare_model` (OpenVINO: the fp32 file, or the
    NNCF model for int8)."""
    path = Path(model)
    if dtype == "fp32" or path.suffix.lower() != ".onnx":
        return path
    from scrfd_ref.device.model_identity import model_arithmetic
    from scrfd_ref.quantize.prepare import prepare_model

    if model_arithmetic(path)[0] == dtype:  # a pre-built int8 / fp16 file runs as it is
        return path

    return prepare_model(path, dtype=dtype, backend=backend)


def run_perf(settings: PerfSettings) -> PerfResult:
    """Run the harness (``backend.run``, or the full flow in pipeline mode) as set.

    Raises:
        InputError: bad settings, model or images.
        PerfError: a worker process or thread failed.
    """
    model_file = model_for_dtype(settings.model, settings.dtype, settings.backend)
    kind = "pipeline" if settings.pipeline else "bench"
    reports = _launch(kind, settings, str(model_file))
    return _assemble(settings.mode, settings, str(model_file), reports)


def build_backend(settings: PerfSettings) -> Any:
    """A backend as a timed instance of ``settings`` builds it (same model file for the
    dtype, same options, ``settings.wrap`` applied): the untimed side of the compliance
    checks. The caller closes it."""
    from scrfd_ref.perf.instances import _make_backend

    return _make_backend(settings, str(model_for_dtype(settings.model, settings.dtype,
                                                       settings.backend)))


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
    harness, bare = interleave(lambda: run_perf(settings).throughput_ips,
                               lambda: run_bare(settings).throughput_ips, rounds)
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
