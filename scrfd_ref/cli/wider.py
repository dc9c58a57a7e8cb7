"""Sub-commands ``wider-run`` (the detector over WIDER images -> prediction txt files)
and ``eval`` (official WIDER FACE AP of a prediction folder).

Prints the AP lines exactly as the official evaluation tool does, then a small table;
optionally writes the JSON summary (``-`` for stdout; the text then goes to stderr so
stdout stays pure JSON) and a PR-curve PNG. Every prediction file is read and checked
before anything is computed, and every bad one is listed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from scrfd_ref.cli.args import (
    add_command,
    add_json_option,
    add_model_options,
    add_run_options,
    make_detector,
    non_negative_int,
    unique,
)
from scrfd_ref.formats import datadir as data_mod
from scrfd_ref.formats.files import display, input_dir, output_dir, output_file, write_text
from scrfd_ref.widerface.evaluate import KERNELS, WiderResult

OFFICIAL_LABELS = {"easy": "Easy  ", "medium": "Medium", "hard": "Hard  ", "all": "All   "}


def cmd_wider_run(args: argparse.Namespace) -> int:
    """Run the detector over WIDER FACE images -> txt files.

    Run the detector over <images>/<event>/*.jpg and write WIDER FACE prediction files
    <out>/<event>/<name>.txt (x y w h score, original pixels, every box kept as
    insightface's test_widerface.py writes them) and the run manifest scrfd_run.json.
    Re-running the same run resumes (images with a prediction file are skipped); a
    folder written by another model, profile or image list is refused unless
    --overwrite. Default profile: widerface-eval (the published-AP settings). One
    one-thread model session per core takes whole images (--workers); the summary gives the
    throughput and the time per stage (--json too).
    """
    from scrfd_ref.widerface.run import list_images, run_dataset

    images = (input_dir(args.images, "--images", "image folder") if args.images else
              data_mod.require(data_mod.widerface_dir(data_mod.data_dir(args.data_dir))
                               / "WIDER_val" / "images", "WIDER val images"))
    output_dir(args.out, "--out", inputs=[images])
    items = list_images(images, unique(args.events, "--events"))
    if args.json and args.json != "-":
        output_file(args.json, "--json", inputs=[images])
    model, det = make_detector(args, "widerface-eval")
    summary = run_dataset(det, items, args.out, resume=not args.no_resume,
                          progress=not args.quiet, overwrite=args.overwrite,
                          workers=args.workers)
    text = sys.stderr if args.json == "-" else sys.stdout
    if summary.written == 0:
        print(f"wider-run: all {summary.total} images were done already in {display(args.out)} "
              "(same run); nothing to do", file=text)
    else:
        print(f"wider-run: {summary.total} images ({summary.skipped} already done, "
              f"{summary.written} written, {summary.detections} detections, "
              f"{summary.inverted} with a negative width or height, kept) -> "
              f"{display(args.out)}", file=text)
        print(f"throughput {summary.images_per_s:.1f} images/s ({summary.wall_s:.2f} s, "
              f"{summary.workers} workers); {summary.stage_line()}", file=text)
    print(f"model {display(model)}, profile {det.profile.name}: score >= "
          f"{det.profile.score_thr}, NMS {det.profile.nms_thr}, input "
          f"{det.profile.input_size[0]}x{det.profile.input_size[1]}", file=text)
    if args.json:
        doc = json.dumps({**summary.to_dict(), "model": str(model),
                          "profile": det.profile.to_dict()}, indent=1) + "\n"
        if args.json == "-":
            sys.stdout.write(doc)
        else:
            write_text(args.json, doc)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``wider-run`` and ``eval`` to the ``scrfd-ref`` parser."""
    sub = subparsers
    p = add_command(sub, "wider-run", cmd_wider_run)
    add_model_options(p)
    p.add_argument("--images", default=None, metavar="DIR",
                   help="WIDER_val/images folder (default: DATA/widerface/WIDER_val/images)")
    p.add_argument("--out", "-o", required=True, metavar="DIR",
                   help="prediction folder to write (created)")
    p.add_argument("--events", nargs="+", default=None, metavar="EVENT",
                   help="only these event folders (default: every event folder found; a "
                        "repeated name counts once)")
    p.add_argument("--workers", type=non_negative_int, default=None, metavar="N",
                   help="images processed at once, each by its own one-thread copy of the "
                        "model session (default: one per usable core; 1: every stage in turn "
                        "on one thread with ORT's default threads); the files are identical "
                        "either way")
    add_json_option(p, "the run summary: throughput and time per stage")
    add_run_options(p)

    p = add_command(subparsers, "eval", run_eval)
    p.add_argument("--pred", "-p", required=True, metavar="DIR",
                   help="prediction folder holding <event>/<name>.txt files")
    p.add_argument("--gt", "-g", default=None, metavar="DIR",
                   help="ground truth: folder with wider_face_val.mat and "
                        "wider_{easy,medium,hard}_val.mat, or a wider_face_val_bbx_gt.txt file "
                        "(without the three .mat lists beside it only the 'all faces' "
                        "setting is reported; default: DATA/widerface/ground_truth)")
    p.add_argument("--events", nargs="+", default=None, metavar="E",
                   help="evaluate only these events (e.g. 0--Parade 4--Dancing; a repeated "
                        "name counts once); default: every event of the ground truth")
    p.add_argument("--allow-missing", action="store_true",
                   help="treat images without a prediction file as having no detections "
                        "(default: report them and fail)")
    add_json_option(p, "the AP summary")
    p.add_argument("--plot", default=None, metavar="F.png",
                   help="save the precision/recall curves of the settings to this PNG")
    p.add_argument("--kernel", default="auto", choices=KERNELS,
                   help="matching implementation: auto (Cython when built), cython or numpy; "
                        "all give the same result")


def report_lines(result: WiderResult) -> list[str]:
    """The official tool's result block followed by a per-setting table."""
    ap = result.ap
    lines = ["==================== Results ===================="]
    lines += [f"{OFFICIAL_LABELS.get(s, s)} Val AP: {ap[s]}" for s in result.settings]
    lines += ["=================================================",
              f"{'setting':<8} {'AP':>8} {'faces':>7} {'max recall':>11}"]
    for s in result.settings:
        c = result.curves[s]
        max_rec = float(c.recall.max()) if c.recall.size else 0.0
        lines.append(f"{s:<8} {100 * ap[s]:7.2f}% {result.faces[s]:>7d} {max_rec:>11.4f}")
    ev = ", ".join(result.events[:6]) + (" ..." if len(result.events) > 6 else "")
    lines.append(f"images {result.images}, predictions {result.predictions}, "
                 f"events {len(result.events)} ({ev})")
    if result.missing:
        first = ", ".join("/".join(k) for k in result.missing[:3])
        lines.append(f"missing prediction files treated as empty: {len(result.missing)} "
                     f"({first}{' ...' if len(result.missing) > 3 else ''})")
    return lines


def _gt_path(args: argparse.Namespace) -> Path:
    if args.gt:
        p = Path(args.gt)
        if not p.exists():
            from scrfd_ref.core.errors import DataMissingError

            raise DataMissingError(f"--gt {display(p)}: ground truth not found")
        return p
    root = data_mod.data_dir(getattr(args, "data_dir", None))
    return data_mod.require(data_mod.widerface_dir(root) / "ground_truth", "WIDER ground truth")


def run_eval(args: argparse.Namespace, stdout: TextIO | None = None) -> int:
    """WIDER FACE easy/medium/hard AP of prediction txt files.

    Evaluate WIDER FACE prediction files <pred>/<event>/<name>.txt with the official
    protocol (global score normalisation, +1 IoU >= 0.5, don't-care boxes, 1000
    thresholds, VOC all-point AP); the APs equal the official Python port's bit for bit.
    Predictions need not be sorted; boxes with a negative width or height are evaluated
    as the official code does (one warning with their count). Every file is checked
    first and every bad one listed.
    """
    from scrfd_ref.formats.ground_truth import load_ground_truth
    from scrfd_ref.widerface.evaluate import evaluate_dir

    out = stdout or sys.stdout
    pred = input_dir(args.pred, "--pred", "prediction folder")
    gt_path = _gt_path(args)
    if args.json and args.json != "-":
        output_file(args.json, "--json", inputs=[pred, gt_path])
    if args.plot:
        output_file(args.plot, "--plot", inputs=[pred, gt_path])
    events = unique(args.events, "--events")
    gt = load_ground_truth(gt_path)
    unknown = [e for e in events or () if e not in gt.events]
    if unknown:
        from scrfd_ref.core.errors import UsageError

        raise UsageError(f"--events {' '.join(unknown[:5])}: not in the ground truth "
                         f"{display(gt.source)} ({len(gt.events)} events, e.g. "
                         f"{', '.join(gt.events[:3])})")
    if gt.note:
        print(f"scrfd-ref eval: notice: {gt.note}", file=sys.stderr)
    result = evaluate_dir(pred, gt, events=events, allow_missing=args.allow_missing,
                          kernel=args.kernel)
    if result.inverted:
        print(f"scrfd-ref eval: warning: {result.inverted} prediction(s) have a negative width "
              "or height; evaluated as the official WiderFace-Evaluation does (x2 = x + w)",
              file=sys.stderr)
    text_out = sys.stderr if args.json == "-" else out
    for line in report_lines(result):
        print(line, file=text_out)
    if args.plot:
        from scrfd_ref.widerface.plot import plot_pr_curves

        path = plot_pr_curves(result, args.plot)
        print(f"PR curves -> {display(path)}", file=text_out)
    if args.json == "-":
        print(result.to_json(), file=out)
    elif args.json:
        write_text(args.json, result.to_json() + "\n")
        print(f"JSON -> {display(args.json)}", file=text_out)
    return 0
