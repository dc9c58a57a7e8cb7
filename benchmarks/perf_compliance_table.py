"""The compliance table: each timed-backend fault of the library caught, honest ORT,
OpenCV and OpenVINO runs passing, ``--runs`` times each.

    python benchmarks/perf_compliance_table.py --runs 20

Every run is what ``scrfd-ref perf --compliance`` does: a timed run of ``scrfd_500m_bnkps``
at 640x640 on real WIDER images keeping 8 calls' outputs, then
:func:`scrfd_ref.conformance.perf_compliance.check_timed_run`. Prints one Markdown row per
case: how many runs passed every check, and per check how many runs it failed.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

from scrfd_ref.conformance import perf_faults as F
from scrfd_ref.conformance.perf_compliance import check_timed_run
from scrfd_ref.perf import PerfSettings, run_perf

CHECKS = ("sampled_outputs", "batch_invariance", "repeated_input")
#: (case, backend, dtype, batch, wrapper, the check that must fail or None for honest)
CASES = [
    ("honest ORT fp32, batch 1", "ort", "fp32", 1, None, None),
    ("honest ORT fp32, batch 4", "ort", "fp32", 4, None, None),
    ("honest ORT int8, batch 4", "ort", "int8", 4, None, None),
    ("honest OpenCV fp32, batch 4", "opencv", "fp32", 4, None, None),
    ("honest OpenVINO fp32, batch 4", "openvino", "fp32", 4, None, None),
    ("outputs cached by input hash", "ort", "fp32", 1, F.CachingBackend, "repeated_input"),
    ("another head at batch 4 (neighbour's rows)", "ort", "fp32", 4,
     functools.partial(F.BatchHeadBackend, batch=4), "batch_invariance"),
    ("last partial batch padded wrongly", "ort", "fp32", 4,
     functools.partial(F.PaddingBackend, batch=4), "batch_invariance"),
    ("a head skipped when timed", "ort", "fp32", 1, F.SkipHeadBackend, "sampled_outputs"),
]


def main(argv: list[str] | None = None) -> int:
    """Command line (module docstring)."""
    p = argparse.ArgumentParser(prog="python benchmarks/perf_compliance_table.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--iterations", type=int, default=16, help="timed calls a run (16)")
    p.add_argument("--only", default=None, help="cases whose name contains this")
    args = p.parse_args(argv)
    data = Path(os.environ.get("SCRFD_DATA", Path(__file__).resolve().parents[2] / "shared/data"))
    model = str(data / "models" / "scrfd_500m_bnkps.onnx")
    print("| case | runs passing every check | sampled_outputs failed | batch_invariance "
          "failed | repeated_input failed | caught by the check made for it | s a run |\n"
          "|---|---|---|---|---|---|---|", flush=True)
    for name, backend, dtype, batch, wrap, target in CASES:
        if args.only and args.only not in name:
            continue
        failed = dict.fromkeys(CHECKS, 0)
        clean, secs = 0, []
        for i in range(args.runs):
            t = time.perf_counter()
            s = PerfSettings(model=model, backend=backend, dtype=dtype, batch=batch,
                             iterations=args.iterations, keep_outputs=8, wrap=wrap,
                             data_dir=str(data), seed=i)
            checks = check_timed_run(s, run_perf(s))
            secs.append(time.perf_counter() - t)
            for c in checks:
                failed[c.name] += not c.passed
                if not c.passed:
                    print(f"  {name} run {i + 1}: {c.message}", file=sys.stderr, flush=True)
            clean += all(c.passed for c in checks)
        caught = "-" if target is None else f"{failed[target]}/{args.runs}"
        print(f"| {name} | {clean}/{args.runs} | "
              + " | ".join(f"{failed[c]}/{args.runs}" for c in CHECKS)
              + f" | {caught} | {sum(secs) / len(secs):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
