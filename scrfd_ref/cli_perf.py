"""Sub-command ``perf``: vamp-style throughput / latency runs (see :mod:`scrfd_ref.perf`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import InputError

DTYPE_CHOICES = ("fp32", "fp16", "int8")


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"3,640,640"``, ``"[3,640,640]"`` or ``"3x640x640"`` -> ``(3, 640, 640)``."""
    parts = text.strip().strip("[]()").replace("x", ",").split(",")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W (e.g. 3,640,640), got {text!r}") from None
    if len(dims) != 3 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers C,H,W, got {text!r}")
    return dims  # type: ignore[return-value]


def _bounded(cast, ok, what: str):
    """An argparse type: ``cast(text)`` that must satisfy ``ok``, else "expected <what>"."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


_positive_int = _bounded(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = _bounded(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _bounded(float, lambda v: v > 0, "a positive number of seconds")


def settings_from_args(args: argparse.Namespace):
    """Build :class:`~scrfd_ref.perf.PerfSettings` from parsed ``perf`` options."""
    from .cli import resolve_model
    from .perf import PerfSettings

    if args.serial and not args.pipeline:
        raise InputError("--serial needs --pipeline (it picks the full-flow executor)")
    if args.bare and args.pipeline:
        raise InputError("--bare runs the plain onnxruntime loop; it has no --pipeline mode")
    if args.bare and args.backend != "ort":
        raise InputError(f"--bare is the onnxruntime loop; it cannot stand in for backend "
                         f"{args.backend!r}")
    model = (Path(args.model) if args.backend != "ort" and args.model
             else resolve_model(args.model, args.data_dir))
    options = {"providers": args.providers} if args.providers else {}
    return PerfSettings(
        model=str(model), backend=args.backend, backend_options=options, dtype=args.dtype,
        instances=args.instances, processes=args.processes, batch=args.batch,
        shape=args.shape, iterations=args.iterations, duration_s=args.duration,
        warmup=args.warmup, pipeline=args.pipeline, serial=args.serial, threads=args.threads,
        images=tuple(args.images or ()), data_dir=args.data_dir, profile=args.profile)


def cmd_perf(args: argparse.Namespace) -> int:
    """Run the perf harness (or the bare loop), print the summary, write JSON."""
    from .perf import format_summary, run_bare, run_perf

    settings = settings_from_args(args)
    result = run_bare(settings) if args.bare else run_perf(settings)
    to_stdout = args.json == "-"
    print(format_summary(result), file=sys.stderr if to_stdout else sys.stdout)
    if to_stdout:
        print(result.to_json())
    elif args.json:
        target = Path(args.json)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(result.to_json() + "\n", encoding="utf-8")
        print(f"json        : {target}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``perf`` sub-command to the main parser."""
    from .profiles import PROFILES

    p = sub.add_parser(
        "perf", help="vamp-style throughput and latency run (instances x processes x batch)",
        description="Run a model the way the vendor's vamp tool does (-i instances, -p "
                    "processes, -b batch, -s shape) and report throughput (images/s = batch "
                    "x measured calls / wall time from the start barrier to the last call's "
                    "end) and per-call latency mean / p50 / p90 / p95 / p99 in ms (linear "
                    "interpolation between closest ranks, numpy's default). Each instance is "
                    "a thread with its own backend session; each process is spawned and "
                    "builds its own instances; warm-up calls are not measured. --pipeline "
                    "measures the full flow (pre-processing of real images, inference, "
                    "decode + NMS) with a pre / infer / post split; --bare runs a plain "
                    "onnxruntime session.run loop with the same settings to check the "
                    "harness overhead.")
    p.add_argument("--model", "-m", default=None,
                   help="ONNX model path or variant name looked up in DATA/models "
                        "(default: 500m_bnkps); a replay folder for --backend replay")
    p.add_argument("--backend", default="ort",
                   help="backend name: ort (default), replay or an installed plugin")
    p.add_argument("--dtype", default="fp32", choices=DTYPE_CHOICES,
                   help="model precision (default fp32); fp16 / int8 convert the fp32 ONNX "
                        "file first (cached by scrfd_ref.quantize)")
    p.add_argument("--providers", default=None,
                   help="ONNX Runtime providers, comma separated: cpu, cuda, tensorrt "
                        "(default: cpu)")
    p.add_argument("-i", "--instances", type=_positive_int, default=1,
                   help="concurrent instances per process (threads, one session each; default 1)")
    p.add_argument("-p", "--processes", type=_positive_int, default=1,
                   help="processes (spawned; each runs --instances instances; default 1)")
    p.add_argument("-b", "--batch", type=_positive_int, default=1,
                   help="images per call (default 1; a fixed batch-1 model runs them one by one)")
    p.add_argument("-s", "--shape", type=parse_shape, default=(3, 640, 640), metavar="C,H,W",
                   help="shape of one input, as vamp's -s (3,640,640 or [3,640,640]; "
                        "default 3,640,640)")
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("-n", "--iterations", type=_positive_int, default=None,
                        help="measured calls per instance (default 50 when --duration is "
                             "not given)")
    amount.add_argument("-t", "--duration", type=_positive_float, default=None, metavar="S",
                        help="run each instance for S seconds instead of a call count")
    p.add_argument("-w", "--warmup", type=_non_negative_int, default=5,
                   help="unmeasured warm-up calls per instance before the start barrier "
                        "(default 5)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="ONNX Runtime intra-op threads per instance (default: ORT's own, "
                        "one per core)")
    p.add_argument("--pipeline", action="store_true",
                   help="measure the full flow per call: letterbox + normalise real images, "
                        "inference, decode + NMS, pipelined (pre and post threads overlap "
                        "inference); reports the pre / infer / post split. On a small CPU "
                        "use --threads 1 and -i as many as cores: pre and post then run "
                        "beside single-threaded inference streams")
    p.add_argument("--serial", action="store_true",
                   help="with --pipeline: run pre, infer, post one after another (the serial "
                        "loop to compare the pipelined executor with)")
    p.add_argument("--images", nargs="+", default=None, metavar="IMAGE",
                   help="images for --pipeline (default: the first 32 WIDER val images of "
                        "the data directory, else random images)")
    p.add_argument("--profile", "-P", default="insightface", choices=sorted(PROFILES),
                   help="pre/post-processing settings of --pipeline (default insightface)")
    p.add_argument("--bare", action="store_true",
                   help="run a plain onnxruntime session.run loop with the same settings "
                        "(no harness) to check the harness overhead")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="write the result as JSON ('-' for stdout; the summary then goes to "
                        "stderr)")
    p.set_defaults(func=cmd_perf)
