"""Sub-command ``int8-ap``: what each int8 recipe keeps of fp32 WIDER AP on held-out images."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scrfd_ref.cli.args import add_command, resolve_model, unique
from scrfd_ref.core.errors import UsageError
from scrfd_ref.formats.files import display, make_dir, output_dir, write_text


def cmd_int8_ap(args: argparse.Namespace) -> int:
    """Measure each int8 recipe's WIDER AP against fp32 on images calibration never saw.

    For each --model: convert it with each recipe (minmax, entropy, percentile 99.999:
    every weighted node int8; default: percentile plus the mixed-precision search, what
    `scrfd-ref quantize` writes with no option), then run fp32 and every int8 model over
    the WIDER val images of the data folder minus the 50 calibration images
    (data/calibration_images.txt) with the widerface-eval profile (threshold 0.02) and the
    official protocol. Prints AP, the ratio to fp32, the int8 share of the MACs and the
    nodes kept in float; --out DIR writes table.json and table.md. Conversions are cached
    (the model cache), so a rerun only evaluates. Takes minutes per model on 2 cores.
    """
    from scrfd_ref.conformance.int8_recipes import (
        RECIPES,
        RecipeRow,
        held_out_items,
        measure_recipes,
        table_markdown,
    )
    from scrfd_ref.formats.datadir import data_dir, widerface_dir
    from scrfd_ref.formats.ground_truth import load_ground_truth

    recipes = unique([r.strip() for r in args.recipes.split(",") if r.strip()], "--recipes")
    bad = [r for r in recipes or [] if r not in RECIPES]
    if bad or not recipes:
        raise UsageError(f"--recipes: {bad[0] if bad else 'empty'} is not a recipe; choose "
                         f"from {', '.join(RECIPES)}")
    models = [resolve_model(m, args.data_dir) for m in (unique(args.model, "--model")
                                                        or [None])]
    if args.out:
        output_dir(args.out, "--out", inputs=models)
    root = data_dir(args.data_dir)
    wider = widerface_dir(root)
    gt = load_ground_truth(wider / "ground_truth")
    items = held_out_items(wider / "WIDER_val" / "images", gt)
    if not items:
        raise UsageError(f"no held-out WIDER val image under {display(wider)}")
    print(f"int8-ap: {len(items)} held-out images, recipes {', '.join(recipes)}",
          file=sys.stderr)
    rows: list[RecipeRow] = []

    def show(row: RecipeRow) -> None:
        ratios = " / ".join(f"{row.ratio[s]:.4f}" for s in ("easy", "medium", "hard"))
        share = ("" if row.int8_mac_share is None
                 else f", int8 MACs {100 * row.int8_mac_share:.1f}%")
        nodes = f", float {','.join(row.float_nodes)}" if row.float_nodes else ""
        print(f"  {row.model} {row.recipe}: AP {row.ap['easy']:.4f} / {row.ap['medium']:.4f}"
              f" / {row.ap['hard']:.4f} (x fp32 {ratios}{share}{nodes})", file=sys.stderr)

    for model in models:
        rows += measure_recipes(model, recipes, items, gt, progress=not args.quiet,
                                on_row=show)
    print(table_markdown(rows), end="")
    if args.out:
        folder = make_dir(args.out, "--out")
        write_text(folder / "table.json", json.dumps([r.to_dict() for r in rows], indent=1)
                   + "\n")
        write_text(folder / "table.md", table_markdown(rows))
        print(f"int8-ap: wrote {display(Path(folder) / 'table.md')}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``int8-ap`` to the main parser."""
    p = add_command(sub, "int8-ap", cmd_int8_ap)
    p.add_argument("--model", "-m", action="append", default=None,
                   help="ONNX model or variant name; repeat for several (default 500m_bnkps)")
    p.add_argument("--recipes", default="minmax,entropy,percentile,default", metavar="LIST",
                   help="comma-separated int8 recipes (default: all four)")
    p.add_argument("--out", "-o", default=None, metavar="DIR",
                   help="write table.json and table.md here")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
