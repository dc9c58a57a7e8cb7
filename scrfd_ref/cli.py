"""Command line ``scrfd-ref``: argument parsing only; every command calls the package.

Exit statuses follow ``../shared/docs/conventions.md``: 0 done, 1 a problem found in the
data or a failed check, 2 usage (bad option value, wrong kind of path, missing file named
on the command line, an output that is one of the inputs). Every non-zero exit prints one
line on stderr naming the file or option and what to do (a list of problems prints one
line each under it); a Python traceback only with ``--debug`` (before or after the
command) or ``SCRFD_DEBUG=1``. Sub-commands defined in other modules register themselves
through a ``register(subparsers)`` function listed in :data:`COMMAND_MODULES`.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Sequence

from . import __version__
from . import data as data_mod
from .cli_args import (Parser, add_command, add_run_options, common_options, fraction,
                       non_negative_int, size, unique)
from .errors import DataMissingError, ScrfdRefError, UsageError, exit_code_of
from .formats.files import display, input_dir, input_file, output_dir, output_file

#: modules that add sub-commands with ``register(subparsers)``
COMMAND_MODULES: tuple[str, ...] = ("scrfd_ref.cli_eval", "scrfd_ref.cli_device",
                                    "scrfd_ref.cli_perf", "scrfd_ref.cli_gates")

DEFAULT_VARIANT = "500m_bnkps"
DEFAULT_IMAGES = ("one_face_1280x720.jpg", "debug_input.jpg")
DEBUG_ENV = "SCRFD_DEBUG"

parse_size = size  # the first wave's name, kept for importers


def resolve_model(model: str | None, data_dir: str | None, option: str = "--model") -> Path:
    """A model path, or a variant name looked up in the data directory's ``models/``."""
    name = model or DEFAULT_VARIANT
    if name in data_mod.VARIANTS:
        root = data_mod.data_dir(data_dir)
        found = data_mod.find_model(name, root)
        if found is None:
            raise DataMissingError(data_mod.missing_model_reason(name, root))
        return found
    path = Path(name)
    if not path.exists():
        raise DataMissingError(f"{option} {display(path)}: model not found (give an ONNX path "
                               f"or one of {', '.join(data_mod.VARIANTS)})")
    return input_file(path, option, "ONNX model file")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--model, --profile and the profile overrides shared by detect-like commands."""
    from .profiles import PROFILES

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


def make_detector(args: argparse.Namespace, default_profile: str):
    """Build a :class:`~scrfd_ref.detector.Detector` from parsed detect-like options."""
    from .detector import Detector

    model = resolve_model(args.model, args.data_dir)
    options = {"providers": args.providers} if getattr(args, "providers", None) else {}
    return model, Detector(model, profile=args.profile or default_profile,
                           input_size=args.input_size, backend_options=options,
                           score_thr=args.score_thr, nms_thr=args.nms_thr,
                           max_num=args.max_num)


def picture_names(images: Sequence[Path]) -> list[str]:
    """Output file names ``<stem>.jpg`` for ``detect --out``, unique: a repeated stem gets
    ``-2``, ``-3``, ... so two inputs never overwrite each other's picture."""
    taken: dict[str, int] = {}
    names = []
    for p in images:
        stem = p.stem
        n = taken.get(stem.lower(), 0) + 1
        taken[stem.lower()] = n
        names.append(f"{stem}.jpg" if n == 1 else f"{stem}-{n}.jpg")
    return names


