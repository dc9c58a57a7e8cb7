"""Sub-command ``diagnose``: name the likely cause of a failing device from its dump."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scrfd_ref.cli.args import add_json_option, add_vdsp_option, positive_int
from scrfd_ref.core.dtypes import DTYPES
from scrfd_ref.core.errors import DataMissingError, UsageError
from scrfd_ref.formats import datadir as data_mod
from scrfd_ref.formats.files import display, input_dir, input_file, output_file, write_text


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Rank the likely causes of a device's mismatch with the reference (``--device-outputs``
    raw heads, or ``--predictions`` WIDER files alone).

    Replay the first --count images of the dump folder (output_*.npz beside its
    datalist), run the fp32 reference on the same images with the dump's recorded
    profile (or --vdsp-params), and judge the device first with its dtype's gates (heads,
    foreground anchors, detections, size buckets, score collapse on those images). Then
    test each known cause by undoing it on the device's raw heads: a head scaled or
    offset, one box / landmark channel scaled or offset, score logits biased, sigmoid
    twice or missing, box channels in tlbr order, a landmark pair swapped, the anchors of
    a cell swapped, outputs shifted / swapped / repeated against the datalist, a dead
    head, values clipped at a constant, NaN / Inf, int8 outputs never dequantized, the
    preprocessing (the reference re-run with each variant, compared on the same
    foreground anchors), and the precision: which dtype's honest device (fp32, fp16 and
    bf16 storage, int8 default recipe and, with the OpenVINO extra, NNCF int8, run on the
    same images) the device's noise level
    matches. A cause is named when undoing it raises the foreground SNR by the gates'
    diagnose_min_gain_db (a fit on one head needs diagnose_min_fg_anchors foreground
    anchors), or when the claimed dtype's noise level does not fit within
    diagnose_precision_margin_db and another dtype's does; otherwise "no known cause
    matches" with the hypotheses that bring the device closer. A device that passes its
    gates gets observations, not causes. Exit 1 when the device fails a gate (cause
    named or not) or when the images cannot decide a gate (inconclusive, unless
    --accept-inconclusive), 0 when it passes.

    With --predictions (WIDER files only) the device is judged with its dtype's
    detection, size-bucket and collapse gates, and the hypotheses are changes of the
    reference pipeline tested on detections (module
    scrfd_ref.diagnose.predictions): another profile, score threshold, NMS,
    integer rounding, boxes not mapped back, the preprocessing variants and the input
    size (margin diagnose_pred_min_gain_db), and the precision: the score and box jitter
    of matched detections against the honest devices' (margin
    diagnose_pred_precision_margin_db, at least diagnose_pred_min_matched pairs).
    """
    from scrfd_ref.cli.args import read_vdsp_option, resolve_model
    from scrfd_ref.conformance.gates import Gates
    from scrfd_ref.core.profiles import get_profile
    from scrfd_ref.device.flow import decode_profile, dump_source
    from scrfd_ref.diagnose.run import diagnose_outputs
    from scrfd_ref.formats.vdsp import apply_vdsp

    if args.predictions:
        return _diagnose_predictions(args)
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
    dtype = _dtype(args, identity, outputs / "scrfd_dump.json")
    images = (input_dir(args.images, "--images", "image folder") if args.images else
              data_mod.require(data_mod.widerface_dir(data_mod.data_dir(args.data_dir))
                               / "WIDER_val" / "images", "WIDER val images"))
    vdsp = read_vdsp_option(args)
    recorded = (identity.get("profile") or {}).get("name", "device-flow")
    requested = apply_vdsp(get_profile(recorded), vdsp) if vdsp is not None else None
    profile, _ = decode_profile(source, requested, force=vdsp is not None)
    result, seen = diagnose_outputs(outputs, model, images, profile, gates, dtype,
                                    count=args.count, progress=not args.quiet)
    head = (f"diagnose: {display(outputs)} ({dtype}, {len(seen.get('images', []))} images, "
            f"profile {profile.name}) against {display(model)}")
    datalist = outputs / "datalist.txt"
    hint = localize_hint(model, datalist if datalist.is_file() else None)
    return _report(args, head, result, seen, hint)


