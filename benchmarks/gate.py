"""Performance gate with confirmation: compare a benchmark run with a saved baseline, and
re-measure what looks slower before calling it a regression.

    python benchmarks/gate.py --baseline 0001 --fail min:15% -- benchmarks/test_bench_micro.py -k "not insightface"

1. runs ``pytest <args> --benchmark-json`` once (storage ``--storage``, default
   ``.benchmarks``; the baseline is the one file ``<storage>/*/<baseline>*.json``);
2. every benchmark whose ``--fail`` statistic is more than the allowed percentage above
   the baseline's is run again (the same arguments plus ``--bench-only NODE_IDS``, an
   option of ``benchmarks/conftest.py``) after ``--pause`` seconds idle, up to
   ``--confirm`` times (default 2); its verdict uses the best (lowest) value of all its runs;
3. prints one line per benchmark (baseline, best, change, runs) and exits **1** when a
   benchmark stays above the limit in every run, **0** when none does, **2** on a usage
   error (no baseline, a benchmark missing from the baseline, a bad ``--fail``).

**Interleaved mode** (``--baseline-dir DIR`` or ``--baseline-rev REV``): the baseline is
not a saved file but another tree, timed in the same session: round ``i`` runs ``pytest
<args> --benchmark-json`` in the baseline tree and in this one, in the order ABBA ABBA
(:func:`scrfd_ref.perf.rounds.interleave`), one warm-up round dropped; per benchmark the
round's ``--fail`` statistic of each side gives a time ratio per round, and
:func:`scrfd_ref.perf.verdict.judge_rounds` its bootstrap interval and verdict against
``--threshold``: **pass**, **fail** (exit 1) or **inconclusive** (exit 1 unless
``--accept-inconclusive``, saying how many more rounds would decide). First 4 rounds judged,
then 2 more at a time while a benchmark is inconclusive, up to ``--rounds``.
``--baseline-rev REV`` makes the tree itself: ``git worktree add --detach`` of ``REV`` in a
temporary folder, its Cython kernels built in place, removed afterwards.
``--candidate-arg ARG`` (repeatable) is passed to this tree's runs only (e.g.
``--bench-slowdown decode=1.05`` to see the gate fire).

    python benchmarks/gate.py --baseline-rev main --threshold 3% -- benchmarks/test_bench_micro.py -k "not insightface"

Why: this shared 2-core machine has slow spells of several seconds that slow some kinds of
work by 20-70% and others not at all (README, "Performance regression gate"). One compare
against a stored baseline then fails now and then on an unchanged tree, each time on a
different benchmark; a real slowdown is there in every run. Re-measuring only the
benchmarks that failed keeps the gate's cost near one run.
"""
from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

STATISTICS = ("min", "max", "mean", "median")


class GateUsageError(Exception):
    """A usage error: one line for stderr, exit 2."""


@dataclass
class Verdict:
    """One benchmark's baseline value, the values of its runs and the allowed change."""

    name: str
    baseline: float
    values: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        """The lowest value over the runs."""
        return min(self.values)

    def change(self) -> float:
        """Best value over baseline, minus 1 (0.2 = 20% slower)."""
        return self.best / self.baseline - 1.0


def parse_fail(spec: str) -> tuple[str, float]:
    """``min:15%`` -> ``("min", 0.15)``."""
    stat, _, pct = spec.partition(":")
    if stat not in STATISTICS or not pct.endswith("%"):
        raise GateUsageError(f"--fail {spec!r}: expected STAT:PCT% with STAT one of "
                             f"{', '.join(STATISTICS)}, e.g. min:15%")
    try:
        limit = float(pct[:-1]) / 100.0
    except ValueError:
        raise GateUsageError(f"--fail {spec!r}: {pct!r} is not a percentage") from None
    if limit <= 0:
        raise GateUsageError(f"--fail {spec!r}: the percentage must be positive")
    return stat, limit


