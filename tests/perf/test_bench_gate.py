"""The benchmark regression gate can pass and can fail: save / compare cycles of
``benchmarks/test_bench_micro.py`` (the decode stage) in a temporary storage folder, with
the settings of ``benchmarks/conftest.py`` (4 s windows, rounds, warm-up): the unchanged
tree passes ``--benchmark-compare-fail``, a stage slowed 2x (``--bench-slowdown``) fails
it and is named; the same through ``benchmarks/gate.py``, which re-measures what looks
slower before failing. (The 20% / five-compares measurement is in the README's recipe; at
2x the verdict does not depend on this machine's noise.)"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.acceptance, pytest.mark.timing]

ROOT = Path(__file__).resolve().parents[2]
STAGES = "decode_scrfd_ref"
FAIL = "min:50%"


def _pytest(storage: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_bench_micro.py"),
         "-q", "-p", "no:cacheprovider", "-k", STAGES, f"--benchmark-storage={storage}",
         *extra], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_unchanged_passes_and_a_stage_slowed_2x_fails(tmp_path, data_root, need):
    need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    storage = tmp_path / "benchmarks"
    saved = _pytest(storage, "--benchmark-save=baseline")
    assert saved.returncode == 0, saved.stdout[-3000:] + saved.stderr[-3000:]
    assert len(list(storage.rglob("*_baseline.json"))) == 1
    same = _pytest(storage, "--benchmark-compare=0001", f"--benchmark-compare-fail={FAIL}")
    assert same.returncode == 0, same.stdout[-3000:] + same.stderr[-3000:]
    slow = _pytest(storage, "--benchmark-compare=0001", f"--benchmark-compare-fail={FAIL}",
                   "--bench-slowdown=decode_scrfd_ref=2")
    said = slow.stdout + slow.stderr
    assert slow.returncode != 0, said[-3000:]
    assert "Performance has regressed" in said
    regressed = [line for line in said.splitlines() if "PercentageRegressionCheck" in line]
    assert regressed and all("decode_scrfd_ref" in line for line in regressed), regressed


def test_gate_script_passes_the_unchanged_tree_and_confirms_a_2x_slowdown(tmp_path, data_root,
                                                                           need):
    """``benchmarks/gate.py`` (compare + re-measure what looks slower): exit 0 on the
    unchanged tree, exit 1 naming the decode stage slowed 2x after its re-runs."""
    need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    storage = tmp_path / "benchmarks"
    saved = _pytest(storage, "--benchmark-save=baseline")
    assert saved.returncode == 0, saved.stdout[-3000:] + saved.stderr[-3000:]

    def gate(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "gate.py"), "--storage", str(storage),
             "--baseline", "0001", "--fail", FAIL, "--confirm", "1", "--pause", "1", "--",
             str(ROOT / "benchmarks" / "test_bench_micro.py"), "-q", "-p", "no:cacheprovider",
             "-k", STAGES, *extra], cwd=ROOT, capture_output=True, text=True, timeout=900)

    same = gate()
    assert same.returncode == 0, same.stdout[-3000:] + same.stderr[-3000:]
    assert "gate: passed (1 benchmark)" in same.stdout
    slow = gate("--bench-slowdown=decode_scrfd_ref=2")
    assert slow.returncode == 1, slow.stdout[-3000:] + slow.stderr[-3000:]
    assert "REGRESSED benchmarks/test_bench_micro.py::test_bench_decode_scrfd_ref" in slow.stdout
    assert "best of 2 runs" in slow.stdout
