"""The vamp-style perf runner: arithmetic, processes, instances, batch, modes, CLI."""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import scrfd_ref.cli.app as cli_mod
from scrfd_ref import backends as backends_mod
from scrfd_ref.backends import Backend
from scrfd_ref.cli.perf import parse_shape, register
from scrfd_ref.core.errors import InputError, ScrfdRefError
from scrfd_ref.perf import (
    PerfSettings,
    compare_with_bare,
    format_summary,
    latency_stats,
    run_bare,
    run_perf,
    throughput,
)

DYNAMIC = "scrfd_500m_bnkps_dynamic.onnx"
CONTRACT_KEYS = {"throughput_ips", "latency_ms", "settings", "versions", "calls", "wall_s",
                 "pids", "instances"}


# ----------------------------------------------------------------------------- arithmetic

def test_percentiles_by_linear_interpolation_between_closest_ranks():
    stats = latency_stats([float(v) for v in range(1, 11)])  # 1, 2, ..., 10 ms
    # mean = 55 / 10 = 5.5
    assert stats["mean"] == pytest.approx(5.5)
    # rank of the q-th percentile = (n - 1) * q / 100 on the sorted values, 0-based
    # p50: rank 9 * 0.50 = 4.5  -> x[4] + 0.5 * (x[5] - x[4]) = 5 + 0.5 * 1 = 5.5
    assert stats["p50"] == pytest.approx(5.5)
    # p90: rank 9 * 0.90 = 8.1  -> x[8] + 0.1 * (x[9] - x[8]) = 9 + 0.1 = 9.1
    assert stats["p90"] == pytest.approx(9.1)
    # p95: rank 9 * 0.95 = 8.55 -> 9 + 0.55 = 9.55
    assert stats["p95"] == pytest.approx(9.55)
    # p99: rank 9 * 0.99 = 8.91 -> 9 + 0.91 = 9.91
    assert stats["p99"] == pytest.approx(9.91)
    assert (stats["min"], stats["max"]) == (1.0, 10.0)


def test_percentiles_ignore_input_order_and_handle_one_value():
    # [4, 1, 3, 2] sorted is 1, 2, 3, 4; p50 rank 3 * 0.5 = 1.5 -> 2 + 0.5 * 1 = 2.5;
    # p90 rank 3 * 0.9 = 2.7 -> 3 + 0.7 * 1 = 3.7
    stats = latency_stats([4.0, 1.0, 3.0, 2.0])
    assert stats["p50"] == pytest.approx(2.5) and stats["p90"] == pytest.approx(3.7)
    one = latency_stats([7.25])
    assert all(one[k] == 7.25 for k in ("mean", "p50", "p90", "p95", "p99"))


def test_latency_stats_without_calls_is_an_input_error():
    with pytest.raises(InputError):
        latency_stats([])


def test_throughput_is_batch_times_calls_over_wall_time():
    # 8 images per call x 100 calls / 4 s = 800 / 4 = 200 images/s
    assert throughput(8, 100, 4.0) == pytest.approx(200.0)
    # 1 x 3 / 0.5 = 6
    assert throughput(1, 3, 0.5) == pytest.approx(6.0)
    with pytest.raises(InputError):
        throughput(1, 10, 0.0)


def test_settings_validation():
    assert PerfSettings("m.onnx").iterations == 50  # the default when no duration
    assert PerfSettings("m.onnx", duration_s=1.0).iterations is None
    for bad in ({"instances": 0}, {"batch": -1}, {"iterations": 3, "duration_s": 1.0},
                {"shape": (3, 640)}, {"serial": True}, {"duration_s": 0.0}, {"warmup": -1}):
        with pytest.raises(InputError):
            PerfSettings("m.onnx", **bad)
    assert parse_shape("[3,640,640]") == parse_shape("3x640x640") == (3, 640, 640)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_shape("3,640")


# ----------------------------------------------------------------------------- fake backend

class SleepyBackend(Backend):
    """Records every blob shape and call interval; sleeps like a device call."""

    name = "sleepy"
    shapes: list[tuple[int, ...]] = []
    calls: list[tuple[int, int, int]] = []  # (thread id, start ns, end ns)
    lock = threading.Lock()

    def __init__(self, model: Any, sleep_s: float = 0.01, fail: bool = False, **_: Any) -> None:
        self.sleep_s, self.fail = sleep_s, fail

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        if self.fail:
            raise InputError("sleepy backend was told to fail")
        start = time.perf_counter_ns()
        time.sleep(self.sleep_s)
        with self.lock:
            self.shapes.append(tuple(blob.shape))
            self.calls.append((threading.get_native_id(), start, time.perf_counter_ns()))
        return [np.zeros((blob.shape[0], 1), np.float32)]

    def info(self) -> dict[str, Any]:
        return {"backend": self.name}


