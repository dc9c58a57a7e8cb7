"""The ``scrfd-ref eval`` sub-command: official WIDER FACE AP of a prediction folder.

Prints the three AP lines exactly as the official evaluation tool does, then a small
table; optionally writes the JSON summary (``-`` for stdout; the text then goes to
stderr so stdout stays pure JSON) and a PR-curve PNG.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from . import data as data_mod
from .widerface.evaluate import KERNELS, WiderResult


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` sub-command to the ``scrfd-ref`` parser."""
    p = subparsers.add_parser(
        "eval", help="WIDER FACE easy/medium/hard AP of prediction txt files",
        description="Evaluate WIDER FACE prediction files <pred>/<event>/<name>.txt with the "
                    "official protocol (global score normalisation, +1 IoU >= 0.5, don't-care "
                    "boxes, 1000 thresholds, VOC all-point AP); the APs equal the official "
                    "Python port's bit for bit. Predictions need not be sorted.")
    p.add_argument("--pred", "-p", required=True, metavar="DIR",
                   help="prediction folder holding <event>/<name>.txt files")
    p.add_argument("--gt", "-g", default=None, metavar="DIR",
                   help="ground truth: folder with wider_face_val.mat and "
                        "wider_{easy,medium,hard}_val.mat, or a wider_face_val_bbx_gt.txt file "
                        "(default: DATA/widerface/ground_truth)")
    p.add_argument("--events", nargs="+", default=None, metavar="E",
                   help="evaluate only these events (e.g. 0--Parade 4--Dancing); default: every "
                        "event of the ground truth")
    p.add_argument("--allow-missing", action="store_true",
                   help="treat images without a prediction file as having no detections "
                        "(default: report them and fail)")
    p.add_argument("--json", default=None, metavar="F",
                   help="write the summary as JSON to F ('-' for stdout: the text report then "
                        "goes to stderr)")
    p.add_argument("--plot", default=None, metavar="F.png",
                   help="save the precision/recall curves of the three settings to this PNG")
    p.add_argument("--kernel", default="auto", choices=KERNELS,
                   help="matching implementation: auto (Cython when built), cython or numpy; "
                        "all give the same result")
    p.set_defaults(func=run_eval)


def report_lines(result: WiderResult) -> list[str]:
    """The official tool's result block followed by a per-setting table."""
    ap = result.ap
    lines = ["==================== Results ====================",
             f"Easy   Val AP: {ap['easy']}",
             f"Medium Val AP: {ap['medium']}",
             f"Hard   Val AP: {ap['hard']}",
             "=================================================",
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
        return Path(args.gt)
    root = data_mod.data_dir(getattr(args, "data_dir", None))
    return data_mod.widerface_dir(root) / "ground_truth"


def run_eval(args: argparse.Namespace, stdout: TextIO | None = None) -> int:
    """Run ``scrfd-ref eval`` with parsed ``args``; returns the exit status (0).

    Raises:
        ScrfdRefError: bad or missing input (the main CLI prints it as one line, exit 2).
    """
    from .formats.ground_truth import load_ground_truth
    from .widerface.evaluate import evaluate_dir

    out = stdout or sys.stdout
    gt = load_ground_truth(_gt_path(args))
    result = evaluate_dir(args.pred, gt, events=args.events, allow_missing=args.allow_missing,
                          kernel=args.kernel)
    text_out = sys.stderr if args.json == "-" else out
    for line in report_lines(result):
        print(line, file=text_out)
    if args.plot:
        from .widerface.plot import plot_pr_curves

        path = plot_pr_curves(result, args.plot)
        print(f"PR curves -> {path}", file=text_out)
    if args.json == "-":
        print(result.to_json(), file=out)
    elif args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(result.to_json() + "\n", encoding="utf-8")
        print(f"JSON -> {args.json}", file=text_out)
    return 0
