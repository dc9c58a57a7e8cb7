"""Command line ``scrfd-ref``: argument parsing only; every command calls the package.

Errors caused by the user's input (:class:`~scrfd_ref.errors.ScrfdRefError`) are
printed as one line, exit status 2. Sub-commands defined in other modules register
themselves through a ``register(subparsers)`` function listed in :data:`COMMAND_MODULES`.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from . import data as data_mod
from .errors import ScrfdRefError

#: modules that add sub-commands with ``register(subparsers)``
COMMAND_MODULES: tuple[str, ...] = ("scrfd_ref.cli_eval", "scrfd_ref.cli_device", "scrfd_ref.cli_perf")

DEFAULT_VARIANT = "500m_bnkps"
DEFAULT_IMAGES = ("one_face_1280x720.jpg", "debug_input.jpg")


def parse_size(text: str) -> tuple[int, int]:
    """``"640,480"`` or ``"640x480"`` -> ``(640, 480)`` (width, height)."""
    parts = text.replace("x", ",").split(",")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected W,H (e.g. 640,640), got {text!r}") from None
    return w, h


def resolve_model(model: str | None, data_dir: str | None) -> Path:
    """A model path, or a variant name looked up in the data directory's ``models/``."""
    name = model or DEFAULT_VARIANT
    if name in data_mod.VARIANTS:
        root = data_mod.data_dir(data_dir)
        found = data_mod.find_model(name, root)
        if found is None:
            raise ScrfdRefError(data_mod.missing_model_reason(name, root))
        return found
    path = Path(name)
    if not path.is_file():
        raise ScrfdRefError(f"model not found: {path} (give an ONNX path or one of "
                            f"{', '.join(data_mod.VARIANTS)})")
    return path


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--model, --profile and the profile overrides shared by detect-like commands."""
    from .profiles import PROFILES

    p.add_argument("--model", "-m", default=None,
                   help=f"ONNX model path or variant name looked up in DATA/models "
                        f"(default: {DEFAULT_VARIANT})")
    p.add_argument("--profile", "-P", default=None, choices=sorted(PROFILES),
                   help="pre/post-processing settings (default: the command's own)")
    p.add_argument("--score-thr", type=float, default=None,
                   help="keep candidates with score >= this (overrides the profile)")
    p.add_argument("--nms-thr", type=float, default=None,
                   help="NMS IoU threshold; a box is kept when IoU <= this (overrides the profile)")
    p.add_argument("--input-size", type=parse_size, default=None, metavar="W,H",
                   help="network input size, multiples of 32 (default: the model's fixed size, "
                        "else 640,640)")
    p.add_argument("--max-num", type=int, default=None,
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


def cmd_detect(args: argparse.Namespace) -> int:
    """Run the detector on images; write annotated pictures and/or the JSON document."""
    import cv2
    from tqdm import tqdm

    from .draw import draw_detections
    from .formats.detections_json import detections_document, image_record, write_json
    from .formats.images import read_image

    images = [Path(p) for p in args.images]
    if not images:
        root = data_mod.images_dir(data_mod.data_dir(args.data_dir))
        images = [root / n for n in DEFAULT_IMAGES]
    model, det = make_detector(args, "insightface")
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    quiet = args.json == "-"
    for path in tqdm(images, desc="detect", unit="img", disable=quiet or len(images) < 4):
        image = read_image(path)
        dets = det.detect(image)
        records.append(image_record(str(path), image.shape[1], image.shape[0], dets))
        if out_dir:
            target = out_dir / f"{path.stem}.jpg"
            cv2.imwrite(str(target), draw_detections(image, dets))
        if not quiet:
            print(f"{path}: {len(dets)} face(s)" + (f" -> {out_dir / (path.stem + '.jpg')}"
                                                     if out_dir else ""))
    if args.json:
        info = det.info()
        write_json(detections_document(str(model), info["profile"], records, info["backend"]),
                   args.json)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """Print the variants table and which weights are present."""
    root = data_mod.data_dir(args.data_dir)
    print(f"data directory: {root}")
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

    images = Path(args.images) if args.images else (
        data_mod.widerface_dir(data_mod.data_dir(args.data_dir)) / "WIDER_val" / "images")
    items = list_images(images, args.events)
    model, det = make_detector(args, "widerface-eval")
    summary = run_dataset(det, items, args.out, resume=not args.no_resume,
                          progress=not args.quiet)
    print(f"wider-run: {summary.total} images ({summary.skipped} already done, "
          f"{summary.written} written, {summary.detections} detections, {summary.inverted} "
          f"inverted boxes dropped) -> {args.out}")
    print(f"model {model}, profile {det.profile.name}: score >= {det.profile.score_thr}, "
          f"NMS {det.profile.nms_thr}, input {det.profile.input_size[0]}x{det.profile.input_size[1]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``scrfd-ref`` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="scrfd-ref",
        description="Reference, conformance checks and benchmarks for SCRFD face detectors. "
                    "Data (models, WIDER FACE, images) is read from --data-dir / $SCRFD_DATA "
                    "(default ../shared/data).")
    parser.add_argument("--version", action="version", version=f"scrfd-ref {__version__}")
    parser.add_argument("--data-dir", default=None,
                        help="data folder with models/, widerface/, images/ "
                             "(default: $SCRFD_DATA, else ../shared/data)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("detect", help="detect faces in images (annotated pictures, JSON)",
                       description="Detect faces in images with the reference pipeline. Writes "
                                   "an annotated picture per image with --out and one JSON "
                                   "document with --json (boxes x1 y1 x2 y2, scores, 5 "
                                   "landmarks or null, original pixels, descending score).")
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files (default: the sample images in DATA/images)")
    add_model_options(p)
    p.add_argument("--out", "-o", default=None, metavar="DIR",
                   help="write an annotated copy of each image here")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="write all detections as one JSON document ('-' for stdout)")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("models", help="list SCRFD variants, published AP and present weights",
                       description="List the eight SCRFD variants with published WIDER FACE AP, "
                                   "size and landmarks, and which model files the data "
                                   "directory holds.")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("profiles", help="show the named pre/post-processing profiles",
                       description="Show every setting of the named profiles (letterbox, pad, "
                                   "thresholds, box rounding, max_num).")
    p.set_defaults(func=cmd_profiles)

    p = sub.add_parser("wider-run", help="run the detector over WIDER FACE images -> txt files",
                       description="Run the detector over <images>/<event>/*.jpg and write "
                                   "WIDER FACE prediction files <out>/<event>/<name>.txt "
                                   "(x y w h score, original pixels). Re-running resumes: images "
                                   "with a prediction file are skipped. Default profile: "
                                   "widerface-eval (the published-AP settings).")
    add_model_options(p)
    p.add_argument("--images", default=None, metavar="DIR",
                   help="WIDER_val/images folder (default: DATA/widerface/WIDER_val/images)")
    p.add_argument("--out", "-o", required=True, metavar="DIR",
                   help="prediction folder to write (created; existing files are kept)")
    p.add_argument("--events", nargs="+", default=None, metavar="EVENT",
                   help="only these event folders (default: every event folder found)")
    p.add_argument("--no-resume", action="store_true",
                   help="recompute images whose prediction file already exists")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_wider_run)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scrfd-ref`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ScrfdRefError as exc:
        print(f"scrfd-ref {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
