"""``benchmarks/gate.py``'s interleaved mode on scripted runs (no timing): the trees are
run in ABBA order, the candidate's own arguments reach only its runs, a benchmark slower in
every round fails, an unchanged one passes, a noisy one stays undecided after the most
rounds, usage errors exit 2."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_gate_i", ROOT / "benchmarks" / "gate.py")
gate_mod = importlib.util.module_from_spec(_spec)
sys.modules["bench_gate_i"] = gate_mod
_spec.loader.exec_module(gate_mod)

A = "benchmarks/test_bench_micro.py::test_bench_decode_scrfd_ref"
B = "benchmarks/test_bench_micro.py::test_bench_nms[cython-crowded]"


class Trees:
    """Stand-in for pytest in two trees: the baseline's times 1.0 (A) and 2.0 (B) times a
    seeded noise, the candidate's times ``slow[name]`` as much."""

    def __init__(self, baseline: Path, slow: dict[str, float], noise: float = 0.005) -> None:
        self.baseline, self.slow, self.noise = baseline, slow, noise
        self.calls: list[tuple[str, list[str]]] = []
        self.rng = np.random.default_rng(0)

    def __call__(self, tree: Path, args, json_path: Path) -> int:
        side = "A" if tree == self.baseline else "B"
        self.calls.append((side, list(args)))
        values = {A: 1.0, B: 2.0}
        rows = [{"fullname": k, "stats": {"min": v * (self.slow.get(k, 1.0) if side == "B"
                                                       else 1.0)
                                          * (1 + self.noise * self.rng.standard_normal())}}
                for k, v in values.items()]
        json_path.write_text(json.dumps({"benchmarks": rows}))
        return 0


def test_abba_order_and_verdicts(tmp_path):
    trees = Trees(tmp_path, {A: 1.20})
    verdicts = gate_mod.interleaved(tmp_path, ["benchmarks/x.py"], "min", 0.03, rounds=10,
                                    candidate_args=["--bench-slowdown=x=1"], runner=trees)
    sides = "".join(s for s, _ in trees.calls)
    assert sides.startswith("ABBAABBAAB")
    assert all(("--bench-slowdown=x=1" in a) == (s == "B") for s, a in trees.calls)
    assert verdicts[A].verdict == "fail" and abs(verdicts[A].ratio - 1.2) < 0.02
    assert verdicts[B].verdict == "pass"
    assert verdicts[A].rounds == gate_mod.FIRST_LOOK  # decided at the first look


def test_noise_beyond_the_threshold_stays_undecided_after_the_most_rounds(tmp_path):
    trees = Trees(tmp_path, {A: 1.03}, noise=0.05)
    verdicts = gate_mod.interleaved(tmp_path, [], "min", 0.03, rounds=8, runner=trees)
    assert verdicts[A].verdict == "inconclusive" and verdicts[A].rounds == 8
    assert len(trees.calls) == 2 * 9  # 8 judged rounds and the warm-up


@pytest.mark.parametrize("argv, message", [
    (["--baseline", "0001", "--baseline-dir", "."], "give one of --baseline"),
    (["--baseline-dir", "/nonexistent/tree"], "no benchmarks/ folder there"),
    (["--baseline-dir", ".", "--threshold", "3"], "expected a percentage"),
    (["--baseline-dir", ".", "--rounds", "2"], "--rounds 2: at least"),
    (["--baseline-rev", "no-such-rev-xyz"], "--baseline-rev no-such-rev-xyz: git worktree"),
])
def test_usage_errors_exit_2(argv, message, capsys):
    assert gate_mod.main([*argv, "--", "benchmarks/test_bench_micro.py"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
