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
    `scrfd-ref quantize` writes with no option; nncf: OpenVINO's NNCF post-training
    quantizer, run by OpenVINO), then run fp32 and every int8 model over
    the WIDER val images of the data folder minus the 50 calibration images
    (data/calibration_images.txt) with the widerface-eval profile (threshold 0.02) and the
    official protocol. Prints AP, the ratio to fp32 with its 95% interval (paired image
    bootstrap against fp32 on the same images), the int8 share of the MACs and the nodes
    kept in float, then every pair of recipes' AP difference with its interval, marked
    significant when the interval excludes 0 (else within the evaluation's sampling
    noise); --out DIR writes table.json, table.md and report.html.
    Conversions are cached (the model cache), so a rerun only evaluates. Takes minutes per
    model on 2 cores.
    """
    from scrfd_ref.conformance.int8_recipes import (
        THIRD_PARTY,
        RecipeRow,
        bootstrap_settings,
        differences_markdown,
        held_out_items,
        known_recipes,
        measure_recipes,
        table_markdown,
    )
    from scrfd_ref.formats.datadir import data_dir, widerface_dir
    from scrfd_ref.formats.ground_truth import load_ground_truth
    from scrfd_ref.report.html_int8 import render_int8_ap_html

    asked = args.recipes or ",".join(known_recipes())
    recipes = unique([r.strip() for r in asked.split(",") if r.strip()], "--recipes")
    bad = [r for r in recipes or [] if r not in known_recipes()]
    if bad or not recipes:
        raise UsageError(f"--recipes: {bad[0] if bad else 'empty'} is not a recipe; choose "
                         f"from {', '.join(known_recipes())}")
    missing = _third_party_missing([r for r in recipes if r in THIRD_PARTY])
    if missing and args.recipes:
        raise UsageError(f"--recipes {', '.join(missing)}: {_INSTALL_HINT}")
    if missing:
        print(f"scrfd-ref int8-ap: notice: the {', '.join(missing)} column is left out: "
              f"{_INSTALL_HINT}", file=sys.stderr)
        recipes = [r for r in recipes if r not in missing]
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

    differences: list = []
    for model in models:
        rows += measure_recipes(model, recipes, items, gt, progress=not args.quiet,
                                on_row=show, differences=differences)
    settings = bootstrap_settings()
    text = table_markdown(rows) + "\n" + differences_markdown(differences, settings)
    print(text, end="")
    if args.out:
        folder = make_dir(args.out, "--out")
        table = {"rows": [r.to_dict() for r in rows],
                 "differences": [d.to_dict() for d in differences],
                 "bootstrap": {**settings, "method": "paired image bootstrap, percentile "
                                                     "interval, gates file's int8 AP settings"}}
        text_json = json.dumps(table, indent=1) + "\n"
        write_text(folder / "table.json", text_json)
        write_text(folder / "table.md", text)
        write_text(folder / "report.html", render_int8_ap_html(json.loads(text_json)))
        print(f"int8-ap: wrote {display(Path(folder) / 'report.html')} and table.md",
              file=sys.stderr)
    return 0


_INSTALL_HINT = "NNCF runs on OpenVINO, an optional extra: pip install -e '.[openvino]'"


def _third_party_missing(names: list[str]) -> list[str]:
    """The third-party recipes among ``names`` whose libraries are not installed."""
    from scrfd_ref.quantize.nncf_int8 import nncf_missing

    return names if names and nncf_missing() else []


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``int8-ap`` to the main parser."""
    p = add_command(sub, "int8-ap", cmd_int8_ap)
    p.add_argument("--model", "-m", action="append", default=None,
                   help="ONNX model or variant name; repeat for several (default 500m_bnkps)")
    p.add_argument("--recipes", default=None, metavar="LIST",
                   help="comma-separated int8 recipes: minmax, entropy, percentile, default "
                        "(ONNX Runtime) and nncf (OpenVINO's NNCF, run by OpenVINO; needs "
                        "pip install -e '.[openvino]') (default: all, nncf when installed)")
    p.add_argument("--out", "-o", default=None, metavar="DIR",
                   help="write table.json, table.md and report.html here")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
