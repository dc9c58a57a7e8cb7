"""Sub-command ``diagnose``: name the likely cause of a failing device from its dump."""
from __future__ import annotations

import argparse
import json
import sys

from scrfd_ref.cli.args import add_json_option, add_vdsp_option, positive_int
from scrfd_ref.core.errors import DataMissingError
from scrfd_ref.formats import datadir as data_mod
from scrfd_ref.formats.files import display, input_dir, input_file, output_file, write_text


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Rank the likely causes of a device dump's mismatch with the reference.

    Replay the first --count images of the dump folder (output_*.npz beside its
    datalist), run the fp32 reference on the same images with the dump's recorded
    profile (or --vdsp-params), and test each known cause by undoing it on the device's
    raw heads: a head scaled or offset, score logits biased, sigmoid twice or missing, box
    channels in tlbr order, a landmark pair swapped, the anchors of a cell swapped, outputs
    shifted / swapped / repeated against the datalist, a dead head, values clipped at a
    constant, NaN / Inf, int8 outputs never dequantized. A cause is named when undoing it
    raises the foreground SNR by the gates' diagnose_min_gain_db (data/gates.toml, per
    dtype); otherwise "no known cause matches" with the closest ones. Exit 1 when a cause
    is named, 0 when none.
    """
    from scrfd_ref.cli.args import read_vdsp_option, resolve_model
    from scrfd_ref.conformance.diagnose_run import diagnose_outputs
    from scrfd_ref.conformance.gates import Gates
    from scrfd_ref.core.profiles import get_profile
    from scrfd_ref.device.flow import decode_profile, dump_source
    from scrfd_ref.formats.vdsp import apply_vdsp

    outputs = input_dir(args.device_outputs, "--device-outputs", "device output folder")
    if args.json and args.json != "-":
        output_file(args.json, "--json", inputs=[outputs])
    gates = Gates.load(input_file(args.gates, "--gates", "gates file") if args.gates else None)
    source = dump_source(outputs, allow_incomplete=True, option="--device-outputs")
    identity = source.identity
    model_name = args.model or identity.get("variant")
    if not model_name:
        raise DataMissingError(f"--device-outputs {display(outputs)}: the dump does not record "
                               "its variant; give --model")
    model = resolve_model(model_name, args.data_dir)
    dtype = args.dtype or identity.get("dtype") or "fp32"
    images = (input_dir(args.images, "--images", "image folder") if args.images else
              data_mod.require(data_mod.widerface_dir(data_mod.data_dir(args.data_dir))
                               / "WIDER_val" / "images", "WIDER val images"))
    vdsp = read_vdsp_option(args)
    recorded = (identity.get("profile") or {}).get("name", "device-flow")
    requested = apply_vdsp(get_profile(recorded), vdsp) if vdsp is not None else None
    profile, _ = decode_profile(source, requested, force=vdsp is not None)
    result, seen = diagnose_outputs(outputs, model, images, profile, gates, dtype,
                                    count=args.count, progress=not args.quiet)
    text = sys.stderr if args.json == "-" else sys.stdout
    print(f"diagnose: {display(outputs)} ({dtype}, {len(seen.get('images', []))} images, "
          f"profile {profile.name}) against {display(model)}", file=text)
    for line in result.lines():
        print(f"  {line}", file=text)
    if args.json:
        doc = json.dumps({**result.to_dict(), "looked_at": seen}, indent=1) + "\n"
        if args.json == "-":
            sys.stdout.write(doc)
        else:
            write_text(args.json, doc)
    return 1 if result.causes else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``diagnose`` to the main parser."""
    from scrfd_ref.cli.args import add_command
    from scrfd_ref.conformance.diagnose_run import DEFAULT_IMAGES

    p = add_command(sub, "diagnose", cmd_diagnose)
    p.add_argument("--device-outputs", required=True, metavar="DIR",
                   help="the dump folder: output_*.npz with its datalist (and scrfd_dump.json)")
    p.add_argument("--model", "-m", default=None,
                   help="the fp32 ONNX model or variant the device runs (default: the dump's "
                        "recorded variant)")
    p.add_argument("--dtype", "-D", default=None, choices=("fp32", "fp16", "int8"),
                   help="whose gates give the margins (default: the dump's recorded dtype)")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="the original images, event folders (default: WIDER val of the data "
                        "folder)")
    p.add_argument("--count", type=positive_int(10_000), default=DEFAULT_IMAGES, metavar="N",
                   help=f"images to diagnose, from the start of the datalist (default "
                        f"{DEFAULT_IMAGES})")
    p.add_argument("--gates", default=None, metavar="FILE",
                   help="gates file with the margins (default: the shipped data/gates.toml)")
    add_vdsp_option(p)
    add_json_option(p, "the ranked causes and their evidence")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
