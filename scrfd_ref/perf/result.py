"""Perf results: :class:`PerfResult` (the JSON contract), the assembly of the process
reports into one result, and the text summary (:func:`format_summary`)."""
from __future__ import annotations

import dataclasses
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scrfd_ref.perf.settings import PerfError, PerfSettings
from scrfd_ref.perf.statistics import (
    PERCENTILE_METHOD,
    WINDOW_DEFINITION,
    latency_stats,
    throughput,
)


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
        kept: the compliance sample, ``(blob index, outputs)`` of timed calls
            (``PerfSettings.keep_outputs``); not in the JSON (only its count).
        compliance: the compliance checks' results when they were run (set by
            :func:`scrfd_ref.conformance.perf_compliance.check_timed_run`).
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
    kept: list[tuple[int, list[np.ndarray]]] = dataclasses.field(default_factory=list,
                                                                  repr=False)
    compliance: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the definitions of the window and the percentiles."""
        d = dataclasses.asdict(dataclasses.replace(self, kept=[]))
        del d["kept"]
        d["kept_outputs"] = len(self.kept)
        if self.compliance is None:
            del d["compliance"]
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
    from scrfd_ref import __version__

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
    kept = [pair for rec in records for pair in rec.pop("kept", [])]
    for rec in records:
        _relative_to(rec, t0)
    result = PerfResult(
        mode=mode, throughput_ips=throughput(settings.batch, calls, wall_s),
        latency_ms=latency_stats(latencies),
        settings={**settings.to_dict(), "mode": mode, "model_file": model_file},
        versions=library_versions(), calls=calls, wall_s=wall_s,
        pids=sorted({r["pid"] for r in reports}), instances=records,
        backend=reports[0]["backend"], kept=kept)
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
        f"{s['dtype']} {','.join(backend.get('providers', [])) or ''}".rstrip()
        + (f" ({backend['library']} {backend.get('version', '')}, inference precision "
           f"{backend['inference_precision']}, CPU {backend.get('cpu', '?')})"
           if backend.get("inference_precision") else ""),
        f"mode        : {_MODE_TEXT[result.mode]}" + (
            f" -> real images (the pipeline images, preprocessed); {len(result.kept)} calls' "
            "outputs kept for the compliance checks" if s.get("keep_outputs") else ""),
        f"instances   : {s['instances']} x processes {s['processes']}, batch {s['batch']}, "
        f"shape {'x'.join(map(str, s['shape']))}, intra-op threads "
        f"{s['threads'] if s['threads'] else 'the runtime default'}",
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