def cmd_detect(args: argparse.Namespace) -> int:
    """Run the detector on images; write annotated pictures and/or the JSON document."""
    from tqdm import tqdm

    from .draw import draw_detections
    from .formats.detections_json import detections_document, image_record, write_json
    from .formats.files import make_dir, write_bytes
    from .formats.images import encode_image, read_image

    if args.images:
        images = [input_file(p, None, "image") for p in args.images]
    else:
        root = data_mod.images_dir(data_mod.data_dir(args.data_dir))
        images = [data_mod.require(root / n, "sample image") for n in DEFAULT_IMAGES]
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        output_dir(out_dir, "--out")
        holding = [p for p in images if out_dir.exists() and p.parent.exists()
                   and os.path.samefile(p.parent, out_dir)]
        if holding:
            raise UsageError(f"--out {display(out_dir)}: holds the input image "
                             f"{display(holding[0])}; the annotated copies would replace the "
                             "originals: choose another folder")
    if args.json and args.json != "-":
        output_file(args.json, "--json", inputs=images)
    model, det = make_detector(args, "insightface")
    if out_dir:
        make_dir(out_dir, "--out")
    names = picture_names(images)
    records = []
    quiet = args.json == "-"
    for path, name in tqdm(list(zip(images, names)), desc="detect", unit="img",
                           disable=quiet or len(images) < 4):
        image = read_image(path)
        dets = det.detect(image)
        records.append(image_record(os.fsdecode(path), image.shape[1], image.shape[0], dets))
        if out_dir:
            write_bytes(out_dir / name, encode_image(draw_detections(image, dets)))
        if not quiet:
            print(f"{display(path)}: {len(dets)} face(s)"
                  + (f" -> {display(out_dir / name)}" if out_dir else ""))
    if args.json:
        info = det.info()
        write_json(detections_document(os.fsdecode(model), info["profile"], records,
                                       info["backend"]), args.json)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """Print the variants table and which weights are present."""
    root = data_mod.data_dir(args.data_dir)
    print(f"data directory: {display(root)}")
    print(f"{'variant':<12} {'easy':>6} {'medium':>6} {'hard':>6} {'GFLOPs':>6} "
          f"{'params':>7} {'kps':>4}  file")
    for v in data_mod.VARIANTS.values():
        found = data_mod.find_model(v.name, root)
        print(f"{v.name:<12} {v.ap_easy:6.2f} {v.ap_medium:6.2f} {v.ap_hard:6.2f} "
              f"{v.gflops:6g} {v.params_m:6.2f}M {'yes' if v.landmarks else 'no':>4}  "
              f"{found.name if found else '(missing: ' + ' or '.join(v.file_names[:2]) + ')'}")
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    """Print every named profile with all its settings."""
    from .profiles import PROFILES

    for p in PROFILES.values():
        print(p.name)
        for k, v in p.to_dict().items():
            if k != "name":
                print(f"  {k:<15} {v}")
    return 0