class HeadsSleepyBackend(SleepyBackend):
    """Sleeps, then returns all-zero SCRFD heads (standard layout): nothing to detect."""

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        time.sleep(self.sleep_s)
        b, _, h, w = blob.shape
        return [np.zeros((b, (h // s) * (w // s) * 2, c), np.float32)
                for c in (1, 4, 10) for s in (8, 16, 32)]


@pytest.fixture
def sleepy(monkeypatch):
    """Register the fake backend as ``sleepy`` (in this process only) and reset its log."""
    monkeypatch.setitem(backends_mod._BUILTIN, "sleepy", SleepyBackend)
    SleepyBackend.shapes, SleepyBackend.calls = [], []
    return SleepyBackend


def test_batch_b_sends_b_images_per_call(sleepy):
    result = run_perf(PerfSettings("fake", backend="sleepy", batch=5, shape=(3, 64, 96),
                                   iterations=4, warmup=2,
                                   backend_options={"sleep_s": 0.001}))
    assert sleepy.shapes == [(5, 3, 64, 96)] * 6  # 2 warm-up + 4 measured calls
    assert result.calls == 4
    assert result.throughput_ips == pytest.approx(5 * 4 / result.wall_s)
    assert result.instances[0]["warmup_calls"] == 2


def test_three_instances_run_concurrently(sleepy):
    result = run_perf(PerfSettings("fake", backend="sleepy", instances=3, iterations=4,
                                   warmup=1, shape=(3, 32, 32), record_calls=True,
                                   backend_options={"sleep_s": 0.03}))
    tids = {rec["thread_id"] for rec in result.instances}
    assert len(tids) == 3 and result.calls == 12
    assert {t for t, _, _ in sleepy.calls} == tids
    intervals = [(rec["thread_id"], s, e) for rec in result.instances
                 for s, e in rec["call_times_ns"]]
    overlapping = {frozenset((a[0], b[0])) for a in intervals for b in intervals
                   if a[0] != b[0] and a[1] < b[2] and b[1] < a[2]}
    assert len(overlapping) == 3, "every pair of instances should have overlapping calls"
    # concurrent: 4 calls of 30 ms per instance take ~120 ms, not 3 x 120 ms
    assert result.wall_s < 0.3
    assert all(s >= 0 for _, s, _ in intervals), "measured calls start after the barrier"


def test_duration_mode_stops_near_the_duration(sleepy):
    result = run_perf(PerfSettings("fake", backend="sleepy", instances=2, duration_s=0.4,
                                   warmup=1, shape=(3, 32, 32),
                                   backend_options={"sleep_s": 0.01}))
    # the last call starts before 0.4 s and lasts ~10 ms
    assert 0.4 <= result.wall_s < 0.55
    assert 20 <= result.calls <= 80
    assert result.settings["iterations"] is None and result.settings["duration_s"] == 0.4


def test_pipelined_executor_overlaps_pre_infer_and_post(monkeypatch):
    """With a 25 ms pre-processing step and a 25 ms inference (both sleeping, so the test
    does not depend on free cores), the serial executor needs ~50 ms a call and the
    pipelined one ~25 ms."""
    import scrfd_ref.core.preprocess as pre_mod

    real_preprocess = pre_mod.preprocess

    def slow_preprocess(images, profile):
        time.sleep(0.025)
        return real_preprocess(images, profile)

    monkeypatch.setattr(pre_mod, "preprocess", slow_preprocess)
    monkeypatch.setitem(backends_mod._BUILTIN, "heads-sleepy", HeadsSleepyBackend)
    images = np.zeros((1, 48, 64, 3), np.uint8)
    monkeypatch.setattr("scrfd_ref.perf.pipeline.pipeline_images", lambda settings: list(images))
    ips = {}
    for serial in (True, False):
        result = run_perf(PerfSettings("fake", backend="heads-sleepy", pipeline=True,
                                       serial=serial, iterations=10, warmup=1,
                                       shape=(3, 64, 64), backend_options={"sleep_s": 0.025}))
        assert result.calls == 10 and result.detections == 0
        assert result.stages_ms["pre"] >= 25 and result.stages_ms["infer"] >= 25
        ips[serial] = result.throughput_ips
    # serial: 10 x 50 ms = 0.5 s; pipelined: ~25 ms + 10 x 25 ms = 0.275 s (1.8x)
    assert ips[False] > 1.4 * ips[True]


def test_a_failing_instance_raises_instead_of_hanging(sleepy):
    with pytest.raises(InputError, match="told to fail"):
        run_perf(PerfSettings("fake", backend="sleepy", instances=2, iterations=2,
                              backend_options={"fail": True}))


def test_unknown_backend_is_an_input_error():
    with pytest.raises(ScrfdRefError, match="unknown backend"):
        run_perf(PerfSettings("fake", backend="no-such-backend", iterations=1))


# ----------------------------------------------------------------------------- real model

@pytest.fixture(scope="module")
def dynamic_model(data_root, need) -> Path:
    return need(data_root / "models" / DYNAMIC, "model file")


@pytest.mark.data
def test_two_processes_really_run(dynamic_model):
    result = run_perf(PerfSettings(dynamic_model, processes=2, instances=2, iterations=2,
                                   warmup=1, shape=(3, 32, 32), threads=1))
    assert len(result.pids) == 2 and os.getpid() not in result.pids
    assert sorted({rec["pid"] for rec in result.instances}) == result.pids
    assert len(result.instances) == 4 and result.calls == 8
    # each process built its own sessions: 4 distinct (pid, thread) instances
    assert len({(rec["pid"], rec["thread_id"]) for rec in result.instances}) == 4


@pytest.mark.data
def test_a_failing_child_process_is_reported(tmp_path):
    with pytest.raises(ScrfdRefError, match="not found"):
        run_perf(PerfSettings(tmp_path / "missing.onnx", processes=2, iterations=1))


@pytest.mark.data
def test_pipeline_mode_splits_stages_and_detects(dynamic_model, data_root, need):
    image = need(data_root / "images" / "one_face_1280x720.jpg", "sample image")
    for serial in (False, True):
        result = run_perf(PerfSettings(dynamic_model, pipeline=True, serial=serial, batch=2,
                                       iterations=3, warmup=1, shape=(3, 320, 320),
                                       threads=1, images=(str(image),)))
        assert result.mode == ("serial" if serial else "pipelined")
        assert set(result.stages_ms) == {"pre", "infer", "post"}
        assert all(v > 0 for v in result.stages_ms.values())
        assert result.detections >= 6  # the face in each of 2 x 3 images
        assert result.calls == 3
        if not serial:
            assert len(result.instances[0]["worker_thread_ids"]) == 2
        assert "stages ms" in format_summary(result)


@pytest.mark.data
def test_bare_loop_mirrors_the_settings(dynamic_model):
    result = run_bare(PerfSettings(dynamic_model, instances=2, batch=2, iterations=3,
                                   warmup=1, shape=(3, 64, 64), threads=1))
    assert result.mode == "bare" and result.calls == 6
    assert result.backend["backend"] == "bare-onnxruntime"
    assert len({rec["thread_id"] for rec in result.instances}) == 2
    with pytest.raises(InputError):
        run_bare(PerfSettings(dynamic_model, pipeline=True))


@pytest.mark.data
def test_compare_with_bare_alternates_and_reports_overhead(dynamic_model):
    cmp = compare_with_bare(PerfSettings(dynamic_model, iterations=5, warmup=1,
                                         shape=(3, 32, 32), threads=1), rounds=2)
    assert len(cmp["harness_ips"]) == len(cmp["bare_ips"]) == 2
    ratios = sorted(h / b for h, b in zip(cmp["harness_ips"], cmp["bare_ips"]))
    assert cmp["overhead_pct"] == pytest.approx(100 * (1 - (ratios[0] + ratios[1]) / 2))


# ----------------------------------------------------------------------------- CLI

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=None)
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_every_perf_option_is_explained():
    sub = _parser()._subparsers._group_actions[0].choices["perf"]
    assert sub.description
    for action in sub._actions:
        if action.dest != "help":
            assert action.help and len(action.help) > 10, action.option_strings


@pytest.mark.data
@pytest.mark.parametrize("bare", [False, True])
def test_cli_json_contract(tmp_path, data_root, dynamic_model, bare, capsys):
    target = tmp_path / "perf.json"
    args = _parser().parse_args(
        ["--data-dir", str(data_root), "perf", "--model", str(dynamic_model), "-i", "2",
         "-p", "1", "-b", "2", "-s", "3,64,64", "-n", "3", "-w", "1", "--threads", "1",
         "--json", str(target)] + (["--bare"] if bare else []))
    assert args.func(args) == 0
    doc = json.loads(target.read_text())
    assert CONTRACT_KEYS <= set(doc)
    assert set(doc["latency_ms"]) >= {"mean", "p50", "p90", "p95", "p99"}
    assert set(doc["versions"]) >= {"python", "numpy", "onnxruntime", "opencv", "scrfd_ref"}
    assert doc["settings"]["batch"] == 2 and doc["settings"]["shape"] == [3, 64, 64]
    assert doc["settings"]["instances"] == 2 and doc["calls"] == 6
    assert doc["mode"] == ("bare" if bare else "bench")
    assert doc["throughput_ips"] == pytest.approx(2 * 6 / doc["wall_s"])
    out = capsys.readouterr().out
    assert "images/s" in out and "p99" in out and "onnxruntime" in out


def test_cli_errors_are_one_line_exit_2(capsys):
    assert "scrfd_ref.cli.perf" in cli_mod.COMMAND_MODULES
    assert cli_mod.main(["perf", "--serial", "-m", "nonexistent.onnx"]) == 2
    assert cli_mod.main(["perf", "-m", "nonexistent.onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("scrfd-ref perf: error:") for line in err)