def localize_hint(model: Path, datalist: Path | None) -> str:
    """The next step for a failing device whose heads no known cause explains: cut the
    network at its stages, run the cuts on the device, judge which stage diverges."""
    images = display(datalist) if datalist is not None else "DATALIST"
    return (f"next: find the stage inside the network that diverges: scrfd-ref localize cut "
            f"--model {display(model)} --datalist {images} --out CUTS, run CUTS/models/*.onnx "
            "on the device (or scrfd-ref localize run), then scrfd-ref localize judge --cuts "
            "CUTS --outputs DIR")


def _dtype(args: argparse.Namespace, identity: dict, manifest) -> str:
    """The dtype whose gates apply: the recorded one; --dtype only when it agrees with it
    or with --force-dtype (a differing --dtype would judge the device by other margins)."""
    recorded = identity.get("dtype")
    if args.dtype and recorded and args.dtype != recorded and not args.force_dtype:
        raise UsageError(f"--dtype {args.dtype}: the dump's manifest {display(manifest)} "
                         f"records dtype {recorded}; drop --dtype, or pass --force-dtype to "
                         f"judge it with the {args.dtype} gates anyway")
    return args.dtype or recorded or "fp32"


def _report(args: argparse.Namespace, head: str, result, seen: dict,
            hint: str | None = None) -> int:
    """Print the verdict and the ranked causes (and write --json); exit 1 when the
    device failed (or, without a verdict, when a cause is named), or when the images
    cannot decide a gate unless --accept-inconclusive."""
    text = sys.stderr if args.json == "-" else sys.stdout
    print(head, file=text)
    for line in result.lines():
        print(f"  {line}", file=text)
    unexplained = hint is not None and result.failed and not result.causes
    if unexplained:
        print(f"  {hint}", file=text)
    if args.json:
        doc = json.dumps({**result.to_dict(), "looked_at": seen,
                          **({"next_step": hint} if unexplained else {})}, indent=1) + "\n"
        if args.json == "-":
            sys.stdout.write(doc)
        else:
            write_text(args.json, doc)
    if result.inconclusive and args.accept_inconclusive:
        print("  inconclusive gates accepted (--accept-inconclusive): not evidence that the "
              "device conforms", file=text)
        return 0
    if result.failed or result.inconclusive:   # every non-zero exit says why on stderr
        what = ("the device fails a gate" if result.failed else
                "the images cannot decide a gate (inconclusive; --accept-inconclusive accepts it)")
        print(f"scrfd-ref diagnose: {what}: the causes are listed above", file=sys.stderr)
        return 1
    return 0


