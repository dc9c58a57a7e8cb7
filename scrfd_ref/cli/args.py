"""Shared argument helpers of the ``scrfd-ref`` commands: one definition each.

- :class:`Parser`: an ``argparse`` parser whose usage errors are one line on stderr
  (``scrfd-ref detect: error: argument --input-size: ... (see 'scrfd-ref detect --help')``),
  exit status 2.
- value types (``type=`` of ``add_argument``): :func:`positive_int`, :func:`non_negative_int`,
  :func:`positive_seconds`, :func:`fraction`, :func:`size`, :func:`chw_shape`; each
  refuses what the command could not use (a zero, ``inf``, a size no memory holds).
- :func:`add_command`: a sub-command that also accepts the global options (``--data-dir``,
  ``--debug``, ``--max-pixels``) after its name.
- :func:`unique`: drops repeated names (``--events A A``) with one notice.
- the model options every detect-like command shares: :func:`add_model_options`,
  :func:`resolve_model` (a path or a variant name looked up in the data folder) and
  :func:`make_detector`.
"""
from __future__ import annotations

import argparse
import inspect
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from scrfd_ref.core.errors import DataMissingError, InputError, UsageError
from scrfd_ref.formats import datadir as data_mod
from scrfd_ref.formats.files import display, input_file

T = TypeVar("T")

#: largest network input side accepted (pixels); SCRFD is trained at 640
MAX_INPUT_SIDE = 8192
#: largest batch for perf runs (a 640x640 fp32 batch of 1024 is 5 GB)
MAX_BATCH = 1024
#: largest number of instances / processes / threads
MAX_WORKERS = 256
#: model sessions a command may run at once per usable core (wider-run --workers, perf
#: -i x -p): more only multiplies the memory (each session holds the model and its
#: buffers) without adding throughput
SESSIONS_PER_CORE = 4
#: default image pixel limit (width x height), see ``--max-pixels``
DEFAULT_MAX_PIXELS = 100_000_000
#: the model detect-like commands use when --model is not given
DEFAULT_VARIANT = "500m_bnkps"


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are a single line naming the command and option."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print ``<prog>: error: <message> (see '<prog> --help')`` and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _bounded(cast: Callable[[str], T], ok: Callable[[T], bool], what: str) -> Callable[[str], T]:
    """An argparse type: ``cast(text)`` that must satisfy ``ok``, else ``expected <what>``."""
    def parse(text: str) -> T:
        try:
            value = cast(text.strip())
        except (ValueError, OverflowError):
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what  # argparse shows it in "invalid <name> value" messages
    return parse


def backend_name(text: str) -> str:
    """Type of ``--backend``: a registered backend's name (built in or an installed
    plugin); an empty or unknown name is a usage error naming the closest one."""
    from scrfd_ref.backends import available_backends
    from scrfd_ref.core.errors import did_you_mean

    known = sorted(available_backends())
    if text not in known:
        raise argparse.ArgumentTypeError(f"expected a backend ({', '.join(known)}), got "
                                         f"{text!r}" + did_you_mean(text, known, list_all=False))
    return text


backend_name.__name__ = "backend"


def positive_int(limit: int | None = None) -> Callable[[str], int]:
    """Type for integers ``1 .. limit``."""
    what = f"an integer from 1 to {limit}" if limit else "a positive integer"
    return _bounded(int, lambda v: v >= 1 and (limit is None or v <= limit), what)


non_negative_int = _bounded(int, lambda v: v >= 0, "an integer >= 0")


def max_sessions() -> int:
    """The most model sessions a command runs at once on this machine:
    :data:`SESSIONS_PER_CORE` per usable core."""
    from scrfd_ref.core.parallel import usable_cores

    return SESSIONS_PER_CORE * usable_cores()


def workers_count(text: str) -> int:
    """Type of ``--workers``: an integer from 0 to :func:`max_sessions`."""
    limit = max_sessions()
    return _bounded(int, lambda v: 0 <= v <= limit,
                    f"an integer from 0 to {limit} ({SESSIONS_PER_CORE} per usable core)")(text)
positive_seconds = _bounded(float, lambda v: math.isfinite(v) and v > 0,
                            "a positive, finite number of seconds")
fraction = _bounded(float, lambda v: math.isfinite(v) and 0.0 <= v <= 1.0,
                    "a number from 0 to 1")
max_pixels = _bounded(int, lambda v: 1 <= v <= 10**12, "a pixel count from 1 to 10^12")


def _ints(text: str, n: int, what: str) -> tuple[int, ...]:
    parts = text.strip().strip("[]()").replace("x", ",").replace("X", ",").split(",")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if len(dims) != n:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return dims


