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
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from scrfd_ref.cli.args import (
    add_command,
    add_json_option,
    add_model_options,
    add_run_options,
    fraction,
    make_detector,
    non_negative_int,
    positive_int,
    unique,
    workers_count,
)
from scrfd_ref.cli.wider_slices import add_slice_options, check_slice_options, slice_block
from scrfd_ref.core.errors import InputError, UsageError
from scrfd_ref.formats import datadir as data_mod
from scrfd_ref.formats.files import (
    display,
    input_dir,
    output_dir,
    output_file,
    same_path,
    write_text,
)
from scrfd_ref.widerface.evaluate import KERNELS, WiderResult
from scrfd_ref.widerface.resample import CONFIDENCE, RESAMPLES, SEED

if TYPE_CHECKING:
    from scrfd_ref.formats.ground_truth import GroundTruth
    from scrfd_ref.widerface.bootstrap import PairedBootstrap

OFFICIAL_LABELS = {"easy": "Easy  ", "medium": "Medium", "hard": "Hard  ", "all": "All   "}
#: the most resamples --resamples accepts (1000 take about a second at the full val size)
MAX_RESAMPLES = 100_000


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
    output_dir(args.out, "--out", inputs=[(images, "--images")])
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
    p.add_argument("--workers", type=workers_count, default=None, metavar="N",
                   help="images processed at once, each by its own one-thread copy of the "
                        "model session (default: one per usable core; 1: every stage in turn "
                        "on one thread with ORT's default threads; at most 4 per usable core); "
                        "the files are identical either way")
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
    p.add_argument("--compare", default=None, metavar="DIR",
                   help="a second prediction folder on the same images (e.g. a device's, with "
                        "--pred the reference's): adds the AP delta (compare - pred) and ratio "
                        "(compare / pred) per setting with paired-bootstrap confidence "
                        "intervals (text and --json); both folders must hold the same images. "
                        "The --pred folder itself is allowed (delta 0, ratio 1: a self-check)")
    p.add_argument("--resamples", type=positive_int(MAX_RESAMPLES), default=None, metavar="N",
                   help=f"with --compare: bootstrap resamples of the images (default "
                        f"{RESAMPLES})")
    p.add_argument("--confidence", type=fraction, default=None, metavar="C",
                   help=f"with --compare: two-sided confidence level of the intervals, between "
                        f"0 and 1 (default {CONFIDENCE})")
    p.add_argument("--seed", type=non_negative_int, default=None, metavar="S",
                   help=f"with --compare: seed of the resampling (default {SEED}); the same "
                        "seed gives the same intervals")
    add_slice_options(p)


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
        if not p.is_file() and not p.is_dir():
            from scrfd_ref.core.errors import UsageError

            raise UsageError(f"--gt {display(p)}: not a regular file (a FIFO or a device); give "
                             "the ground-truth file or its folder")
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
    first and every bad one listed. With --compare DIR: the AP delta and ratio of a second
    folder on the same images, with paired-bootstrap confidence intervals. With --by attribute: per slice of the
    WIDER FACE face labels and scales, the faces, AP and recall at the operating point
    (paired deltas with intervals under --compare).
    """
    from scrfd_ref.formats.ground_truth import load_ground_truth
    from scrfd_ref.widerface.evaluate import evaluate_dir

    out = stdout or sys.stdout
    pred = input_dir(args.pred, "--pred", "prediction folder")
    compare = _compare_dir(args)
    gt_path = _gt_path(args)
    inputs = [pred, gt_path] + ([compare] if compare else [])
    if args.json and args.json != "-":
        output_file(args.json, "--json", inputs=inputs)
    if args.plot:
        output_file(args.plot, "--plot", inputs=inputs)
        if args.json not in (None, "-") and same_path(args.plot, args.json):
            raise UsageError(f"--plot {display(args.plot)}: is also --json; give each output "
                             "its own file")
    check_slice_options(args, inputs)
    events = unique(args.events, "--events")
    gt = load_ground_truth(gt_path)
    unknown = [e for e in events or () if e not in gt.events]
    if unknown:
        raise UsageError(f"--events {' '.join(unknown[:5])}: not in the ground truth "
                         f"{display(gt.source)} ({len(gt.events)} events, e.g. "
                         f"{', '.join(gt.events[:3])})")
    if gt.note:
        print(f"scrfd-ref eval: notice: {gt.note}", file=sys.stderr)
    if args.by:
        from scrfd_ref.widerface.slices import require_attributes

        require_attributes(gt)  # before any prediction file is read
    boot = None
    sets: list = []
    if compare:
        boot, sets = _paired(args, pred, compare, gt, events)
        result = boot.result_a
    elif args.by:
        from scrfd_ref.widerface.evaluate import evaluate, read_predictions_for

        sets = [read_predictions_for(pred, gt, events=events, allow_missing=args.allow_missing)]
        result = evaluate(sets[0], gt, events=events, allow_missing=args.allow_missing,
                          kernel=args.kernel)
    else:
        result = evaluate_dir(pred, gt, events=events, allow_missing=args.allow_missing,
                              kernel=args.kernel)
    if result.inverted:
        print(f"scrfd-ref eval: warning: {result.inverted} prediction(s) have a negative width "
              "or height; evaluated as the official WiderFace-Evaluation does (x2 = x + w)",
              file=sys.stderr)
    text_out = sys.stderr if args.json == "-" else out
    for line in report_lines(result):
        print(line, file=text_out)
    if boot is not None:
        for line in compare_lines(boot, pred, compare):
            print(line, file=text_out)
    doc = result.to_dict()
    if boot is not None:
        doc["compare"] = {"pred": str(compare), "result": boot.result_b.to_dict(),
                          "bootstrap": boot.to_dict()}
    if args.by:
        settings = None if boot is None else {"confidence": boot.confidence,
                                              "resamples": boot.resamples, "seed": boot.seed}
        lines, doc["slices"] = slice_block(args, gt, sets, events, settings, compare)
        for line in lines:
            print(line, file=text_out)
    if args.plot:
        from scrfd_ref.widerface.plot import plot_pr_curves

        path = plot_pr_curves(result, args.plot)
        print(f"PR curves -> {display(path)}", file=text_out)
    if args.json == "-":
        print(json.dumps(doc, indent=2), file=out)
    elif args.json:
        write_text(args.json, json.dumps(doc, indent=2) + "\n")
        print(f"JSON -> {display(args.json)}", file=text_out)
    return 0


def _compare_dir(args: argparse.Namespace) -> Path | None:
    """``--compare`` as a folder (None without it); the bootstrap options need it."""
    if args.compare is None:
        given = [o for o, v in (("--resamples", args.resamples),
                                ("--confidence", args.confidence), ("--seed", args.seed))
                 if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only with --compare DIR (the intervals are "
                             "those of a comparison of two prediction folders)")
        return None
    if args.confidence is not None and not 0.0 < args.confidence < 1.0:
        raise UsageError(f"--confidence {args.confidence}: give a level strictly between 0 "
                         "and 1, e.g. 0.95")
    from scrfd_ref.widerface.resample import MIN_TAIL_RESAMPLES, min_resamples

    confidence = CONFIDENCE if args.confidence is None else args.confidence
    if args.resamples is not None and args.resamples < min_resamples(confidence):
        raise UsageError(f"--resamples {args.resamples}: too few for a {100 * confidence:g}% "
                         f"interval; give at least {min_resamples(confidence)} (each end of "
                         f"the interval {MIN_TAIL_RESAMPLES} resamples from the edge)")
    folder = input_dir(args.compare, "--compare", "prediction folder")
    if same_path(folder, args.pred):
        print("scrfd-ref eval: notice: --compare is the --pred folder: the delta is 0 and the "
              "ratio 1 (undefined where the AP is 0) by construction (a self-check)",
              file=sys.stderr)
    return folder


def _paired(args: argparse.Namespace, pred: Path, compare: Path, gt: GroundTruth,
            events: list[str] | None) -> tuple[PairedBootstrap, list]:
    """Read both folders, check they hold the same images, run the paired bootstrap:
    ``(bootstrap, [pred predictions, compare predictions])``."""
    from scrfd_ref.widerface.bootstrap import paired_bootstrap_matchings, pairing_problem
    from scrfd_ref.widerface.evaluate import match_predictions, read_predictions_for

    sets = [read_predictions_for(d, gt, events=events, allow_missing=args.allow_missing)
            for d in (pred, compare)]
    why = pairing_problem(*sets, names=("--pred", "--compare"))
    if why:
        raise InputError(f"--compare {display(compare)}: not the images of --pred "
                         f"{display(pred)}: {why}; compare two runs over the same images")
    matched = []
    for option, folder, preds in (("--pred", pred, sets[0]), ("--compare", compare, sets[1])):
        try:
            matched.append(match_predictions(preds, gt, events=events,
                                             allow_missing=args.allow_missing,
                                             kernel=args.kernel))
        except InputError as exc:
            raise type(exc)(f"{option} {display(folder)}: {exc}") from exc
    return paired_bootstrap_matchings(
        *matched, confidence=CONFIDENCE if args.confidence is None else args.confidence,
        resamples=RESAMPLES if args.resamples is None else args.resamples,
        seed=SEED if args.seed is None else args.seed), sets


def compare_lines(boot: PairedBootstrap, pred: Path, compare: Path) -> list[str]:
    """The paired comparison block: per setting both APs, the delta and the ratio with
    their intervals, and whether the delta interval excludes 0."""
    pct = f"{100 * boot.confidence:g}%"
    lines = [f"========== paired bootstrap: --compare {display(compare)} vs --pred "
             f"{display(pred)} ==========",
             f"{'setting':<8} {'AP pred':>9} {'AP compare':>10} {'delta':>9} "
             f"{pct + ' interval':<22} {'ratio':>8} {pct + ' interval':<20} differs"]
    for s in boot.settings:
        c = boot[s]
        d, r = c.delta_interval, c.ratio_interval
        d_text = f"[{d.low:+.5f}, {d.high:+.5f}]"
        r_text = f"[{r.low:.5f}, {r.high:.5f}]"
        lines.append(f"{s:<8} {100 * c.ap_a:8.3f}% {100 * c.ap_b:9.3f}% {c.delta:+9.5f} "
                     f"{d_text:<22} {c.ratio:8.5f} {r_text:<20} "
                     f"{'no' if d.contains(0.0) else 'yes'}")
    lines.append(f"{boot.resamples} resamples of {boot.images} images (seed {boot.seed}), "
                 "percentile intervals; delta = compare - pred, ratio = compare / pred; "
                 "'differs': the delta interval excludes 0")
    if any(math.isnan(boot[s].ratio_interval.low) for s in boot.settings):
        lines.append("ratio nan: the --pred AP is 0 in the full set or in some resample "
                     "(too few faces or detections to compare)")
    return lines
