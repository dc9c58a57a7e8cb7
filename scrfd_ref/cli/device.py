"""Sub-commands of the device flow: export-device-layout, image2npz, dump, npz-decode."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from scrfd_ref.cli.args import (
    add_command,
    add_run_options,
    add_vdsp_option,
    backend_name,
    fraction,
    size,
    unique,
)
from scrfd_ref.core.dtypes import DTYPES
from scrfd_ref.core.errors import InputError, UsageError
from scrfd_ref.core.parallel import StageClock, format_split
from scrfd_ref.formats import datadir as data_mod
from scrfd_ref.formats.device_npz import OUTPUT_DTYPES
from scrfd_ref.formats.files import (
    display,
    input_dir,
    is_inside,
    input_file,
    output_dir,
    output_file,
)


def cmd_export(args: argparse.Namespace) -> int:
    """Cut a standard ONNX export to the device layout.

    Cut a standard SCRFD ONNX export before each head's transpose/reshape/sigmoid so its
    outputs are the raw NCHW maps the vendor compiles: score (B,2,H,W) logits, bbox
    (B,8,H,W), kps (B,20,H,W). OUT must not be IN.
    """
    from scrfd_ref.device.export import export_device_layout
    from scrfd_ref.device.onnx_tools import describe_model, save_model

    src = input_file(args.input, "IN.onnx", "ONNX model")
    output_file(args.output, "OUT.onnx", inputs=[src])
    model = export_device_layout(src, input_size=args.input_size,
                                 drop_landmarks=args.drop_landmarks)
    save_model(model, args.output)
    info = describe_model(args.output)
    print(f"{display(args.output)}: {info.num_outputs} outputs, device layout")
    for name, shape in zip(info.output_names, info.output_shapes):
        print(f"  {name:<10} {shape}")
    return 0


def cmd_image2npz(args: argparse.Namespace) -> int:
    """Images -> device input npz files + datalist.

    For every <dataset>/<event>/<name>.jpg write <target>/<name>.npz holding input_0
    (uint8 RGB, 3xHxW, original size) and a datalist of absolute npz paths.
    """
    from scrfd_ref.device.flow import image2npz

    dataset = input_dir(args.dataset_path, "--dataset-path", "image folder")
    output_dir(args.target_path, "--target-path", inputs=[(dataset, "--dataset-path")])
    from scrfd_ref.formats.device_npz import is_datalist

    output_file(args.text_path, "--text-path", inputs=[dataset], own=(is_datalist, "a datalist"))
    text = Path(args.text_path)
    if text.suffix.lower() == ".npz" and Path(args.target_path).is_dir() \
            and is_inside(text, args.target_path):
        raise UsageError(f"--text-path {display(text)}: an npz name inside --target-path, where "
                         "image2npz writes its inputs; give the datalist a .txt name")
    paths = image2npz(dataset, args.target_path, args.text_path,
                      events=unique(args.events, "--events"), progress=not args.quiet)
    print(f"image2npz: {len(paths)} npz files in {display(args.target_path)}, datalist "
          f"{display(args.text_path)}")
    return 0


def cmd_dump(args: argparse.Namespace) -> int:
    """Run a backend over a datalist, write vamp-style output npz.

    Stand in for the device: letterbox each datalist input with the profile, run the
    device-layout model on a backend and write output_000000.npz ... (keys output_0..,
    device layout) exactly as vamp does, plus scrfd_dump.json (the run manifest: model
    sha256, backend, dtype, profile, image list; complete only when every file is
    written) and datalist.txt. Re-running the same dump resumes; a folder of another run
    is refused unless --overwrite.
    """
    from scrfd_ref.backends.pool import session_pool
    from scrfd_ref.cli.args import (
        backend_options,
        read_vdsp_option,
        resolve_dtype,
        resolve_model,
        resolve_profile,
    )
    from scrfd_ref.core.dtypes import output_dtype
    from scrfd_ref.device.flow import dump
    from scrfd_ref.quantize.prepare import file_digest, prepare_model

    datalist = input_file(args.datalist, "--datalist", "datalist")
    from scrfd_ref.formats.device_npz import read_datalist

    npz_folders = sorted({p.parent for p in read_datalist(datalist) if p.parent.is_dir()})
    output_dir(args.out, "--out", inputs=[datalist, *[(f, "the --datalist's input folder")
                                                      for f in npz_folders]])
    source = resolve_model(args.model, args.data_dir)
    _, prebuilt = resolve_dtype(args, source)
    backend, options = backend_options(args)
    vdsp = read_vdsp_option(args)
    profile = resolve_profile(args, "device-flow", vdsp=vdsp)
    try:
        model = prepare_model(source, layout="device", dtype="fp32" if prebuilt else args.dtype,
                              backend=backend, input_size=profile.input_size,
                              progress=not args.quiet)
    except InputError as exc:
        if not prebuilt:
            raise
        raise InputError(f"--model {display(source)}: a pre-built {args.dtype} model that cannot "
                         f"be exported to the device layout ({str(exc)[:160]}...); give the fp32 "
                         f"model with --dtype {args.dtype}: dump exports it, then converts it") \
            from None
    out_dtype = args.output_dtype or output_dtype(args.dtype)
    meta = {"variant": data_mod.variant_of(source), "dtype": args.dtype,
            "model": source.name, "model_sha256": file_digest(source),
            "device_model_sha256": file_digest(model)}
    if vdsp is not None:
        # part of the run's identity: resuming with another vdsp file is refused
        meta["vdsp_params"] = vdsp.to_record()
    clock = StageClock()
    sessions = session_pool(backend, model, **options)
    try:
        start = time.perf_counter()
        n = dump(sessions, datalist, args.out, profile, dtype=out_dtype,
                 progress=not args.quiet, meta=meta, resume=not args.no_resume,
                 overwrite=args.overwrite, clock=clock)
        wall = time.perf_counter() - start
    finally:
        for session in sessions:
            session.close()
    if n == 0:
        print(f"dump: every output of this run was in {display(args.out)} already; nothing to do")
    else:
        print(f"dump: {n} output files ({out_dtype}, device layout) in {display(args.out)} from "
              f"{args.backend} {args.dtype} {source.name}")
        print(f"throughput {n / wall:.1f} images/s ({wall:.2f} s); "
              f"{format_split(clock.split(n, wall))} (summed over {len(sessions)} sessions)")
    return 0


def cmd_npz_decode(args: argparse.Namespace) -> int:
    """Decode vamp output npz files into WIDER txt.

    Pair each datalist line with its output (file i, or position on the batch axis of
    batched files), find the original image by name under the event folders (for its
    size), decode with the preprocessing the dump recorded and write WIDER prediction
    txt files plus scrfd_run.json. Every file is checked first and every problem listed;
    nothing is written while one is bad (unless --skip-bad).
    """
    from scrfd_ref.cli.args import read_vdsp_option, resolve_profile
    from scrfd_ref.core.profiles import get_profile
    from scrfd_ref.device.flow import (
        check_recorded_inputs,
        check_vdsp_record,
        decode_profile,
        dump_source,
        npz_decode,
    )

    datalist = input_file(args.datalist, "--datalist", "datalist")
    outputs = input_dir(args.outputs, "--outputs", "device output folder")
    images = (input_dir(args.images, "--images", "image folder") if args.images else
              data_mod.require(data_mod.widerface_dir(data_mod.data_dir(args.data_dir))
                               / "WIDER_val" / "images", "WIDER val images"))
    output_dir(args.out, "--out", inputs=[(outputs, "--outputs"), (images, "--images")])
    source = dump_source(outputs, allow_incomplete=args.allow_incomplete)
    if source.notice:
        print(f"scrfd-ref npz-decode: notice: {source.notice}", file=sys.stderr)
    check_recorded_inputs(source, datalist, outputs)
    requested = None
    vdsp = read_vdsp_option(args)
    recorded_name = (source.identity.get("profile") or {}).get("name", "device-flow")
    if vdsp is not None:
        notice = check_vdsp_record(source, vdsp, force=args.force_profile)
        if notice:
            print(f"scrfd-ref npz-decode: notice: {notice}", file=sys.stderr)
        requested = resolve_profile(args, recorded_name, vdsp=vdsp, vdsp_default=recorded_name)
    elif args.profile or args.input_size:
        requested = get_profile(args.profile or recorded_name, input_size=args.input_size)
    profile, notice = decode_profile(source, requested, force=args.force_profile,
                                     score_thr=args.score_thr, nms_thr=args.nms_thr)
    if notice:
        print(f"scrfd-ref npz-decode: notice: {notice}", file=sys.stderr)
    start = time.perf_counter()
    s = npz_decode(datalist, outputs, images, args.out, profile, progress=not args.quiet,
                   skip_bad=args.skip_bad, source=source, overwrite=args.overwrite)
    wall = time.perf_counter() - start
    if s.unfinished:
        shown = ", ".join(map(str, s.unfinished[:10])) + (", ..." if len(s.unfinished) > 10
                                                          else "")
        print(f"scrfd-ref npz-decode: notice: {len(s.unfinished)} of the {s.lines} datalist "
              f"line(s) have no output yet (line {shown}): the dump did not finish; decoded "
              "the lines whose output exists", file=sys.stderr)
    print(f"npz-decode: {s.images} images, {s.detections} detections "
          f"({s.inverted} with a negative width or height, kept) -> {display(args.out)} "
          f"[profile {profile.name}: {profile.describe_geometry()}, score >= "
          f"{profile.score_thr}, NMS {profile.nms_thr}]")
    print(f"throughput {s.images / wall:.1f} images/s ({wall:.2f} s, checks included)")
    if s.skipped:
        reasons = "\n  ".join(s.skipped_reasons[:20])
        print(f"scrfd-ref npz-decode: error: {s.skipped} bad entr"
              f"{'y' if s.skipped == 1 else 'ies'} skipped (--skip-bad; also listed in "
              f"{display(Path(args.out) / 'scrfd_run.json')}):\n  {reasons}", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the device-flow sub-commands to the main parser."""
    from scrfd_ref.core.profiles import PROFILES

    p = add_command(sub, "export-device-layout", cmd_export)
    p.add_argument("input", type=Path, metavar="IN.onnx", help="standard SCRFD export")
    p.add_argument("output", type=Path, metavar="OUT.onnx", help="device-layout model to write")
    p.add_argument("--input-size", type=size, default=None, metavar="W,H",
                   help="fix the input shape (e.g. 640,640) so every output has a static shape")
    p.add_argument("--drop-landmarks", action="store_true",
                   help="remove the landmark heads (a 6-output model from a _bnkps one)")

    p = add_command(sub, "image2npz", cmd_image2npz)
    p.add_argument("--dataset-path", required=True, metavar="DIR",
                   help="image root with one folder per event")
    p.add_argument("--target-path", required=True, metavar="DIR", help="folder for the npz files")
    p.add_argument("--text-path", required=True, metavar="FILE", help="datalist file to write")
    p.add_argument("--events", nargs="+", default=None, metavar="EVENT",
                   help="only these event folders (default: all; a repeated name counts once)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    p = add_command(sub, "dump", cmd_dump)
    p.add_argument("--model", "-m", default=None,
                   help="standard ONNX export or variant name (exported to the device layout "
                        "and converted to --dtype, cached)")
    p.add_argument("--backend", "-B", default="ort", type=backend_name,
                   help="backend standing in for the device: ort (default), opencv, gpu, "
                        "openvino (pip install -e '.[openvino]') or an installed plugin")
    p.add_argument("--dtype", "-D", default=None, choices=DTYPES,
                   help="model precision (default: what the model file computes in, fp32 for "
                        "an fp32 file); on ort bf16 is the bf16-storage emulation, on "
                        "openvino bf16 its native bf16 and int8 the NNCF model; a file that "
                        "is int8 / fp16 already runs as that dtype")
    p.add_argument("--datalist", required=True, metavar="FILE", help="datalist from image2npz")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for output npz files")
    p.add_argument("--profile", "-P", default=None, choices=sorted(PROFILES),
                   help="letterbox used to feed the model (default device-flow)")
    p.add_argument("--input-size", type=size, default=None, metavar="W,H",
                   help="network input size (default: the profile's, 640,640)")
    add_vdsp_option(p)
    p.add_argument("--output-dtype", default=None, choices=sorted(OUTPUT_DTYPES),
                   help="dtype of the written outputs (default: fp32 for fp32 and bf16 "
                        "models, whose values fp32 holds exactly, else fp16)")
    add_run_options(p)

    p = add_command(sub, "npz-decode", cmd_npz_decode)
    p.add_argument("--datalist", required=True, metavar="FILE", help="datalist the outputs follow")
    p.add_argument("--outputs", required=True, metavar="DIR", help="folder of output_*.npz")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="original images, <DIR>/<event>/<name>.jpg (default: DATA WIDER_val/images)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="prediction folder to write")
    p.add_argument("--profile", "-P", default=None, choices=sorted(PROFILES),
                   help="decode/NMS settings (default: the profile the dump recorded in "
                        "scrfd_dump.json, else device-flow); its letterbox must be the "
                        "recorded one unless --force-profile")
    p.add_argument("--input-size", type=size, default=None, metavar="W,H",
                   help="network input size (default: the recorded one, else 640,640)")
    add_vdsp_option(p)
    p.add_argument("--score-thr", type=fraction, default=None,
                   help="override the score threshold (recorded in scrfd_run.json)")
    p.add_argument("--nms-thr", type=fraction, default=None,
                   help="override the NMS IoU threshold (recorded in scrfd_run.json)")
    p.add_argument("--force-profile", action="store_true",
                   help="decode with --profile / --input-size / --vdsp-params although the "
                        "dump recorded another preprocessing")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="decode a dump whose manifest says it did not finish")
    p.add_argument("--skip-bad", action="store_true",
                   help="write the good files and skip (and list) the bad ones instead of "
                        "writing nothing; exits 1 when any was skipped")
    add_run_options(p, resume=False)