def size(text: str) -> tuple[int, int]:
    """``"640,480"`` or ``"640x480"`` -> ``(640, 480)`` (width, height).

    Each side must be a positive multiple of 32 (SCRFD's largest stride) and at most
    :data:`MAX_INPUT_SIDE`.
    """
    w, h = _ints(text, 2, "W,H (e.g. 640,640)")
    for v in (w, h):
        if v < 32 or v % 32 or v > MAX_INPUT_SIDE:
            raise argparse.ArgumentTypeError(
                f"{text!r}: each side must be a multiple of 32 from 32 to {MAX_INPUT_SIDE}")
    return w, h


def chw_shape(text: str) -> tuple[int, int, int]:
    """``"3,640,640"``, ``"[3,640,640]"`` or ``"3x640x640"`` -> ``(3, 640, 640)``.

    SCRFD takes 3 channels; height and width are multiples of 32 up to
    :data:`MAX_INPUT_SIDE`.
    """
    c, h, w = _ints(text, 3, "C,H,W (e.g. 3,640,640)")
    if c != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: SCRFD takes 3 channels (RGB), not {c}")
    for v in (h, w):
        if v < 32 or v % 32 or v > MAX_INPUT_SIDE:
            raise argparse.ArgumentTypeError(
                f"{text!r}: height and width must be multiples of 32 from 32 to {MAX_INPUT_SIDE}")
    return c, h, w


def parse_size(text: str) -> tuple[int, int]:
    """Alias of :func:`size` kept for callers of the first wave."""
    return size(text)


def unique(values: Sequence[str] | None, option: str) -> list[str] | None:
    """``values`` without repeats (first occurrence kept); one notice on stderr if any."""
    if values is None:
        return None
    kept = list(dict.fromkeys(values))
    if len(kept) != len(values):
        dupes = sorted({v for v in values if values.count(v) > 1})
        print(f"scrfd-ref: notice: {option} names {', '.join(dupes)} more than once; each is "
              "used once", file=sys.stderr)
    return kept


def common_options(*, after_command: bool) -> argparse.ArgumentParser:
    """The global options, for the main parser (``after_command=False``) or as a parent of
    every sub-command (defaults suppressed, so a value given before the command stays)."""
    keep = argparse.SUPPRESS if after_command else None
    p = Parser(add_help=False)
    p.add_argument("--data-dir", default=keep, metavar="DIR",
                   help="data folder with models/, widerface/, images/ "
                        "(default: $SCRFD_DATA, else ../shared/data)")
    p.add_argument("--debug", action="store_true",
                   default=argparse.SUPPRESS if after_command else False,
                   help="show the Python traceback of an error (also SCRFD_DEBUG=1)")
    p.add_argument("--max-pixels", type=max_pixels, default=keep, metavar="N",
                   help=f"refuse images larger than N pixels (width x height; default "
                        f"{DEFAULT_MAX_PIXELS:,}, about 100 megapixels)")
    return p


