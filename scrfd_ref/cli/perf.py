"""Sub-command ``perf``: vamp-style throughput / latency runs (see :mod:`scrfd_ref.perf.runner`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from scrfd_ref.cli.args import (
    MAX_BATCH,
    MAX_WORKERS,
    SESSIONS_PER_CORE,
    _bounded,
    add_command,
    add_json_option,
    add_vdsp_option,
    backend_name,
    chw_shape,
    max_sessions,
    non_negative_int,
    positive_int,
)
from scrfd_ref.core.dtypes import DTYPES
from scrfd_ref.core.errors import UsageError
from scrfd_ref.formats.files import display, input_file, output_file

DEFAULT_SHAPE = (3, 640, 640)


parse_shape = chw_shape  # the first wave's name, kept for importers
_positive_int = positive_int(MAX_WORKERS)
_iterations = positive_int(10_000_000)
_batch = positive_int(MAX_BATCH)
_duration = _bounded(float, lambda v: 0 < v <= 86400, "a number of seconds from 0 to 86400 (a day)")
#: largest input blob a perf run allocates per call (bytes, float32)
MAX_BLOB_BYTES = 4 << 30


def settings_from_args(args: argparse.Namespace):
    """Build :class:`~scrfd_ref.perf.settings.PerfSettings` from parsed ``perf`` options."""
    from scrfd_ref.cli.args import resolve_dtype, resolve_model
    from scrfd_ref.perf import PerfSettings

    if args.serial and not args.pipeline:
        raise UsageError("--serial needs --pipeline (it picks the full-flow executor)")
    if args.bare and args.pipeline:
        raise UsageError("--bare runs the plain onnxruntime loop; it has no --pipeline mode")
    if args.bare and args.backend != "ort":
        raise UsageError(f"--bare is the onnxruntime loop; it cannot stand in for backend "
                         f"{args.backend!r}")
    profile = args.profile or "insightface"
    if args.vdsp_params:
        from scrfd_ref.cli.args import resolve_profile

        profile = resolve_profile(args, "insightface", vdsp_default="insightface",
                                  input_size=None)
        w, h = profile.input_size
        if args.shape is not None and tuple(args.shape[1:]) != (h, w):
            raise UsageError(f"-s {','.join(map(str, args.shape))}: the vdsp params file "
                             f"{display(args.vdsp_params)} sets {w}x{h} (3,{h},{w}); drop one "
                             "of them")
        shape = (3, h, w)
    else:
        shape = args.shape or DEFAULT_SHAPE
    sessions = args.instances * args.processes
    if sessions > max_sessions():
        raise UsageError(f"-p {args.processes} -i {args.instances}: {sessions} sessions, more "
                         f"than the {max_sessions()} this machine allows ({SESSIONS_PER_CORE} "
                         "per usable core: more only multiplies the memory); lower -p or -i")
    blob_bytes = args.batch * shape[0] * shape[1] * shape[2] * 4
    if blob_bytes > MAX_BLOB_BYTES:
        raise UsageError(f"-b {args.batch} -s {','.join(map(str, shape))}: one call's input "
                         f"would take {blob_bytes / 2**30:.1f} GiB (limit "
                         f"{MAX_BLOB_BYTES / 2**30:.0f} GiB); use a smaller --batch or --shape")
    for image in args.images or ():
        input_file(image, "--images", "image")
    if args.json and args.json != "-":
        output_file(args.json, "--json")
    # a replay folder or a plugin's own model kind is passed as it is; ONNX backends get a
    # variant name or an existing ONNX file
    onnx_backends = ("ort", "gpu", "opencv", "openvino")
    model = (Path(args.model) if args.backend not in onnx_backends and args.model
             else resolve_model(args.model, args.data_dir))
    if args.backend in onnx_backends:
        resolve_dtype(args, model)
    args.dtype = args.dtype or "fp32"
    options = {"providers": args.providers} if args.providers else {}
    return PerfSettings(
        model=str(model), backend=args.backend, backend_options=options, dtype=args.dtype,
        instances=args.instances, processes=args.processes, batch=args.batch,
        shape=shape, iterations=args.iterations, duration_s=args.duration,
        warmup=args.warmup, pipeline=args.pipeline, serial=args.serial, threads=args.threads,
        images=tuple(args.images or ()), data_dir=args.data_dir, profile=profile)


def cmd_perf(args: argparse.Namespace) -> int:
    """Vamp-style throughput and latency run (instances x processes x batch).

    Run a model the way the vendor's vamp tool does (-i instances, -p processes, -b
    batch, -s shape) and report throughput (images/s = batch x measured calls / wall
    time from the start barrier to the last call's end) and per-call latency mean / p50
    / p90 / p95 / p99 in ms (linear interpolation between closest ranks, numpy's
    default). Each instance is a thread with its own backend session; each process is
    spawned and builds its own instances; warm-up calls are not measured. --pipeline
    measures the full flow (pre-processing of real images, inference, decode + NMS) with
    a pre / infer / post split; --bare runs a plain onnxruntime session.run loop with
    the same settings to check the harness overhead. --compliance checks that what was
    timed computes what an untimed run computes; --compare MODEL judges this run against
    another model's, timed interleaved, with an interval and pass / fail / inconclusive.
    """
    from scrfd_ref.cli import perf_verdicts
    from scrfd_ref.perf import format_summary, run_bare, run_perf

    perf_verdicts.check_options(args)
    settings = settings_from_args(args)
    if args.compliance:
        return perf_verdicts.run_compliance(args, settings)
    if args.compare is not None:
        return perf_verdicts.run_compare(args, settings)
    result = run_bare(settings) if args.bare else run_perf(settings)
    perf_verdicts.emit(args, [format_summary(result)], result.to_json())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``perf`` sub-command to the main parser."""
    from scrfd_ref.core.profiles import PROFILES

    p = add_command(sub, "perf", cmd_perf)
    p.add_argument("--model", "-m", default=None,
                   help="ONNX model path or variant name looked up in DATA/models "
                        "(default: 500m_bnkps); a replay folder for --backend replay")
    p.add_argument("--backend", default="ort", type=backend_name,
                   help="backend name: ort (default), openvino (pip install -e '.[openvino]'; "
                        "fp32 / bf16 / int8 as OpenVINO runs them), replay or an installed "
                        "plugin")
    p.add_argument("--dtype", default=None, choices=DTYPES,
                   help="model precision (default: what the model file computes in, fp32 for "
                        "an fp32 file; a pre-built int8 / fp16 file runs as that dtype); fp16 / bf16 / int8 convert the fp32 "
                        "ONNX file first for ort (cached by scrfd_ref.quantize.convert; bf16 is "
                        "the storage emulation); openvino computes fp32 / bf16 itself and runs "
                        "the NNCF model for int8")
    p.add_argument("--providers", default=None,
                   help="ONNX Runtime providers, comma separated: cpu, cuda, tensorrt "
                        "(default: cpu)")
    p.add_argument("-i", "--instances", type=_positive_int, default=1,
                   help="concurrent instances per process (threads, one session each; default 1)")
    p.add_argument("-p", "--processes", type=_positive_int, default=1,
                   help="processes (spawned; each runs --instances instances; default 1); "
                        "-i x -p is at most 4 sessions per usable core")
    p.add_argument("-b", "--batch", type=_batch, default=1,
                   help="images per call (default 1; a fixed batch-1 model runs them one by one)")
    p.add_argument("-s", "--shape", type=chw_shape, default=None, metavar="C,H,W",
                   help="shape of one input, as vamp's -s (3,640,640 or [3,640,640]; "
                        "default 3,640,640, or the --vdsp-params output size)")
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("-n", "--iterations", type=_iterations, default=None,
                        help="measured calls per instance (default 50 when --duration is "
                             "not given)")
    amount.add_argument("-t", "--duration", type=_duration, default=None, metavar="S",
                        help="run each instance for S seconds instead of a call count")
    p.add_argument("-w", "--warmup", type=non_negative_int, default=5,
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
    p.add_argument("--profile", "-P", default=None, choices=sorted(PROFILES),
                   help="pre/post-processing settings of --pipeline (default insightface)")
    add_vdsp_option(p)
    p.add_argument("--bare", action="store_true",
                   help="run a plain onnxruntime session.run loop with the same settings "
                        "(no harness) to check the harness overhead")
    from scrfd_ref.cli.perf_verdicts import add_options

    add_options(p)
    add_json_option(p, "the result")
