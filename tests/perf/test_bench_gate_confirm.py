"""``benchmarks/gate.py``: the confirmation logic on scripted runs (no timing), so its
verdicts are checked exactly: a one-off slow run passes after a re-run that names only the
slow benchmark, a slowdown present in every run fails, usage errors exit 2."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_gate", ROOT / "benchmarks" / "gate.py")
gate_mod = importlib.util.module_from_spec(_spec)
sys.modules["bench_gate"] = gate_mod        # dataclasses look their module up there
_spec.loader.exec_module(gate_mod)

A = "benchmarks/test_bench_micro.py::test_bench_decode_scrfd_ref"
B = "benchmarks/test_bench_micro.py::test_bench_nms[cython-crowded]"
BASE = {A: 1.0, B: 2.0}


def _write(path: Path, values: dict[str, float]) -> None:
    path.write_text(json.dumps({"benchmarks": [
        {"fullname": k, "stats": {"min": v, "median": 2 * v}} for k, v in values.items()]}))


class Scripted:
    """A pytest stand-in: run ``i`` writes ``runs[i]`` (restricted to ``--bench-only``)."""

    def __init__(self, *runs: dict[str, float]) -> None:
        self.runs, self.calls = list(runs), []

    def __call__(self, args, json_path: Path) -> int:
        self.calls.append(list(args))
        values = self.runs[len(self.calls) - 1]
        only = [a.split("=", 1)[1].split(",") for a in args if a.startswith("--bench-only=")]
        if only:
            values = {k: v for k, v in values.items() if k in only[0]}
        _write(json_path, values)
        return 0


def test_a_one_off_slow_run_is_re_measured_and_passes():
    runner = Scripted({A: 1.3, B: 2.1}, {A: 1.05, B: 9.9})
    verdicts = gate_mod.gate(BASE, ["bench.py", "-k", "not insightface"], "min", 0.15, 2, runner)
    assert len(runner.calls) == 2
    assert runner.calls[1] == ["bench.py", "-k", "not insightface", f"--bench-only={A}"]
    by_name = {v.name: v for v in verdicts}
    assert by_name[A].values == [1.3, 1.05] and by_name[A].change() == pytest.approx(0.05)
    assert by_name[B].values == [2.1]          # not re-run: its first run was inside the limit


def test_a_slowdown_in_every_run_fails_after_the_confirmations():
    runner = Scripted({A: 1.25, B: 2.0}, {A: 1.22}, {A: 1.3})
    verdicts = gate_mod.gate(BASE, ["bench.py"], "min", 0.15, 2, runner)
    assert len(runner.calls) == 3
    a = next(v for v in verdicts if v.name == A)
    assert a.best == 1.22 and a.change() > 0.15


def test_main_exit_codes_and_lines(tmp_path, monkeypatch, capsys):
    storage = tmp_path / ".benchmarks"
    (storage / "Linux-CPython").mkdir(parents=True)
    _write(storage / "Linux-CPython" / "0001_base.json", BASE)
    monkeypatch.setattr(gate_mod, "run_pytest", Scripted({A: 1.0, B: 2.0}))
    assert gate_mod.main(["--storage", str(storage), "--baseline", "0001", "x.py"]) == 0
    assert "gate: passed (2 benchmarks)" in capsys.readouterr().out
    monkeypatch.setattr(gate_mod, "run_pytest",
                        Scripted({A: 2.0, B: 2.0}, {A: 2.0}, {A: 2.1}))
    assert gate_mod.main(["--storage", str(storage), "--baseline", "0001", "--pause", "0",
                          "x.py"]) == 1
    out = capsys.readouterr().out
    assert f"REGRESSED {A}: min 1 -> 2 s (+100.0%, best of 3 runs; limit +15%)" in out
    assert "gate: 1 of 2 benchmarks regressed" in out


@pytest.mark.parametrize("argv, message", [
    (["--baseline", "0009", "x.py"], "--baseline '0009': no file matches"),
    (["--baseline", "0001", "--fail", "p99:5%", "x.py"], "--fail 'p99:5%': expected STAT:PCT%"),
    (["--baseline", "0001", "--fail", "min:-5%", "x.py"], "the percentage must be positive"),
    (["--baseline", "0001", "--confirm", "-1", "x.py"], "--confirm must be 0 or more"),
    (["--baseline", "0001", "--pause", "-3", "x.py"], "--pause must be 0 or more seconds"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    storage = tmp_path / ".benchmarks"
    (storage / "m").mkdir(parents=True)
    _write(storage / "m" / "0001_base.json", BASE)
    assert gate_mod.main(["--storage", str(storage), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gate: ") and message in err[0]


def test_a_benchmark_missing_from_the_baseline_is_a_usage_error():
    with pytest.raises(gate_mod.GateUsageError, match="not in the baseline"):
        gate_mod.gate({A: 1.0}, ["x.py"], "min", 0.15, 1, Scripted({A: 1.0, B: 2.0}))


def test_a_failing_pytest_run_or_a_broken_baseline_is_one_line_and_exit_2(tmp_path, monkeypatch,
                                                                           capsys):
    storage = tmp_path / ".benchmarks"
    (storage / "m").mkdir(parents=True)
    (storage / "m" / "0001_base.json").write_text("{not json")
    assert gate_mod.main(["--storage", str(storage), "--baseline", "0001", "x.py"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0001_base.json: not a pytest-benchmark JSON file" in err[0]
    _write(storage / "m" / "0001_base.json", BASE)
    monkeypatch.setattr(gate_mod, "run_pytest", lambda args, out: 4)
    assert gate_mod.main(["--storage", str(storage), "--baseline", "0001", "x.py"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == "gate: pytest x.py exited 4; fix the run first"


def test_bench_only_refuses_a_node_id_that_names_no_test():
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_bench_micro.py"),
         "-q", "-p", "no:cacheprovider", "--benchmark-disable", "--co",
         "--bench-only=benchmarks/test_bench_micro.py::test_no_such_benchmark"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 4, done.stdout[-2000:] + done.stderr[-2000:]
    assert ("--bench-only: no collected test is "
            "benchmarks/test_bench_micro.py::test_no_such_benchmark") in done.stderr
    assert "Traceback" not in done.stderr