def add_json_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--json FILE``: ``what`` as JSON to FILE, or to stdout with ``-`` (the human text
    then goes to stderr, so stdout stays pure JSON)."""
    p.add_argument("--json", default=None, metavar="FILE",
                   help=f"write {what} as JSON to FILE ('-' for stdout; the text report then "
                        "goes to stderr)")


def add_run_options(p: argparse.ArgumentParser, *, resume: bool = True) -> None:
    """``--no-resume``, ``--overwrite`` and ``--quiet`` of the commands that write a run
    folder with a manifest (wider-run, dump, npz-decode)."""
    if resume:
        p.add_argument("--no-resume", action="store_true",
                       help="recompute every image of the same run, also those already written")
    p.add_argument("--overwrite", action="store_true",
                   help="replace another run in --out instead of refusing: the files its "
                        "manifest lists are removed first, nothing else (never an input); a "
                        "folder holding run-like files no manifest lists is refused, naming "
                        "them")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


_COMMON_AFTER = None


def add_command(sub: Any, name: str, func: Callable[[argparse.Namespace], int] | None = None,
                *, help: str | None = None, description: str | None = None,
                **kwargs: Any) -> argparse.ArgumentParser:
    """Add sub-command ``name`` running ``func``, with the global options accepted after it.

    The one-line ``help`` and the ``--help`` description come from ``func``'s docstring
    (its first line, then the rest) unless given: a command is documented once.
    """
    global _COMMON_AFTER
    if _COMMON_AFTER is None:
        _COMMON_AFTER = common_options(after_command=True)
    if func is not None:
        doc = inspect.cleandoc(func.__doc__ or "")
        first, _, rest = doc.partition("\n\n")
        help = help or first.rstrip(".")
        description = description or " ".join(rest.split()) or first
    parser = sub.add_parser(name, help=help, description=description,
                            parents=[_COMMON_AFTER], **kwargs)
    if func is not None:
        parser.set_defaults(func=func)
    return parser


def resolve_model(model: str | None, data_dir: str | None, option: str = "--model") -> Path:
    """A model path, or a variant name looked up in the data directory's ``models/``."""
    name = model or DEFAULT_VARIANT
    if name in data_mod.VARIANTS:
        root = data_mod.data_dir(data_dir)
        found = data_mod.find_model(name, root)
        if found is None:
            raise DataMissingError(data_mod.missing_model_reason(name, root))
        from scrfd_ref.device.model_identity import check_variant

        check_variant(found, name)     # a file is what its graph is, not what it is called
        return found
    path = Path(name)
    if not path.exists():
        raise DataMissingError(f"{option} {display(path)}: model not found (give an ONNX path "
                               f"or one of {', '.join(data_mod.VARIANTS)})")
    return input_file(path, option, "ONNX model file")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--model, --profile and the profile overrides shared by detect-like commands."""
    from scrfd_ref.core.profiles import PROFILES

    p.add_argument("--model", "-m", default=None,
                   help=f"ONNX model path or variant name looked up in DATA/models "
                        f"(default: {DEFAULT_VARIANT})")
    p.add_argument("--profile", "-P", default=None, choices=sorted(PROFILES),
                   help="pre/post-processing settings (default: the command's own)")
    p.add_argument("--score-thr", type=fraction, default=None,
                   help="keep candidates with score >= this, 0..1 (overrides the profile)")
    p.add_argument("--nms-thr", type=fraction, default=None,
                   help="NMS IoU threshold, 0..1; a box is kept when IoU <= this (overrides "
                        "the profile)")
    p.add_argument("--input-size", type=size, default=None, metavar="W,H",
                   help="network input size, multiples of 32 up to 8192 (default: the "
                        "model's fixed size, else 640,640)")
    p.add_argument("--max-num", type=non_negative_int, default=None,
                   help="keep at most N faces by insightface's centre-weighted ranking (0: all)")
    p.add_argument("--providers", default=None,
                   help="ONNX Runtime providers, comma separated: cpu, cuda, tensorrt (default cpu)")
    add_backend_options(p)
    add_vdsp_option(p)


def add_backend_options(p: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--dtype`` of the commands that run a model (detect, wider-run);
    see :func:`scrfd_ref.quantize.prepare.prepare_model`."""
    from scrfd_ref.core.dtypes import DTYPES

    p.add_argument("--backend", "-B", default="ort", type=backend_name,
                   help="backend: ort (default), opencv, gpu, openvino (pip install -e "
                        "'.[openvino]') or an installed plugin")
    p.add_argument("--dtype", "-D", default=None, choices=DTYPES,
                   help="precision (default: what the model file computes in): fp16 / int8 "
                        "are cached ONNX conversions for ort, bf16 the bf16-storage emulation; "
                        "on openvino fp32 / bf16 are its inference precision (bf16 needs "
                        "AVX512_BF16 or AMX), int8 the NNCF model. A pre-built int8 / fp16 "
                        "file runs as that dtype; another --dtype is refused")


def resolve_dtype(args: argparse.Namespace, source: Path, option: str = "--dtype") -> tuple[str, bool]:
    """``(dtype, prebuilt)`` of a command running the model file ``source`` (``args.dtype``
    set to it): an fp32 file is converted to ``--dtype`` (default fp32); a file that is
    int8 / fp16 / bf16 already (:func:`~scrfd_ref.device.model_identity.model_arithmetic`)
    runs as that dtype, unconverted, with a notice; another ``--dtype`` is a UsageError."""
    from scrfd_ref.device.model_identity import model_arithmetic

    declared = getattr(args, "dtype", None)
    arith, evidence = model_arithmetic(source) if Path(source).suffix == ".onnx" else ("fp32", "")
    if arith == "fp32":
        args.dtype = declared or "fp32"
        return args.dtype, False
    if declared is not None and declared != arith:
        raise UsageError(f"{option} {declared}: {display(source)} is an {arith} model already "
                         f"({evidence}); drop {option} to run it as {arith}, or give the fp32 "
                         "model to convert")
    if declared is None:
        print(f"scrfd-ref: notice: {display(source)} is an {arith} model ({evidence}): run "
              f"and labelled as {arith}", file=sys.stderr)
    args.dtype = arith
    return arith, True


