"""``scrfd-ref eval --by attribute``: the per-slice table of one prediction folder, or with
``--compare`` the paired per-slice deltas with intervals, and the forest plot
(:mod:`scrfd_ref.widerface.slice_eval`, :mod:`scrfd_ref.report.slices`).

Split from :mod:`scrfd_ref.cli.wider`, which registers the options and calls
:func:`check_slice_options` before anything is read and :func:`slice_block` after the AP.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

from scrfd_ref.core.errors import UsageError
from scrfd_ref.formats.files import display, output_file, same_path
from scrfd_ref.widerface.slice_eval import OPERATING_SCORE

#: what ``--by`` accepts
BY = ("attribute",)


def add_slice_options(p: argparse.ArgumentParser) -> None:
    """``--by``, ``--operating-score``, ``--forest`` of ``eval``."""
    from scrfd_ref.cli.args import fraction

    p.add_argument("--by", default=None, choices=BY,
                   help="attribute: also evaluate per slice, each value of the WIDER FACE face "
                        "labels (blur, expression, illumination, occlusion, pose) and the WIDER "
                        "paper's scales (face height < 50, 50-300, >= 300 px): faces, AP with "
                        "the slice's faces counted and every other face ignored, recall at "
                        "--operating-score; with --compare, the deltas with paired-bootstrap "
                        "intervals, plain and Bonferroni-corrected across the slices. Needs the "
                        ".mat ground truth (its face labels)")
    p.add_argument("--operating-score", type=fraction, default=None, metavar="S",
                   help=f"with --by attribute: the score a detection needs to count for the "
                        f"slices' recall (default {OPERATING_SCORE:g}, the deployment "
                        "operating point)")
    p.add_argument("--forest", default=None, metavar="F.png",
                   help="with --by attribute and --compare: save the forest plot of the "
                        "per-slice AP and recall deltas with their intervals to this PNG")


def check_slice_options(args: argparse.Namespace, inputs: list[Path]) -> None:
    """Refuse slice options given without what they need, and an unwritable --forest,
    before anything is read."""
    if args.by is None:
        given = [o for o, v in (("--operating-score", args.operating_score),
                                ("--forest", args.forest)) if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only with --by attribute")
        return
    if args.forest is not None:
        if args.compare is None:
            raise UsageError("--forest: only with --compare DIR (the plot shows the deltas "
                             "of two prediction folders)")
        output_file(args.forest, "--forest", inputs=inputs)
        for option, other in (("--json", args.json), ("--plot", args.plot)):
            if other not in (None, "-") and same_path(args.forest, other):
                raise UsageError(f"--forest {display(args.forest)}: is also {option}; give "
                                 "each output its own file")


def _score(args: argparse.Namespace) -> float:
    return OPERATING_SCORE if args.operating_score is None else args.operating_score


def slice_block(args: argparse.Namespace, gt: Any, sets: list[Mapping], events: Any,
                bootstrap: Mapping[str, Any] | None, compare: Path | None
                ) -> tuple[list[str], dict]:
    """The text lines and the JSON entry of the slices: one set (``sets[0]``), or paired
    (``sets[0]`` the --pred reference, ``sets[1]`` --compare) with ``bootstrap`` (the
    confidence, resamples and seed of --compare)."""
    from scrfd_ref.widerface.slice_eval import evaluate_slices, paired_slices

    opts = dict(events=events, allow_missing=args.allow_missing, kernel=args.kernel)
    if compare is None or bootstrap is None:
        ev = evaluate_slices(sets[0], gt, operating_score=_score(args), **opts)
        lines = ["========== per slice (faces 'hard' counts, by label; others ignored) =====",
                 f"{'slice':<24} {'faces':>6} {'AP':>8} {'recall@' + format(ev.operating_score, 'g'):>11}"]
        for s in ev.slices:
            r = ev[s]
            rec = "n/a" if r.recall != r.recall else f"{r.recall:.4f}"
            ap = "n/a" if not r.faces else f"{100 * r.ap:7.2f}%"
            lines.append(f"{s:<24} {r.faces:>6} {ap:>8} {rec:>11}")
        return lines, ev.to_dict()
    paired = paired_slices(sets[0], sets[1], gt, operating_score=_score(args), **bootstrap,
                           **opts)
    doc = paired.to_dict()
    from scrfd_ref.report.slices import slice_table

    lines = [f"========== per slice: --compare {display(compare)} vs --pred =========="]
    lines += slice_table(doc)
    if args.forest:
        from scrfd_ref.report.slices import plot_forest

        path = plot_forest(doc, args.forest, f"{display(compare)} vs {display(args.pred)}")
        lines.append(f"forest plot -> {display(path)}")
    return lines, doc


__all__ = ["BY", "add_slice_options", "check_slice_options", "slice_block"]