def _spread(keys: list, count: int) -> list:
    """``count`` keys spread evenly over the sorted list (every event contributes)."""
    if len(keys) <= count:
        return keys
    return [keys[(i * len(keys)) // count] for i in range(count)]


def _diagnose_predictions(args: argparse.Namespace) -> int:
    """``diagnose --predictions DIR``: post-processing and preprocessing hypotheses tested
    on the device's WIDER prediction files alone."""
    from scrfd_ref.backends import get_backend
    from scrfd_ref.cli.args import read_vdsp_option, resolve_model
    from scrfd_ref.conformance.gates import Gates
    from scrfd_ref.core.errors import InputError
    from scrfd_ref.core.profiles import get_profile, profile_from_dict
    from scrfd_ref.diagnose.predictions import diagnose_predictions
    from scrfd_ref.formats.dataset import list_images
    from scrfd_ref.formats.manifest import RUN_MANIFEST, read_source
    from scrfd_ref.formats.vdsp import apply_vdsp
    from scrfd_ref.formats.wider_txt import read_prediction_dir

    preds_dir = input_dir(args.predictions, "--predictions", "prediction folder")
    if args.json and args.json != "-":
        output_file(args.json, "--json", inputs=[preds_dir])
    gates = Gates.load(input_file(args.gates, "--gates", "gates file") if args.gates else None)
    identity = read_source(preds_dir, RUN_MANIFEST, allow_incomplete=True,
                           option="--predictions").identity
    model = resolve_model(args.model, args.data_dir)
    dtype = _dtype(args, identity, preds_dir / "scrfd_run.json")
    vdsp = read_vdsp_option(args)
    if args.profile:
        profile = get_profile(args.profile)
    elif identity.get("profile"):
        profile = profile_from_dict(identity["profile"])
    else:
        profile = get_profile("widerface-eval")
    if vdsp is not None:
        profile = apply_vdsp(profile, vdsp)
    device = read_prediction_dir(preds_dir)
    images = (input_dir(args.images, "--images", "image folder") if args.images else
              data_mod.require(data_mod.widerface_dir(data_mod.data_dir(args.data_dir))
                               / "WIDER_val" / "images", "WIDER val images"))
    by_key = {(it.event, it.name): it for it in list_images(images)}
    keys = sorted(k for k in device if k in by_key)
    if not keys:
        raise InputError(f"--predictions {display(preds_dir)}: none of its {len(device)} "
                         f"prediction files names an image of --images {display(images)}; "
                         "give the folder of the images the device ran on")
    if len(keys) < len(device):
        print(f"diagnose: {len(device) - len(keys)} prediction files have no image in "
              f"{display(images)} and are left out", file=sys.stderr)
    items = [by_key[k] for k in _spread(keys, args.count)]
    with get_backend("ort", model) as backend:
        result, facts = diagnose_predictions(
            backend, items, {(it.event, it.name): device[(it.event, it.name)] for it in items},
            profile, min_gain_db=gates.value(dtype, "detections", "diagnose_pred_min_gain_db"),
            gates=gates, dtype=dtype, model=model)
    seen = {"predictions": str(preds_dir), "model": str(model), "dtype": dtype,
            "profile": profile.name, "images": [f"{it.event}/{it.name}" for it in items],
            "facts": facts}
    head = (f"diagnose: {display(preds_dir)} (prediction files, {dtype}, {len(items)} "
            f"images, reference profile {profile.name}) against {display(model)}")
    return _report(args, head, result, seen)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``diagnose`` to the main parser."""
    from scrfd_ref.cli.args import add_command
    from scrfd_ref.core.profiles import PROFILES
    from scrfd_ref.diagnose.run import DEFAULT_IMAGES

    p = add_command(sub, "diagnose", cmd_diagnose)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--device-outputs", metavar="DIR",
                      help="the dump folder: output_*.npz with its datalist (and "
                           "scrfd_dump.json)")
    what.add_argument("--predictions", metavar="DIR",
                      help="only the device's WIDER prediction files (<event>/<name>.txt): "
                           "test post-processing (threshold, NMS, rounding, boxes not mapped "
                           "back, another profile) and preprocessing hypotheses on detections")
    p.add_argument("--profile", "-P", default=None, choices=sorted(PROFILES),
                   help="--predictions: the profile the device claims to follow (default: "
                        "the folder's scrfd_run.json, else widerface-eval)")
    p.add_argument("--model", "-m", default=None,
                   help="the fp32 ONNX model or variant the device runs (default: the dump's "
                        "recorded variant; with --predictions the default variant)")
    p.add_argument("--dtype", "-D", default=None, choices=DTYPES,
                   help="whose gates give the margins (default: the dump's recorded dtype; "
                        "another one than the recorded needs --force-dtype)")
    p.add_argument("--force-dtype", action="store_true",
                   help="use --dtype although the folder's manifest (scrfd_dump.json, "
                        "scrfd_run.json) records another dtype (the manifest wins otherwise)")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="the original images, event folders (default: WIDER val of the data "
                        "folder)")
    p.add_argument("--count", type=positive_int(10_000), default=DEFAULT_IMAGES, metavar="N",
                   help=f"images to diagnose: the first of the datalist, or with --predictions "
                        f"spread over the events (default {DEFAULT_IMAGES})")
    p.add_argument("--gates", default=None, metavar="FILE",
                   help="gates file with the margins (default: the shipped data/gates.toml)")
    p.add_argument("--accept-inconclusive", action="store_true",
                   help="exit 0 when the device fails no gate but the images cannot decide "
                        "some (too few faces of a size); default: exit 1 like a failure")
    add_vdsp_option(p)
    add_json_option(p, "the ranked causes and their evidence")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
