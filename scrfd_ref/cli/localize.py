"""``scrfd-ref localize``: name the stage of the network where a device first goes wrong.

``cut`` writes the cut models with their inputs and fp32 goldens, ``run`` runs every cut as
one of the suite's devices (a vendor runs them with its own compiler instead), ``judge``
compares a device's cut outputs with the goldens and the honest bands, ``trials`` measures
how well all of this works on a model (honest devices and faults injected into nodes).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scrfd_ref.cli.args import add_command, positive_int, resolve_model, resolve_profile
from scrfd_ref.core.dtypes import DTYPES
from scrfd_ref.core.errors import UsageError
from scrfd_ref.formats.files import (
    display,
    input_dir,
    input_file,
    output_dir,
    output_file,
    write_text,
)


def cmd_cut(args: argparse.Namespace) -> int:
    """Cut the model at its stage boundaries: prefix and segment models, inputs, goldens.

    Stages are read from the ONNX graph (stem, each backbone stage, each neck level, each
    stride's head tower, the output heads). For each stage, models/NN_<stage>.prefix.onnx
    (image -> the stage's outputs) and models/NN_<stage>.segment.onnx (the stage alone, fed
    fp32 golden tensors); inputs/NN_<stage>/ holds the segment inputs (npz, keys input_0..)
    with their datalist inputs/NN_<stage>.txt; prefixes read the images of --datalist
    (images.txt); golden/NN_<stage>/output_NNNNNN.npz the fp32 outputs. localize_cuts.json
    lists every stage's ONNX nodes, op types, tensors and every file's sha256.
    """
    from scrfd_ref.device.cuts import write_cuts
    from scrfd_ref.device.onnx_tools import describe_model

    model = resolve_model(args.model, args.data_dir)
    from scrfd_ref.cli.localize_trials import datalist_folders

    datalist = input_file(args.datalist, "--datalist", "datalist")
    out = output_dir(args.out, "--out", inputs=[(datalist, "--datalist"), (model, "--model"),
                                                *datalist_folders(datalist)])
    profile = resolve_profile(args, "device-flow")
    fixed = describe_model(model).input_shape[2:]
    static = tuple(fixed[::-1]) if all(isinstance(d, int) for d in fixed) else None
    if profile.input_size is None:
        profile = profile.replace(input_size=static or (640, 640))
    elif static and tuple(profile.input_size) != static:
        raise UsageError(f"--input-size {profile.input_size[0]},{profile.input_size[1]}: "
                         f"{display(model)} is fixed at {static[0]}x{static[1]}; drop "
                         "--input-size (cuts are made at the size the model runs)")
    doc = write_cuts(model, datalist, out, profile, overwrite=args.overwrite,
                     progress=not args.quiet)
    stages = doc["stages"]
    print(f"localize cut: {len(stages)} stages ({2 * len(stages)} cut models) of "
          f"{display(model)} at {profile.input_size[0]}x{profile.input_size[1]}, "
          f"{doc['images']} image(s) -> {display(out)}")
    for s in stages:
        print(f"  {s['slug']:18s} {len(s['nodes']):3d} nodes  "
              f"{', '.join(sorted(set(s['op_types'])))}")
    print(f"next: compile and run models/*.onnx with your tools (outputs in <dir>/<cut>/), "
          f"or: scrfd-ref localize run --cuts {display(out)} --device ort/fp16 --out DIR")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run every cut as one of the suite's devices (backend/dtype) and write its outputs.

    Writes <out>/NN_<stage>.segment/output_NNNNNN.npz (and .prefix/ unless --segments-only)
    in the dump conventions, with localize_run.json (device, dtype, every file's sha256).
    int8 devices calibrate each cut on its own first --calibration inputs.
    """
    from scrfd_ref.diagnose.localize_run import run_cuts
    from scrfd_ref.quantize.cut_builds import device_unavailable

    from scrfd_ref.cli.localize_trials import datalist_folders

    cuts = input_dir(args.cuts, "--cuts", "cut folder")
    out = output_dir(args.out, "--out",
                     inputs=[(cuts, "--cuts"), *datalist_folders(cuts / "images.txt")])
    why = device_unavailable(args.device)
    if why:
        from scrfd_ref.core.errors import BackendUnavailable

        raise BackendUnavailable(f"--device {args.device}: {why}")
    kinds = ("segment",) if args.segments_only else ("segment", "prefix")
    doc = run_cuts(cuts, out, args.device, kinds=kinds, overwrite=args.overwrite,
                   progress=not args.quiet, calibration=args.calibration)
    print(f"localize run: {args.device} ({doc['identity']['dtype']}) ran {len(kinds)} x "
          f"{len(doc['outputs']) // max(1, len(kinds) * doc['images'])} cuts on "
          f"{doc['images']} image(s) -> {display(out)}")
    print(f"next: scrfd-ref localize judge --cuts {display(cuts)} --outputs {display(out)}")
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    """Name the first stage whose own error leaves the band honest devices reach.

    Each stage's segment output (fed fp32 golden inputs) is compared with its fp32 golden:
    SNR and cosine per output, SNR per channel. A stage is outside its band when its SNR
    or its worst channel is below what honest devices of the same dtype reach on that kind
    of stage (data/localize_bands.toml, or --bands). Prints the first such stage, its ONNX
    nodes and op types and the channels most affected, or "no stage". With --out: the
    verdict as localize.json and localize.md, the SNR-by-stage plot localize.png and
    report.html. Exit 1 when a stage is named, 0 for no stage.
    """
    from scrfd_ref.diagnose.localize_folder import judge_folder

    cuts = input_dir(args.cuts, "--cuts", "cut folder")
    outputs = input_dir(args.outputs, "--outputs", "device output folder")
    bands = input_file(args.bands, "--bands", "bands file") if args.bands else None
    out = (output_dir(args.out, "--out", inputs=[(cuts, "--cuts"), (outputs, "--outputs"),
                                                 (bands, "--bands")]) if args.out else None)
    for name in ("localize.json", "localize.md", "localize.png", "report.html") if out else ():
        output_file(out / name, "--out", inputs=[bands])   # never over --bands
    result = judge_folder(cuts, outputs, args.dtype, bands, args.device_name)
    lines = result.lines()
    print(f"localize judge: {display(outputs)} against {display(cuts)}")
    for line in lines:
        print(line)
    for s in result.stages:
        print(f"  {s.describe()}")
    if out is not None:
        _write_judged(out, result, lines, {"cuts": display(cuts), "outputs": display(outputs),
                                           "command": " ".join(sys.argv)})
        print(f"wrote {display(out)}/localize.json, localize.md, localize.png, report.html")
    return 1 if result.named else 0


def _write_judged(out: Path, result, lines: list[str], context: dict) -> None:
    import orjson

    from scrfd_ref.formats.files import make_dir, write_bytes
    from scrfd_ref.report.localize import PLOT_NAME, plot_localize, render_localize_html

    make_dir(out, "--out")
    doc = {**result.to_dict(), "verdict": lines, **context}
    write_bytes(out / "localize.json", orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    rows = ["| # | stage | segment SNR dB | band | worst channel dB | band | prefix SNR dB | |",
            "|---|---|---|---|---|---|---|---|"]
    for s in result.stages:
        prefix = "" if s.prefix_snr_db is None else f"{s.prefix_snr_db:.1f}"
        rows.append(f"| {s.index} | {s.name} | {s.snr_db:.1f} | {s.band.snr_db:.1f} | "
                    f"{s.channel_snr_db:.1f} | {s.band.channel_snr_db:.1f} | {prefix} | "
                    f"{'**outside**' if s.outside else 'inside'} |")
    write_text(out / "localize.md", "# localize\n\n```\n" + "\n".join(lines) + "\n```\n\n"
               + "\n".join(rows) + f"\n\n![SNR by stage]({PLOT_NAME})\n")
    plot_localize(result.to_dict(), out / PLOT_NAME)
    write_text(out / "report.html", render_localize_html(result.to_dict(), lines, out, context))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``localize cut | run | judge | trials``."""
    from scrfd_ref.cli.args import add_run_options, add_vdsp_option
    from scrfd_ref.core.profiles import PROFILES
    from scrfd_ref.quantize.cut_builds import CUT_DEVICES

    p = add_command(sub, "localize", help="Name the stage of the network where a device "
                    "first goes wrong (cut, run, judge, trials)",
                    description="Cut the model at its stage boundaries, run the cuts on the "
                                "device (your compiler, or `localize run`), and judge which "
                                "stage's own error leaves the band honest devices reach.")
    lsub = p.add_subparsers(dest="localize_command", metavar="ACTION", required=True,
                            help="cut: cut models and goldens; run: run the cuts as a suite "
                                 "device; judge: name the stage; trials: measure localize")
    c = add_command(lsub, "cut", cmd_cut)
    c.add_argument("--model", "-m", default=None,
                   help="fp32 ONNX model or variant name (default: the default variant)")
    c.add_argument("--datalist", required=True, metavar="FILE",
                   help="input npz datalist (scrfd-ref image2npz): the images of the goldens")
    c.add_argument("--out", required=True, metavar="DIR", help="the cut folder to write")
    c.add_argument("--profile", "-P", default=None, choices=sorted(PROFILES),
                   help="preprocessing of the images (default device-flow)")
    from scrfd_ref.cli.args import size

    c.add_argument("--input-size", type=size, default=None, metavar="W,H",
                   help="network input size the cuts are fixed at (default: the profile's, "
                        "else 640,640)")
    add_vdsp_option(c)
    add_run_options(c, resume=False)

    r = add_command(lsub, "run", cmd_run)
    r.add_argument("--cuts", required=True, metavar="DIR", help="the folder localize cut wrote")
    r.add_argument("--device", required=True, choices=list(CUT_DEVICES),
                   help="backend/dtype: " + "; ".join(f"{k}: {v}" for k, v in CUT_DEVICES.items()))
    r.add_argument("--out", required=True, metavar="DIR", help="folder for the cut outputs")
    r.add_argument("--segments-only", action="store_true",
                   help="run only the segments (what judge needs), not the prefixes")
    r.add_argument("--calibration", type=positive_int(10_000), default=8, metavar="N",
                   help="int8 devices: calibrate each cut on its first N inputs (default 8)")
    add_run_options(r, resume=False)

    j = add_command(lsub, "judge", cmd_judge)
    j.add_argument("--cuts", required=True, metavar="DIR", help="the folder localize cut wrote")
    j.add_argument("--outputs", required=True, metavar="DIR",
                   help="the device's outputs: one folder per cut (NN_<stage>.segment/, "
                        "optionally NN_<stage>.prefix/) of output_NNNNNN.npz")
    j.add_argument("--dtype", "-D", default=None, choices=DTYPES,
                   help="the device's arithmetic, whose bands apply (default: what "
                        "localize_run.json records; needed for a vendor's outputs)")
    j.add_argument("--bands", default=None, metavar="FILE",
                   help="bands file (default: the shipped data/localize_bands.toml)")
    j.add_argument("--device-name", default=None, metavar="NAME",
                   help="how the device is named in the verdict and report")
    j.add_argument("--out", default=None, metavar="DIR",
                   help="write localize.json, localize.md, localize.png and report.html here")
    from scrfd_ref.cli.localize_trials import register_trials

    register_trials(lsub)