def cmd_wider_run(args: argparse.Namespace) -> int:
    """Run the detector over WIDER FACE images and write prediction txt files."""
    from .widerface.run import list_images, run_dataset

    images = (input_dir(args.images, "--images", "image folder") if args.images else
              data_mod.require(data_mod.widerface_dir(data_mod.data_dir(args.data_dir))
                               / "WIDER_val" / "images", "WIDER val images"))
    output_dir(args.out, "--out", inputs=[images])
    items = list_images(images, unique(args.events, "--events"))
    model, det = make_detector(args, "widerface-eval")
    summary = run_dataset(det, items, args.out, resume=not args.no_resume,
                          progress=not args.quiet, overwrite=args.overwrite)
    if summary.written == 0:
        print(f"wider-run: all {summary.total} images were done already in {display(args.out)} "
              "(same run); nothing to do")
    else:
        print(f"wider-run: {summary.total} images ({summary.skipped} already done, "
              f"{summary.written} written, {summary.detections} detections, "
              f"{summary.inverted} with a negative width or height, kept) -> "
              f"{display(args.out)}")
    print(f"model {display(model)}, profile {det.profile.name}: score >= "
          f"{det.profile.score_thr}, NMS {det.profile.nms_thr}, input "
          f"{det.profile.input_size[0]}x{det.profile.input_size[1]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``scrfd-ref`` argument parser with every sub-command."""
    parser = Parser(
        prog="scrfd-ref", parents=[common_options(after_command=False)],
        description="Reference, conformance checks and benchmarks for SCRFD face detectors. "
                    "Data (models, WIDER FACE, images) is read from --data-dir / $SCRFD_DATA "
                    "(default ../shared/data). Exit status: 0 done, 1 a problem found in the "
                    "data or a failed check, 2 a usage error; --debug shows tracebacks.")
    parser.add_argument("--version", action="version", version=f"scrfd-ref {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=Parser)

    p = add_command(sub, "detect", help="detect faces in images (annotated pictures, JSON)",
                    description="Detect faces in images with the reference pipeline. Writes "
                                "an annotated picture <name>.jpg per image with --out (a "
                                "repeated name gets -2, -3, ...; the folder of an input image is "
                                "refused) and one JSON document with --json (boxes x1 y1 x2 y2, "
                                "scores, 5 landmarks or null, original pixels, descending "
                                "score). A file name starting with '-' goes after '--'.")
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files (default: the sample images in DATA/images)")
    add_model_options(p)
    p.add_argument("--out", "-o", default=None, metavar="DIR",
                   help="write an annotated copy of each image here")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="write all detections as one JSON document ('-' for stdout)")
    p.set_defaults(func=cmd_detect)

    p = add_command(sub, "models", help="list SCRFD variants, published AP and present weights",
                    description="List the eight SCRFD variants with published WIDER FACE AP, "
                                "size and landmarks, and which model files the data "
                                "directory holds.")
    p.set_defaults(func=cmd_models)

    p = add_command(sub, "profiles", help="show the named pre/post-processing profiles",
                    description="Show every setting of the named profiles (letterbox, pad, "
                                "thresholds, box rounding, max_num).")
    p.set_defaults(func=cmd_profiles)

    p = add_command(sub, "wider-run", help="run the detector over WIDER FACE images -> txt files",
                    description="Run the detector over <images>/<event>/*.jpg and write "
                                "WIDER FACE prediction files <out>/<event>/<name>.txt "
                                "(x y w h score, original pixels, every box kept as "
                                "insightface's test_widerface.py writes them) and the run "
                                "manifest scrfd_run.json. Re-running the same run resumes "
                                "(images with a prediction file are skipped); a folder written "
                                "by another model, profile or image list is refused unless "
                                "--overwrite. Default profile: widerface-eval (the "
                                "published-AP settings).")
    add_model_options(p)
    p.add_argument("--images", default=None, metavar="DIR",
                   help="WIDER_val/images folder (default: DATA/widerface/WIDER_val/images)")
    p.add_argument("--out", "-o", required=True, metavar="DIR",
                   help="prediction folder to write (created)")
    p.add_argument("--events", nargs="+", default=None, metavar="EVENT",
                   help="only these event folders (default: every event folder found; a "
                        "repeated name counts once)")
    add_run_options(p)
    p.set_defaults(func=cmd_wider_run)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _debug_wanted(argv: Sequence[str]) -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0") or "--debug" in argv


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scrfd-ref`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # pragma: no cover - detached stream
                pass
    debug = _debug_wanted(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version (0) and usage errors (2)
        return int(exc.code or 0)
    command = getattr(args, "command", "?")
    if getattr(args, "max_pixels", None):
        from .formats.images import set_max_pixels

        set_max_pixels(args.max_pixels)
    try:
        return int(args.func(args) or 0)
    except ScrfdRefError as exc:
        if debug:
            traceback.print_exc()
        print(f"scrfd-ref {command}: error: {exc}", file=sys.stderr)
        return exit_code_of(exc)
    except KeyboardInterrupt:
        print(f"scrfd-ref {command}: interrupted (files being written were removed; re-run to "
              "resume)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except MemoryError:
        if debug:
            traceback.print_exc()
        print(f"scrfd-ref {command}: error: out of memory (a smaller --batch, --input-size or "
              "image?)", file=sys.stderr)
        return 1
    except OSError as exc:
        if debug:
            traceback.print_exc()
        where = f"{display(exc.filename)}: " if exc.filename else ""
        print(f"scrfd-ref {command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: one line unless --debug
        if debug:
            traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        print(f"scrfd-ref {command}: internal error: {type(exc).__name__}: {first} (a bug in "
              "scrfd-ref: re-run with --debug and report the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
