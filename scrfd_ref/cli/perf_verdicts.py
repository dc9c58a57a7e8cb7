"""``perf --compliance`` and ``perf --compare``: the verdicts of a timed run.

- ``--compliance``: the timed run keeps a sample of its outputs (real images) and is
  checked against an untimed run of the same backend
  (:func:`scrfd_ref.conformance.perf_compliance.check_timed_run`): exit 1 naming the check
  that failed.
- ``--compare MODEL``: the run as set (the candidate) and the same run with ``MODEL`` (the
  baseline) timed interleaved, ABBA rounds, until the ratio's interval decides against
  ``--threshold`` or ``--rounds`` rounds are judged
  (:func:`scrfd_ref.perf.verdict.compare_settings`): exit 1 on fail, and on inconclusive
  unless ``--accept-inconclusive``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from scrfd_ref.cli.args import _bounded, positive_int
from scrfd_ref.core.errors import UsageError
from scrfd_ref.formats.files import display, write_text

#: timed calls whose outputs each instance keeps for ``--compliance``
COMPLIANCE_SAMPLE = 8
_threshold = _bounded(float, lambda v: 0 <= v < 100, "a percentage from 0 to 100")
_rounds = positive_int(1000)


def add_options(p: argparse.ArgumentParser) -> None:
    """The ``perf`` options of this module."""
    from scrfd_ref.conformance.perf_compliance import REPEAT_MARGIN
    from scrfd_ref.perf.verdict import DEFAULT_THRESHOLD, MAX_ROUNDS, MIN_ROUNDS

    g = p.add_argument_group("verdicts of the timed run")
    g.add_argument("--compliance", action="store_true",
                   help="check that what was timed computes what an untimed run computes: "
                        f"each instance times real images and keeps {COMPLIANCE_SAMPLE} of "
                        "its calls' outputs, compared with an untimed run of the same "
                        "backend (bit-exact for CPU ORT / OpenCV / OpenVINO, else the "
                        "dtype's head gates); each image alone vs inside a batch, the last "
                        "partial batch included; one input repeated must not run more than "
                        f"{100 * REPEAT_MARGIN:g}%% faster than distinct inputs (a cache). "
                        "Exit 1 naming the failed check")
    g.add_argument("--compare", default=None, metavar="MODEL",
                   help="judge this run (the candidate) against the same run with MODEL "
                        "(a file or variant name: the baseline), timed interleaved in ABBA "
                        "rounds (one warm-up round dropped); the verdict is the bootstrap "
                        "interval of the time ratio against --threshold: pass, fail, or "
                        "inconclusive with how many more rounds would decide")
    g.add_argument("--threshold", type=_threshold, default=None,
                   metavar="PCT",
                   help=f"with --compare: the slowdown allowed, percent (default "
                        f"{100 * DEFAULT_THRESHOLD:g}); fail means the candidate is slower "
                        "than that with 95%% confidence")
    g.add_argument("--rounds", type=_rounds, default=None,
                   help=f"with --compare: at most this many rounds judged (default "
                        f"{MAX_ROUNDS}; the "
                        f"first look after {MIN_ROUNDS}, more only while inconclusive)")
    g.add_argument("--statistic", choices=("p50", "throughput", "latency"), default=None,
                   help="with --compare: a round's number: the median call latency (p50, "
                        "default: a slow spell that hits a few calls moves it least), seconds "
                        "per image (throughput: for several instances or processes) or the "
                        "mean call latency")
    g.add_argument("--accept-inconclusive", action="store_true",
                   help="with --compare: exit 0 when the rounds cannot decide")


def check_options(args: argparse.Namespace) -> None:
    """Refuse the combinations these verdicts cannot judge (one line, exit 2); fill the
    ``--compare`` defaults."""
    from scrfd_ref.perf.verdict import DEFAULT_THRESHOLD, MAX_ROUNDS, MIN_ROUNDS

    given = [o for o, on in (("--compliance", args.compliance),
                             ("--compare", args.compare is not None)) if on]
    for other, on in (("--bare", args.bare), ("--pipeline", args.pipeline)):
        if on and given:
            raise UsageError(f"{given[0]} judges the backend.run loop; drop {other}")
    if len(given) == 2:
        raise UsageError("--compliance and --compare: run them as two commands (the "
                         "compliance sample would slow one side of the comparison)")
    if args.compliance and args.backend == "replay":
        raise UsageError("--compliance: a replay backend computes nothing while timed (its "
                         "outputs are files); check the device that wrote them")
    if args.compare is None:
        for opt in ("threshold", "rounds", "statistic", "accept_inconclusive"):
            if getattr(args, opt) not in (None, False):
                raise UsageError(f"--{opt.replace('_', '-')} applies to --compare only")
        return
    args.threshold = 100 * DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    args.rounds = MAX_ROUNDS if args.rounds is None else args.rounds
    args.statistic = args.statistic or "p50"
    if args.rounds < MIN_ROUNDS:
        raise UsageError(f"--rounds {args.rounds}: at least {MIN_ROUNDS} (the first look)")


def emit(args: argparse.Namespace, lines: Sequence[str], json_text: str) -> None:
    """The ``perf`` command's output: ``lines`` on stdout (on stderr with ``--json -``),
    ``json_text`` on stdout (``--json -``) or into the ``--json`` file."""
    text = sys.stderr if args.json == "-" else sys.stdout
    for line in lines:
        print(line, file=text)
    if args.json == "-":
        print(json_text)
    elif args.json:
        write_text(args.json, json_text + "\n")
        print(f"json        : {display(args.json)}", file=text)


def run_compliance(args: argparse.Namespace, settings) -> int:
    """Timed run with a kept sample, then the checks; 1 when one fails."""
    from scrfd_ref.conformance.perf_compliance import check_timed_run
    from scrfd_ref.perf import format_summary, run_perf

    settings = dataclasses.replace(settings, keep_outputs=COMPLIANCE_SAMPLE)
    result = run_perf(settings)
    checks = check_timed_run(settings, result)
    lines = [format_summary(result)] + [f"compliance  : {c.message}" for c in checks]
    emit(args, lines, result.to_json())
    failed = [c for c in checks if not c.passed]
    if failed:
        print(f"scrfd-ref perf: compliance check {failed[0].name} failed: {failed[0].detail}",
              file=sys.stderr)
        return 1
    return 0


def run_compare(args: argparse.Namespace, settings) -> int:
    """Interleaved candidate (as set) vs baseline (``--compare``'s model); the verdict."""
    from tqdm import tqdm

    from scrfd_ref.cli.args import resolve_model
    from scrfd_ref.perf.verdict import MAX_DRIFT, compare_settings

    baseline = dataclasses.replace(settings, model=str(resolve_model(args.compare,
                                                                     args.data_dir,
                                                                     "--compare")))
    text = sys.stderr if args.json == "-" else sys.stdout
    print(f"compare     : {display(settings.model)} (candidate) vs {display(baseline.model)} "
          f"(baseline), {settings.backend} {settings.dtype}, ABBA rounds, at most "
          f"{args.rounds}, threshold {args.threshold:g}% ...", file=text, flush=True)
    with tqdm(total=args.rounds + 1, desc="rounds (ABBA)", unit="round", file=sys.stderr,
              leave=False, disable=None) as bar:
        c = compare_settings(baseline, settings, threshold=args.threshold / 100,
                             rounds=args.rounds, statistic=args.statistic,
                             on_round=bar.update,
                             progress=lambda v: bar.write(f"  after {v.rounds} rounds: "
                                                          f"{v.reason}", file=text))
    v = c.verdict
    lines = [f"verdict     : {v.verdict.upper()}: candidate / baseline time {v.ratio:.4f} "
             f"[{v.interval[0]:.4f}, {v.interval[1]:.4f}] (95%, bootstrap over {v.rounds} "
             f"rounds, {c.statistic}); {v.reason}",
             f"session     : {len(c.baseline)} rounds ({c.warmup} warm-up), looks at "
             f"{c.looks}, {c.seconds:.1f} s; the ratio moved {100 * v.ratio_drift:+.1f}% between the "
             f"halves (at most {100 * MAX_DRIFT:g}%), the baseline {100 * v.drift:+.1f}% (cancelled by the "
             "interleaving)"]
    emit(args, lines, json.dumps({"comparison": c.to_dict(), "candidate": settings.to_dict(),
                                  "baseline": baseline.to_dict()}, indent=2, default=str))
    if v.verdict == "pass":
        return 0
    if v.verdict == "inconclusive" and args.accept_inconclusive:
        print("  inconclusive accepted (--accept-inconclusive): not evidence that the "
              "candidate is as fast", file=text)
        return 0
    print(f"scrfd-ref perf: --compare {v.verdict}: {v.reason}", file=sys.stderr)
    return 1