def find_baseline(storage: Path, baseline: str) -> Path:
    """The one file ``<storage>/*/<baseline>*.json``."""
    found = sorted(storage.glob(f"*/{baseline}*.json"))
    if len(found) != 1:
        what = "no file" if not found else f"{len(found)} files ({', '.join(f.name for f in found)})"
        raise GateUsageError(f"--baseline {baseline!r}: {what} matches {storage}/*/{baseline}*.json;"
                             " save one with pytest --benchmark-save=NAME or name it exactly")
    return found[0]


def read_stats(path: Path, stat: str) -> dict[str, float]:
    """``{node id: stats[stat]}`` of a pytest-benchmark JSON file."""
    try:
        data = json.loads(path.read_text())
        return {b["fullname"]: float(b["stats"][stat]) for b in data["benchmarks"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GateUsageError(f"{path}: not a pytest-benchmark JSON file ({exc})") from None


def run_pytest(args: Sequence[str], json_path: Path) -> int:
    """``python -m pytest ARGS --benchmark-json=JSON``; its exit code."""
    cmd = [sys.executable, "-m", "pytest", *args, f"--benchmark-json={json_path}"]
    return subprocess.run(cmd).returncode


def gate(baseline: dict[str, float], pytest_args: Sequence[str], stat: str, limit: float,
         confirm: int, runner: Callable[[Sequence[str], Path], int] | None = None,
         pause_s: float = 0.0) -> list[Verdict]:
    """Run, then re-run the benchmarks above ``limit`` up to ``confirm`` times, each
    re-run after ``pause_s`` seconds idle (so it does not fall into the same slow spell);
    one :class:`Verdict` per benchmark of the first run.

    Raises:
        GateUsageError: pytest failed, or a benchmark has no baseline value.
    """
    runner = runner or run_pytest
    verdicts: dict[str, Verdict] = {}
    todo: list[str] | None = None
    with tempfile.TemporaryDirectory(prefix="scrfd-gate-") as tmp:
        for attempt in range(confirm + 1):
            out = Path(tmp) / f"run{attempt}.json"
            if todo is not None:
                time.sleep(pause_s)
            args = [*pytest_args, *([] if todo is None else [f"--bench-only={','.join(todo)}"])]
            code = runner(args, out)
            if code != 0 or not out.is_file():
                raise GateUsageError(f"pytest {' '.join(args)} exited {code}; fix the run first")
            for name, value in read_stats(out, stat).items():
                if name not in baseline:
                    raise GateUsageError(f"{name}: not in the baseline; save a new baseline")
                verdicts.setdefault(name, Verdict(name, baseline[name])).values.append(value)
            todo = [v.name for v in verdicts.values() if v.change() > limit]
            if not todo:
                break
    return list(verdicts.values())


# ----------------------------------------------------------------------------- interleaved

#: rounds judged at the first look of the interleaved mode (after the warm-up round)
FIRST_LOOK = 4


def parse_threshold(text: str) -> float:
    """``3%`` -> ``0.03``."""
    try:
        value = float(text.rstrip("%")) / 100.0
    except ValueError:
        value = -1.0
    if not (text.endswith("%") and 0 <= value < 1):
        raise GateUsageError(f"--threshold {text!r}: expected a percentage from 0% to 100%, "
                             "e.g. 3%")
    return value


def run_pytest_in(tree: Path, args: Sequence[str], json_path: Path) -> int:
    """``python -m pytest ARGS --benchmark-json`` with ``tree`` as the working directory
    and first on ``PYTHONPATH`` (its own ``scrfd_ref``); the exit code."""
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, "-m", "pytest", *args, f"--benchmark-json={json_path}"]
    r = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write((r.stdout + r.stderr)[-3000:])
    return r.returncode


def interleaved(baseline_tree: Path, pytest_args: Sequence[str], stat: str, threshold: float,
                rounds: int, candidate_args: Sequence[str] = (),
                runner: Callable[[Path, Sequence[str], Path], int] | None = None,
                ) -> dict[str, object]:
    """Time the baseline tree and this one interleaved; ``{benchmark: PerfVerdict}``.

    Raises:
        GateUsageError: a pytest run failed; the two trees' benchmarks differ.
    """
    from scrfd_ref.perf.rounds import interleave
    from scrfd_ref.perf.verdict import judge_rounds

    runner = runner or run_pytest_in
    here = Path.cwd()
    runs: dict[str, list[dict[str, float]]] = {"baseline": [], "here": []}
    files = itertools.count()
    with tempfile.TemporaryDirectory(prefix="scrfd-gate-") as tmp:
        def side(label: str, tree: Path, extra: Sequence[str]) -> dict[str, float]:
            out = Path(tmp) / f"{label}{next(files)}.json"   # never an earlier run's file
            args = [*pytest_args, *extra]
            code = runner(tree, args, out)
            if code != 0 or not out.is_file():
                raise GateUsageError(f"pytest {' '.join(args)} in {tree} exited {code}; fix "
                                     "the run first")
            return read_stats(out, stat)

        def more(n: int) -> None:
            """``n`` more rounds in the ABBA order of :func:`interleave`."""
            done = iter(range(len(runs["baseline"]) + 1, len(runs["baseline"]) + n + 1))
            a, b = interleave(lambda: side("baseline", baseline_tree, ()),
                              lambda: side("here", here, tuple(candidate_args)), n,
                              start=len(runs["baseline"]),
                              on_round=lambda: print(f"gate: round {next(done)} of at most "
                                                     f"{rounds + 1} done", file=sys.stderr,
                                                     flush=True))
            for base, cand in zip(a, b):
                if set(base) != set(cand):
                    raise GateUsageError(f"the trees run different benchmarks: only in the "
                                         f"baseline {sorted(set(base) - set(cand))}, only "
                                         f"here {sorted(set(cand) - set(base))}")
            runs["baseline"] += a
            runs["here"] += b

        more(1 + FIRST_LOOK)   # the warm-up round and the first look
        while True:
            verdicts = {name: judge_rounds([r[name] for r in runs["baseline"]],
                                           [r[name] for r in runs["here"]],
                                           threshold=threshold, warmup=1)
                        for name in runs["baseline"][0]}
            judged = len(runs["baseline"]) - 1
            if judged >= rounds or all(v.verdict != "inconclusive" for v in verdicts.values()):
                return verdicts
            more(min(2, rounds - judged))


def baseline_worktree(rev: str, where: Path) -> Path:
    """``git worktree add --detach WHERE REV`` and its Cython kernels built in place."""
    tree = where / "baseline"
    for cmd, cwd in ((["git", "worktree", "add", "-q", "--detach", str(tree), rev], None),
                     ([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], tree)):
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        if r.returncode != 0:
            raise GateUsageError(f"--baseline-rev {rev}: {' '.join(cmd[:3])} failed: "
                                 f"{(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    return tree


def main_interleaved(args: argparse.Namespace) -> int:
    """The interleaved mode's command line: one line per benchmark and the exit code."""
    stat, _ = parse_fail(args.fail)
    threshold = parse_threshold(args.threshold)
    if args.rounds < FIRST_LOOK:
        raise GateUsageError(f"--rounds {args.rounds}: at least {FIRST_LOOK}")
    with tempfile.TemporaryDirectory(prefix="scrfd-gate-tree-") as tmp:
        tree = (Path(args.baseline_dir) if args.baseline_dir
                else baseline_worktree(args.baseline_rev, Path(tmp)))
        if not (tree / "benchmarks").is_dir():
            raise GateUsageError(f"--baseline-dir {tree}: no benchmarks/ folder there (a "
                                 "checkout of this project is expected)")
        try:
            verdicts = interleaved(tree, args.pytest_args, stat, threshold, args.rounds,
                                   args.candidate_arg)
        finally:
            if not args.baseline_dir:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)],
                               capture_output=True)
    words = {"pass": "ok", "fail": "REGRESSED", "inconclusive": "UNDECIDED"}
    for name, v in verdicts.items():
        print(f"{words[v.verdict]:9s} {name}: {stat} time ratio {v.ratio:.3f} "
              f"[{v.interval[0]:.3f}, {v.interval[1]:.3f}] over {v.rounds} interleaved "
              f"rounds; {v.reason}")
    failed = [n for n, v in verdicts.items() if v.verdict == "fail"]
    undecided = [n for n, v in verdicts.items() if v.verdict == "inconclusive"]
    n = f"{len(verdicts)} benchmark{'' if len(verdicts) == 1 else 's'}"
    if failed or (undecided and not args.accept_inconclusive):
        print(f"gate: {len(failed)} of {n} regressed, {len(undecided)} undecided"
              + ("" if failed else " (--accept-inconclusive accepts that)"), file=sys.stderr)
        return 1
    print(f"gate: passed ({n}" + (f", {len(undecided)} undecided accepted)" if undecided
                                 else ")"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; see the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/gate.py",
        description="Compare benchmarks with a saved baseline; re-measure the ones that look "
                    "slower before failing (exit 1 on a confirmed regression).")
    parser.add_argument("--storage", type=Path, default=Path(".benchmarks"),
                        help="pytest-benchmark storage folder (default .benchmarks)")
    parser.add_argument("--baseline", default=None,
                        help="saved run to compare with: its number or name prefix, e.g. 0001")
    inter = parser.add_argument_group("interleaved mode (instead of --baseline)")
    inter.add_argument("--baseline-dir", default=None, metavar="DIR",
                       help="a checkout of the baseline (kernels built): timed interleaved "
                            "with this tree")
    inter.add_argument("--baseline-rev", default=None, metavar="REV",
                       help="a git revision: checked out as a temporary worktree and built")
    inter.add_argument("--threshold", default="3%",
                       help="slowdown allowed (default 3%%): fail when the interval of the "
                            "time ratio is above 1 + threshold")
    inter.add_argument("--rounds", type=int, default=10,
                       help="most interleaved rounds judged (default 10; the first look "
                            f"after {FIRST_LOOK})")
    inter.add_argument("--candidate-arg", action="append", default=[], metavar="ARG",
                       help="a pytest argument for this tree's runs only (repeatable)")
    inter.add_argument("--accept-inconclusive", action="store_true",
                       help="exit 0 when a benchmark stays undecided")
    parser.add_argument("--fail", default="min:15%",
                        help="statistic and allowed increase (default min:15%%)")
    parser.add_argument("--confirm", type=int, default=2,
                        help="re-runs of a benchmark above the limit before it fails (default 2)")
    parser.add_argument("--pause", type=float, default=10.0, metavar="SECONDS",
                        help="idle time before each re-run, so it does not fall into the same "
                             "slow spell of the machine (default 10)")
    parser.add_argument("pytest_args", nargs="+", help="after --: the pytest arguments")
    args = parser.parse_args(argv)
    try:
        modes = [m for m in ("baseline", "baseline_dir", "baseline_rev") if getattr(args, m)]
        if len(modes) != 1:
            raise GateUsageError("give one of --baseline (a saved run), --baseline-dir or "
                                 "--baseline-rev (interleaved)")
        if modes[0] != "baseline":
            return main_interleaved(args)
        if args.confirm < 0:
            raise GateUsageError("--confirm must be 0 or more")
        if not args.pause >= 0:
            raise GateUsageError("--pause must be 0 or more seconds")
        stat, limit = parse_fail(args.fail)
        baseline = read_stats(find_baseline(args.storage, args.baseline), stat)
        verdicts = gate(baseline, args.pytest_args, stat, limit, args.confirm,
                        pause_s=args.pause)
    except GateUsageError as exc:
        print(f"gate: {exc}", file=sys.stderr)
        return 2
    failed = [v for v in verdicts if v.change() > limit]
    for v in verdicts:
        print(f"{'REGRESSED' if v in failed else 'ok':9s} {v.name}: {stat} {v.baseline:.6g} -> "
              f"{v.best:.6g} s ({100 * v.change():+.1f}%, best of {len(v.values)} run"
              f"{'s' if len(v.values) > 1 else ''}; limit +{100 * limit:g}%)")
    n = f"{len(verdicts)} benchmark{'' if len(verdicts) == 1 else 's'}"
    print(f"gate: {len(failed)} of {n} regressed" if failed else f"gate: passed ({n})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
