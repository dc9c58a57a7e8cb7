"""Power of the interleaved perf verdict on this machine: how often it fails a candidate
slowed down by 3, 5 and 10 % (``Slowdown`` of the fault library: a busy wait of that
fraction of each call), and how often it fails unchanged code (a false alarm), with the
rounds and seconds each comparison needed.

    python benchmarks/perf_power.py --runs 20 --threshold 2 --json power.json

Each run is one :func:`scrfd_ref.perf.verdict.compare_settings` session: ``scrfd_500m_bnkps``
at 640x640 on ONNX Runtime (``--iterations`` timed calls a side a round), the baseline
unwrapped, the candidate wrapped; at most ``--rounds`` rounds judged (first 6, more while
inconclusive), 1 warm-up round. Prints one Markdown row per condition.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from pathlib import Path

from scrfd_ref.conformance.perf_faults import Slowdown
from scrfd_ref.perf import PerfSettings
from scrfd_ref.perf.verdict import compare_settings


def main(argv: list[str] | None = None) -> int:
    """Command line (module docstring)."""
    p = argparse.ArgumentParser(prog="python benchmarks/perf_power.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20, help="comparisons per condition (20)")
    p.add_argument("--rounds", type=int, default=20, help="most rounds judged (20)")
    p.add_argument("--threshold", type=float, default=2.0,
                   help="slowdown allowed, percent (2: fail means surely slower than 2%%)")
    p.add_argument("--iterations", type=int, default=30, help="timed calls a side a round")
    p.add_argument("--statistic", default="p50", choices=("p50", "throughput", "latency"),
                   help="a round's number (default p50: the median call latency)")
    p.add_argument("--slowdowns", default="0,3,5,10", help="percent, comma separated")
    p.add_argument("--model", default=None, help="ONNX model (default 500m_bnkps of the data)")
    p.add_argument("--json", type=Path, default=None, help="write every comparison here")
    args = p.parse_args(argv)
    data = Path(os.environ.get("SCRFD_DATA", Path(__file__).resolve().parents[2] / "shared/data"))
    model = args.model or str(data / "models" / "scrfd_500m_bnkps.onnx")
    base = PerfSettings(model=model, iterations=args.iterations, warmup=3)
    rows, raw = [], {}
    for pct in (float(x) for x in args.slowdowns.split(",")):
        cand = (base if pct == 0 else
                dataclasses.replace(base, wrap=functools.partial(Slowdown, fraction=pct / 100)))
        runs = []
        for i in range(args.runs):
            c = compare_settings(base, cand, threshold=args.threshold / 100, rounds=args.rounds,
                                 statistic=args.statistic, seed=i)
            runs.append(c.to_dict())
            v = c.verdict
            print(f"  {pct:g}% run {i + 1}: {v.verdict} {v.reason} ({v.rounds} rounds, "
                  f"{c.seconds:.1f} s)", file=sys.stderr, flush=True)
        raw[f"{pct:g}"] = runs
        verdicts = [r["verdict"]["verdict"] for r in runs]
        rounds = [r["verdict"]["rounds"] for r in runs]
        secs = [r["seconds"] for r in runs]
        ratios = sorted(r["verdict"]["ratio"] for r in runs)
        rows.append(f"| {pct:g}% | {verdicts.count('fail')}/{len(runs)} | "
                    f"{verdicts.count('pass')}/{len(runs)} | "
                    f"{verdicts.count('inconclusive')}/{len(runs)} | "
                    f"{sum(rounds) / len(rounds):.1f} (max {max(rounds)}) | "
                    f"{sum(secs) / len(secs):.1f} (max {max(secs):.1f}) | "
                    f"{ratios[len(ratios) // 2]:.3f} [{ratios[0]:.3f}, {ratios[-1]:.3f}] |")
        print(rows[-1], flush=True)
    print(f"\nthreshold {args.threshold:g}%, statistic {args.statistic}, at most {args.rounds} rounds, "
          f"{args.iterations} calls a side a round, {time.strftime('%Y-%m-%d %H:%M')}")
    print("| injected slowdown | fail | pass | inconclusive | rounds judged, mean | "
          "seconds, mean | ratio: median [min, max] |\n|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
