"""Sub-commands ``check-config`` (lint the device's config files) and ``quantize``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scrfd_ref.cli.args import _bounded, add_command, add_vdsp_option, positive_int, size
from scrfd_ref.core.dtypes import DTYPES
from scrfd_ref.core.errors import InputError, UsageError, problem_list
from scrfd_ref.formats.files import display, input_dir, output_dir, output_file

#: image suffixes taken from --calib-images when the build YAML names none
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_count = positive_int(100_000)
_percentile = _bounded(float, lambda v: 0 < v <= 100, "a percentile in (0, 100]")


def _read_configs(args: argparse.Namespace):
    """The ``--vdsp-params`` and ``--build-yaml`` files, read (None when not given)."""
    from scrfd_ref.cli.args import read_vdsp_option
    from scrfd_ref.formats.build_yaml import read_build_yaml

    vdsp = read_vdsp_option(args)
    recipe = read_build_yaml(args.build_yaml) if args.build_yaml else None
    return vdsp, recipe


def cmd_check_config(args: argparse.Namespace) -> int:
    """Cross-check a model, its vdsp params file and its build YAML.

    Lint the device configuration against the model and against what SCRFD was trained
    on (RGB, (x - 127.5) / 128): the vdsp output size against the model's fixed input
    (or, for a dynamic model, the build YAML's shape and --input-size, default 640),
    the normalisation, BGR without conversion, pitches, unknown keys and values (with
    the closest valid name), and the YAML's calibration resize and normalisation against
    the vdsp file. One line per finding: severity, field, message. Exit 1 when any error
    is found, 0 when clean or only warnings, 2 when a file is missing or does not parse.
    """
    from scrfd_ref.cli.args import resolve_model
    from scrfd_ref.device.config_lint import check_config

    if not (args.vdsp_params or args.build_yaml):
        raise UsageError("give --vdsp-params FILE and/or --build-yaml FILE to check")
    model = resolve_model(args.model, args.data_dir) if args.model else None
    vdsp, recipe = _read_configs(args)
    findings = check_config(model, vdsp, recipe, args.input_size)
    checked = [display(p) for p in (model, args.vdsp_params, args.build_yaml) if p]
    for f in findings:
        print(str(f))
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    print(f"check-config: {errors} error(s), {warnings} warning(s) in {', '.join(checked)}")
    if errors:
        raise InputError(f"{errors} configuration error(s) (listed above): the device would not "
                         "compute what SCRFD expects; fix the files before judging the device")
    return 0


def _calibration_images(args: argparse.Namespace, recipe, count: int) -> list[Path] | None:
    """The calibration images: --calib-images, else the YAML's folder when it exists, else
    None (the data folder's WIDER val images)."""
    folder = args.calib_images
    if folder is None and recipe is not None and recipe.calib_path:
        if Path(recipe.calib_path).is_dir():
            folder = recipe.calib_path
        else:
            print(f"scrfd-ref quantize: notice: the build YAML's calibration folder "
                  f"{recipe.calib_path} does not exist here; calibrating on the data folder's "
                  "WIDER val images (give --calib-images DIR to choose)", file=sys.stderr)
    if folder is None:
        return None
    root = input_dir(folder, "--calib-images", "calibration image folder")
    suffixes = ((f".{recipe.calib_suffix.lstrip('.').lower()}",) if recipe is not None
                and recipe.calib_suffix else IMAGE_SUFFIXES)
    found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not found:
        raise InputError(f"--calib-images {display(root)}: no {'/'.join(suffixes)} images in it")
    if len(found) < count:
        print(f"scrfd-ref quantize: notice: {len(found)} calibration image(s) in "
              f"{display(root)}, fewer than the {count} asked for; using them all",
              file=sys.stderr)
    from scrfd_ref.quantize.calibration import choose_calibration_images

    return choose_calibration_images(found, count)


def _recipe_of(args: argparse.Namespace, build):
    """The int8 :class:`~scrfd_ref.quantize.convert.QuantRecipe`: the YAML's (or the
    project's default), with --method / --percentile / --calib-count on top."""
    from scrfd_ref.quantize.convert import QuantRecipe

    recipe = QuantRecipe.from_build_yaml(build) if build is not None else QuantRecipe()
    changes = {}
    if args.method:
        changes["method"] = args.method
    if args.percentile is not None:
        changes["percentile"] = args.percentile
    if args.calib_count:
        changes["calib_count"] = args.calib_count
    if args.no_search:
        changes["mixed_precision"] = False
    if args.float_nodes:
        changes["float_nodes"] = tuple(n.strip() for n in args.float_nodes.split(",")
                                       if n.strip())
    if not changes:
        return recipe
    import dataclasses

    return dataclasses.replace(recipe, **changes)


def _input_size(model: Path, build, args: argparse.Namespace) -> tuple[int, int]:
    """The calibration input size: the model's fixed input, else --input-size, else the
    build YAML's shape or resize, else 640x640."""
    from scrfd_ref.device.config_lint import DEFAULT_INPUT_SIZE, model_input_size

    w, h = model_input_size(model)
    if w and h:
        return w, h
    if args.input_size:
        return tuple(args.input_size)
    if build is not None and build.input_shape and len(build.input_shape) == 4:
        return build.input_shape[3], build.input_shape[2]
    if build is not None and build.ops.resize_long_side:
        return build.ops.resize_long_side, build.ops.resize_long_side
    return DEFAULT_INPUT_SIZE


def cmd_quantize(args: argparse.Namespace) -> int:
    """Convert an fp32 model to fp16 or int8 (the build YAML's recipe or the default).

    Convert a standard SCRFD ONNX file. fp16: float16 inside, float32 input and outputs.
    int8: ONNX Runtime static QDQ quantization calibrated on images (default: the 50
    committed WIDER val images of data/calibration_images.txt; --calib-images DIR picks 50
    spread over the folder), per-channel int8 weights, uint8 activations, head outputs in
    float. Without --build-yaml the project's default recipe: percentile 99.999
    calibration plus an automatic mixed-precision search that keeps the most sensitive
    weighted nodes in float (at most 6, at least 90% of the MACs int8) until the int8
    detections agree with fp32's on the calibration images (no labels needed);
    --no-search turns the search off, --float-nodes names nodes to keep float. With
    --build-yaml the YAML's recipe (the vendor's: max calibration, per channel, its image
    count, resize / pad / normalise, every node int8). --method / --percentile /
    --calib-count override either. An explicit --dtype that disagrees with the YAML's
    wins, with a warning. The YAML is checked first (as check-config does); an error in
    it stops the conversion. --report DIR writes report.html, report.json and report.md:
    per-node sensitivity (SQNR), the search, the float nodes and their latency cost. Without --out
    the file goes to the model cache the conformance fixtures use (its path is printed).
    """
    import shutil

    from scrfd_ref.cli.args import resolve_model
    from scrfd_ref.device.config_lint import check_config
    from scrfd_ref.device.model_summary import conversion_summary
    from scrfd_ref.formats.files import atomic_write
    from scrfd_ref.quantize.convert import convert_model

    model = resolve_model(args.model, args.data_dir)
    from scrfd_ref.device.model_identity import model_arithmetic

    arith, evidence = model_arithmetic(model)
    if arith != "fp32":  # converting a converted file quantizes its rounding errors again
        raise UsageError(f"--model {display(model)}: an {arith} model already ({evidence}); "
                         "quantize converts the fp32 model: give that one")
    if args.method == "nncf":
        return _quantize_nncf(args, model)
    _, build = _read_configs(args)
    if args.out:
        output_file(args.out, "--out", inputs=[model] + ([args.build_yaml] if build else []))
    if args.report:
        output_dir(args.report, "--report", inputs=[model])
    dtype = args.dtype or (build.dtype if build is not None else "int8")
    if build is not None and args.dtype and args.dtype != build.dtype:
        print(f"scrfd-ref quantize: warning: --dtype {args.dtype} overrides the build YAML's "
              f"dtype {build.dtype} ({display(args.build_yaml)})", file=sys.stderr)
    if build is not None:
        findings = check_config(model, None, build, args.input_size)
        for f in findings:
            if f.severity == "warning":
                print(f"scrfd-ref quantize: warning: {f.field}: {f.message}", file=sys.stderr)
        errors = [f"{f.field}: {f.message}" for f in findings if f.severity == "error"]
        if errors:
            raise problem_list(errors, f"--build-yaml {display(args.build_yaml)} (scrfd-ref "
                                       "check-config explains each)")
    recipe = _recipe_of(args, build)
    input_size = _input_size(model, build, args)
    images = (_calibration_images(args, build, recipe.calib_count) if dtype == "int8"
              else None)
    converted = convert_model(model, dtype, calibration_images=images, recipe=recipe,
                              input_size=input_size, progress=not args.quiet)
    target = converted
    if args.out:
        with atomic_write(args.out, "wb") as dst, open(converted, "rb") as src:
            shutil.copyfileobj(src, dst)
        target = Path(args.out)
    summary = conversion_summary(target)
    print(f"quantize: {display(model)} -> {display(target)} ({dtype})")
    print(f"  {summary.describe(dtype)}")
    if dtype == "int8":
        used = min(recipe.calib_count, len(images)) if images is not None else recipe.calib_count
        print(f"  calibration: {used} image(s), {recipe.method}"
              f"{f' {recipe.percentile}' if recipe.method == 'percentile' else ''}, "
              f"{'per channel' if recipe.per_channel else 'per tensor'}, input "
              f"{input_size[0]}x{input_size[1]}, recipe {recipe.source}")
        _print_record(converted, args.report, model)
    if not args.out:
        print("  (in the model cache the conformance fixtures use; --out FILE writes a copy)")
    return 0


def _quantize_nncf(args: argparse.Namespace, model: Path) -> int:
    """``quantize --method nncf``: OpenVINO's NNCF post-training int8 (an OpenVINO IR run
    by ``--backend openvino --dtype int8``), calibrated on the same images as the ORT
    recipes."""
    import json
    import shutil

    from scrfd_ref.formats.files import atomic_write, make_dir, write_text
    from scrfd_ref.quantize.nncf_int8 import nncf_model

    wrong = [opt for opt, given in (("--build-yaml", args.build_yaml),
                                    ("--percentile", args.percentile is not None),
                                    ("--no-search", args.no_search),
                                    ("--float-nodes", args.float_nodes)) if given]
    if wrong:
        raise UsageError(f"{wrong[0]}: does not apply to --method nncf (NNCF's own recipe: "
                         "symmetric per-channel weights, per-tensor activations, bias "
                         "correction)")
    if args.dtype not in (None, "int8"):
        raise UsageError(f"--dtype {args.dtype}: --method nncf quantizes to int8")
    if args.out and Path(args.out).suffix != ".xml":
        raise UsageError(f"--out {display(args.out)}: NNCF writes an OpenVINO IR; name it "
                         "*.xml (the weights go beside it as *.bin)")
    if args.out:
        output_file(args.out, "--out", inputs=[model])
        output_file(Path(args.out).with_suffix(".bin"), "--out (.bin)", inputs=[model])
    if args.report:
        output_dir(args.report, "--report", inputs=[model])
    count = args.calib_count or 50
    images = _calibration_images(args, None, count)
    input_size = _input_size(model, None, args)
    converted = nncf_model(model, input_size=input_size, calibration_images=images,
                           num_calibration=count, progress=not args.quiet)
    target = converted
    if args.out:
        out = Path(args.out)
        for suffix in (".bin", ".xml"):   # the weights first: an .xml is never alone
            with atomic_write(out.with_suffix(suffix), "wb") as dst, \
                    open(converted.with_suffix(suffix), "rb") as src:
                shutil.copyfileobj(src, dst)
        target = out
    record = json.loads(converted.with_suffix(".json").read_text())
    print(f"quantize: {display(model)} -> {display(target)} (int8, NNCF "
          f"{record['versions']['nncf']}, OpenVINO IR)")
    print(f"  calibration: {len(record['images'])} image(s), input {input_size[0]}x"
          f"{input_size[1]}; run it with --backend openvino --dtype int8")
    if args.report:
        folder = make_dir(args.report, "--report")
        write_text(folder / "report.json", json.dumps(record, indent=1) + "\n")
        write_text(folder / "report.md", "# NNCF int8\n\n" + "\n".join(
            f"- {k}: `{json.dumps(v)}`" for k, v in record.items() if k != "images")
            + f"\n- calibration images: {len(record['images'])}\n")
        print(f"  report: {display(folder / 'report.md')}, {display(folder / 'report.json')}")
    if not args.out:
        print("  (in the model cache the conformance fixtures use; --out FILE.xml writes a copy)")
    return 0


def _print_record(converted: Path, report: str | None, model: Path) -> None:
    """The float nodes, int8 share and latency of an int8 conversion; --report files."""
    import json

    from scrfd_ref.formats.files import make_dir, write_text
    from scrfd_ref.quantize.convert import conversion_record
    from scrfd_ref.quantize.int8_report import report_markdown
    from scrfd_ref.report.html_int8 import render_quantize_html

    record = conversion_record(converted)
    if record is None:
        raise InputError(f"{display(converted)}: the conversion record "
                         f"{converted.with_suffix('.json').name} is missing or unreadable; "
                         "remove the cached model to rebuild it")
    search = record.get("search")
    nodes = (search or {}).get("float_nodes") or record["settings"].get("float_nodes") or []
    print(f"  float nodes: {', '.join(nodes) or 'none'}; int8 MACs "
          f"{100 * record['int8_mac_share']:.1f}%"
          + (f"; search agreement {search['steps'][search['chosen']]['agreement']:.4f} "
             f"(target {search['target']}{'' if search['met'] else ', NOT met'})"
             if search else ""))
    if record.get("search_skipped"):
        print(f"scrfd-ref quantize: warning: mixed-precision search skipped: "
              f"{record['search_skipped']}", file=sys.stderr)
    lat = record.get("latency_ms")
    if lat:
        print(f"  latency (CPU, median): fp32 {lat['fp32']:.1f} ms, all-int8 "
              f"{lat['all_int8']:.1f} ms, this model {lat['chosen']:.1f} ms")
    if report:
        folder = make_dir(report, "--report")
        write_text(folder / "report.json", json.dumps(record, indent=1) + "\n")
        write_text(folder / "report.md", report_markdown(record, model.name))
        html = write_text(folder / "report.html", render_quantize_html(record, model.name))
        print(f"  report: {display(html)} (open in a browser), "
              f"{display(folder / 'report.md')}, {display(folder / 'report.json')}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``check-config`` and ``quantize`` to the main parser."""
    from scrfd_ref.quantize.convert import CALIBRATION_METHODS

    p = add_command(sub, "check-config", cmd_check_config)
    p.add_argument("--model", "-m", default=None,
                   help="ONNX model or variant name (its input shape is checked against the "
                        "files)")
    add_vdsp_option(p)
    p.add_argument("--build-yaml", default=None, metavar="FILE",
                   help="the vamc build YAML (model shape, dtype, calibration recipe)")
    p.add_argument("--input-size", type=size, default=None, metavar="W,H",
                   help="the input size a dynamic model is run at (default 640,640)")

    p = add_command(sub, "quantize", cmd_quantize)
    p.add_argument("--model", "-m", default=None,
                   help="standard fp32 ONNX export or variant name (default 500m_bnkps)")
    p.add_argument("--dtype", "-D", default=None, choices=[d for d in DTYPES if d != "fp32"],
                   help="target precision (default: the build YAML's, else int8); bf16 writes "
                        "the bf16-storage emulation (every tensor rounded to bfloat16)")
    p.add_argument("--build-yaml", default=None, metavar="FILE",
                   help="follow this vamc build YAML's recipe (calibration mode, per channel, "
                        "image count, resize / pad / normalise)")
    p.add_argument("--calib-images", default=None, metavar="DIR",
                   help="calibration images (searched recursively; default: the YAML's "
                        "calib path when it exists, else WIDER val images of the data folder)")
    p.add_argument("--calib-count", type=_count, default=None, metavar="N",
                   help="number of calibration images (default: the YAML's get_data_num, "
                        "else 50)")
    p.add_argument("--method", default=None, choices=[*sorted(CALIBRATION_METHODS), "nncf"],
                   help="calibration method (default: the YAML's calibrate_mode, else "
                        "percentile); nncf: OpenVINO's NNCF post-training int8 instead of "
                        "ONNX Runtime's (pip install -e '.[openvino]'; --out must be an .xml "
                        "IR; run with --backend openvino --dtype int8)")
    p.add_argument("--percentile", type=_percentile, default=None, metavar="P",
                   help="the percentile of --method percentile (default 99.999)")
    p.add_argument("--input-size", type=size, default=None, metavar="W,H",
                   help="calibration input size of a dynamic model (default: the YAML's "
                        "shape, else 640,640)")
    p.add_argument("--out", "-o", default=None, metavar="FILE",
                   help="write the converted model here (default: only the model cache)")
    p.add_argument("--no-search", action="store_true",
                   help="int8: no mixed-precision search (every weighted node int8 but "
                        "--float-nodes)")
    p.add_argument("--float-nodes", default=None, metavar="NODE,...",
                   help="int8: ONNX node names to keep in float (e.g. Conv_2)")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="int8: write report.json and report.md (sensitivity, search, float "
                        "nodes, latency) to DIR")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