def backend_options(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """``(backend name, backend options)`` of parsed ``--backend`` / ``--dtype`` /
    ``--providers``; a backend that is not registered is a usage error naming the closest."""
    from scrfd_ref.backends import available_backends
    from scrfd_ref.core.errors import did_you_mean

    name = getattr(args, "backend", "ort")
    known = [b for b in available_backends() if b != "replay"]
    if name not in known:
        raise UsageError(f"--backend {name!r}: not a backend" + did_you_mean(name, known))
    options: dict[str, Any] = {"dtype": getattr(args, "dtype", None) or "fp32"}
    if getattr(args, "providers", None):
        if name not in ("ort", "gpu"):
            raise UsageError(f"--providers: ONNX Runtime providers do not apply to --backend "
                             f"{name}")
        from scrfd_ref.backends.ort import resolve_providers

        try:   # checked here, so that a bad name is not blamed on the model file
            resolve_providers(args.providers)
        except InputError as exc:
            raise UsageError(f"--providers {args.providers}: {exc}; give cpu, cuda, tensorrt or "
                             "an installed provider's name") from None
        options["providers"] = args.providers
    return name, options


def add_vdsp_option(p: argparse.ArgumentParser) -> None:
    """``--vdsp-params FILE``: the device's fused-preprocessing config."""
    p.add_argument("--vdsp-params", default=None, metavar="FILE",
                   help="the device's vdsp params JSON: sets the preprocessing of the profile "
                        "(device-flow unless --profile says otherwise; thresholds stay the "
                        "profile's) from the file: letterbox, output size, channel order, "
                        "mean / std, resize, padding")


def read_vdsp_option(args: argparse.Namespace):
    """The parsed ``--vdsp-params`` file, or None."""
    path = getattr(args, "vdsp_params", None)
    if not path:
        return None
    from scrfd_ref.formats.vdsp import read_vdsp_params

    return read_vdsp_params(path)


def resolve_profile(args: argparse.Namespace, default_profile: str, *, vdsp=None,
                    vdsp_default: str = "device-flow", **overrides: Any):
    """The profile of a command: ``--profile`` (else the command's default, or
    ``vdsp_default`` when ``--vdsp-params`` is given), its preprocessing from the vdsp file,
    then the explicit overrides (``--input-size`` must agree with the file's size).

    Raises:
        UsageError: ``--input-size`` differs from the vdsp output size, or the file is
            refused (see :func:`scrfd_ref.formats.vdsp.apply_vdsp`).
    """
    from scrfd_ref.core.errors import UsageError
    from scrfd_ref.core.profiles import get_profile
    from scrfd_ref.formats.vdsp import apply_vdsp

    vdsp = vdsp if vdsp is not None else read_vdsp_option(args)
    name = getattr(args, "profile", None) or (vdsp_default if vdsp else default_profile)
    size = overrides.pop("input_size", getattr(args, "input_size", None))
    profile = get_profile(name)
    if vdsp is not None:
        profile = apply_vdsp(profile, vdsp)
        if size is not None and tuple(size) != profile.input_size:
            raise UsageError(f"--input-size {size[0]},{size[1]}: the vdsp params file "
                             f"{vdsp.source} sets {profile.input_size[0]}x"
                             f"{profile.input_size[1]}; drop one of them")
        size = None
    return profile.replace(input_size=tuple(size) if size else None, **overrides)


def make_detector(args: argparse.Namespace, default_profile: str):
    """Build a :class:`~scrfd_ref.detector.Detector` from parsed detect-like options."""
    from scrfd_ref.backends import get_backend
    from scrfd_ref.detector import Detector
    from scrfd_ref.quantize.prepare import prepare_model

    source = resolve_model(args.model, args.data_dir)
    _, prebuilt = resolve_dtype(args, source)
    name, options = backend_options(args)
    vdsp = read_vdsp_option(args)
    profile = resolve_profile(args, default_profile, vdsp=vdsp)
    size = tuple(args.input_size) if args.input_size else (profile.input_size if vdsp else None)
    model = prepare_model(source, dtype="fp32" if prebuilt else options["dtype"], backend=name,
                          input_size=size or profile.input_size or (640, 640),
                          progress=not getattr(args, "quiet", True))
    backend = get_backend(name, model, **options)
    fixed = backend.input_size
    backend.close()
    if vdsp is not None and fixed is not None and fixed != profile.input_size:
        raise UsageError(f"--vdsp-params {vdsp.source}: the device output is "
                         f"{profile.input_size[0]}x{profile.input_size[1]} but {model.name} is "
                         f"fixed at {fixed[0]}x{fixed[1]} (scrfd-ref check-config reports such "
                         "mismatches)")
    # built from the path (not the probe session) so that runs can replicate it
    return model, Detector(model, profile=profile, input_size=size, backend=name,
                           backend_options=options, score_thr=args.score_thr,
                           nms_thr=args.nms_thr, max_num=args.max_num)
