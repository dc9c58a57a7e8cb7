"""Sub-commands of the device flow: export-device-layout, image2npz, dump, npz-decode."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import data as data_mod
from .cli import parse_size


def cmd_export(args: argparse.Namespace) -> int:
    """Cut a standard export into the device layout and save it."""
    from .onnx_tools import describe_model, export_device_layout, save_model

    model = export_device_layout(args.input, input_size=args.input_size,
                                 drop_landmarks=args.drop_landmarks)
    save_model(model, args.output)
    info = describe_model(args.output)
    print(f"{args.output}: {info.num_outputs} outputs, device layout")
    for name, shape in zip(info.output_names, info.output_shapes):
        print(f"  {name:<10} {shape}")
    return 0


def cmd_image2npz(args: argparse.Namespace) -> int:
    """Images -> input npz files + datalist."""
    from .device_flow import image2npz

    paths = image2npz(args.dataset_path, args.target_path, args.text_path, events=args.events,
                      progress=not args.quiet)
    print(f"image2npz: {len(paths)} npz files in {args.target_path}, datalist {args.text_path}")
    return 0


def cmd_dump(args: argparse.Namespace) -> int:
    """Input npz -> vamp-style output npz through a backend standing in for the device."""
    from .backends import get_backend
    from .cli import resolve_model
    from .device_flow import dump
    from .model_prep import prepare_model
    from .profiles import get_profile

    profile = get_profile(args.profile, input_size=args.input_size)
    source = resolve_model(args.model, args.data_dir)
    model = prepare_model(source, layout="device", dtype=args.dtype,
                          input_size=profile.input_size)
    out_dtype = args.output_dtype or ("fp32" if args.dtype == "fp32" else "fp16")
    with get_backend(args.backend, model, dtype=args.dtype) as backend:
        n = dump(backend, args.datalist, args.out, profile, dtype=out_dtype,
                 progress=not args.quiet,
                 meta={"variant": data_mod.variant_of(source), "dtype": args.dtype,
                       "model": str(source)})
    print(f"dump: {n} output files ({out_dtype}, device layout) in {args.out} from "
          f"{args.backend} {args.dtype} {source.name}")
    return 0


def cmd_npz_decode(args: argparse.Namespace) -> int:
    """Output npz + datalist + original images -> WIDER txt."""
    from .device_flow import npz_decode
    from .profiles import get_profile

    profile = get_profile(args.profile, input_size=args.input_size,
                          score_thr=args.score_thr, nms_thr=args.nms_thr)
    images = Path(args.images) if args.images else (
        data_mod.widerface_dir(data_mod.data_dir(args.data_dir)) / "WIDER_val" / "images")
    s = npz_decode(args.datalist, args.outputs, images, args.out, profile,
                   progress=not args.quiet)
    print(f"npz-decode: {s.images} images, {s.detections} detections "
          f"({s.inverted} inverted boxes dropped) -> {args.out} [profile {profile.name}]")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the device-flow sub-commands to the main parser."""
    from .profiles import PROFILES

    p = sub.add_parser("export-device-layout", help="cut a standard ONNX export to the device layout",
                       description="Cut a standard SCRFD ONNX export before each head's "
                                   "transpose/reshape/sigmoid so its outputs are the raw NCHW "
                                   "maps the vendor compiles: score (B,2,H,W) logits, bbox "
                                   "(B,8,H,W), kps (B,20,H,W).")
    p.add_argument("input", type=Path, metavar="IN.onnx", help="standard SCRFD export")
    p.add_argument("output", type=Path, metavar="OUT.onnx", help="device-layout model to write")
    p.add_argument("--input-size", type=parse_size, default=None, metavar="W,H",
                   help="fix the input shape (e.g. 640,640) so every output has a static shape")
    p.add_argument("--drop-landmarks", action="store_true",
                   help="remove the landmark heads (a 6-output model from a _bnkps one)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("image2npz", help="images -> device input npz files + datalist",
                       description="For every <dataset>/<event>/<name>.jpg write "
                                   "<target>/<name>.npz holding input_0 (uint8 RGB, 3xHxW, "
                                   "original size) and a datalist of absolute npz paths.")
    p.add_argument("--dataset-path", required=True, metavar="DIR",
                   help="image root with one folder per event")
    p.add_argument("--target-path", required=True, metavar="DIR", help="folder for the npz files")
    p.add_argument("--text-path", required=True, metavar="FILE", help="datalist file to write")
    p.add_argument("--events", nargs="+", default=None, metavar="EVENT",
                   help="only these event folders (default: all)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_image2npz)

    p = sub.add_parser("dump", help="run a backend over a datalist, write vamp-style output npz",
                       description="Stand in for the device: letterbox each datalist input with "
                                   "the profile, run the device-layout model on a backend and "
                                   "write output_000000.npz ... (keys output_0.., device layout) "
                                   "exactly as vamp does.")
    p.add_argument("--model", "-m", default=None,
                   help="standard ONNX export or variant name (exported to the device layout "
                        "and converted to --dtype, cached)")
    p.add_argument("--backend", "-B", default="ort", help="backend name (default ort)")
    p.add_argument("--dtype", "-D", default="fp32", choices=("fp32", "fp16", "int8"),
                   help="model precision (default fp32)")
    p.add_argument("--datalist", required=True, metavar="FILE", help="datalist from image2npz")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for output npz files")
    p.add_argument("--profile", "-P", default="device-flow", choices=sorted(PROFILES),
                   help="letterbox used to feed the model (default device-flow)")
    p.add_argument("--input-size", type=parse_size, default=None, metavar="W,H",
                   help="network input size (default: the profile's, 640,640)")
    p.add_argument("--output-dtype", default=None, choices=("fp16", "fp32"),
                   help="dtype of the written outputs (default: fp32 for fp32 models, else fp16)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_dump)

    p = sub.add_parser("npz-decode", help="decode vamp output npz files into WIDER txt",
                       description="Pair the i-th output file with the i-th datalist line, find "
                                   "the original image by name under the event folders (for its "
                                   "size), decode with the profile and write WIDER prediction "
                                   "txt files. Every problem with the files is listed before "
                                   "anything is decoded.")
    p.add_argument("--datalist", required=True, metavar="FILE", help="datalist the outputs follow")
    p.add_argument("--outputs", required=True, metavar="DIR", help="folder of output_*.npz")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="original images, <DIR>/<event>/<name>.jpg (default: DATA WIDER_val/images)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="prediction folder to write")
    p.add_argument("--profile", "-P", default="device-flow", choices=sorted(PROFILES),
                   help="decode/NMS settings; must match the letterbox used by dump "
                        "(default device-flow)")
    p.add_argument("--input-size", type=parse_size, default=None, metavar="W,H",
                   help="network input size (default 640,640)")
    p.add_argument("--score-thr", type=float, default=None, help="override the score threshold")
    p.add_argument("--nms-thr", type=float, default=None, help="override the NMS IoU threshold")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_npz_decode)
