"""Sub-commands ``detect``, ``models`` and ``profiles``."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

from scrfd_ref.cli.args import (
    add_command,
    add_json_option,
    add_model_options,
    add_vdsp_option,
    make_detector,
)
from scrfd_ref.core.errors import UsageError
from scrfd_ref.formats import datadir as data_mod
from scrfd_ref.formats.files import display, input_file, output_dir, output_file

DEFAULT_IMAGES = ("one_face_1280x720.jpg", "debug_input.jpg")


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
    """Detect faces in images (annotated pictures, JSON).

    Detect faces in images with the reference pipeline. Writes an annotated picture
    <name>.jpg per image with --out (a repeated name gets -2, -3, ...; the folder of an
    input image is refused) and one JSON document with --json (boxes x1 y1 x2 y2,
    scores, 5 landmarks or null, original pixels, descending score). A file name
    starting with '-' goes after '--'.
    """
    from tqdm import tqdm

    from scrfd_ref.formats.detections_json import (
        detections_document,
        image_record,
        write_json,
    )
    from scrfd_ref.formats.files import make_dir, write_bytes
    from scrfd_ref.formats.images import encode_image, read_image
    from scrfd_ref.formats.pictures import draw_detections

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
        from scrfd_ref.formats.detections_json import is_detections_json

        output_file(args.json, "--json", inputs=images,
                    own=(is_detections_json, "a detections JSON"))
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
    """List SCRFD variants, published AP and present weights.

    List the eight SCRFD variants with published WIDER FACE AP, size and landmarks, and
    which model files the data directory holds.
    """
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
    """Show the named pre/post-processing profiles, or one resolved profile.

    Without options: every setting of the named profiles (letterbox, pad, pixel
    preparation, thresholds, box rounding, NMS convention, max_num). With --profile
    and/or --vdsp-params: the one profile a command would use (the vdsp file sets the
    preprocessing of --profile, device-flow by default); --json FILE|- writes it as JSON.
    """
    from scrfd_ref.cli.args import resolve_profile
    from scrfd_ref.core.profiles import PROFILES
    from scrfd_ref.formats.detections_json import write_json

    if args.json and args.json != "-":
        output_file(args.json, "--json", inputs=[args.vdsp_params] if args.vdsp_params else [])
    if args.profile or args.vdsp_params:
        chosen = [resolve_profile(args, "device-flow")]
    else:
        chosen = list(PROFILES.values())
    if args.json:
        doc = chosen[0].to_dict() if len(chosen) == 1 else [p.to_dict() for p in chosen]
        if args.vdsp_params:
            from scrfd_ref.cli.args import read_vdsp_option

            doc["vdsp_params"] = read_vdsp_option(args).to_record()
        write_json(doc, args.json)
        if args.json == "-":
            return 0
    for p in chosen:
        print(p.name + (f" (preprocessing from {display(args.vdsp_params)})"
                        if args.vdsp_params else ""))
        for k, v in p.to_dict().items():
            if k != "name":
                print(f"  {k:<15} {v}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``detect``, ``models`` and ``profiles`` to the main parser."""
    from scrfd_ref.core.profiles import PROFILES

    p = add_command(sub, "detect", cmd_detect)
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files (default: the sample images in DATA/images)")
    add_model_options(p)
    p.add_argument("--out", "-o", default=None, metavar="DIR",
                   help="write an annotated copy of each image here")
    add_json_option(p, "all detections (one document)")

    p = add_command(sub, "models", cmd_models)

    p = add_command(sub, "profiles", cmd_profiles)
    p.add_argument("--profile", "-P", default=None, choices=sorted(PROFILES),
                   help="show only this profile (default: all; device-flow with --vdsp-params)")
    add_vdsp_option(p)
    add_json_option(p, "the resolved profile")
