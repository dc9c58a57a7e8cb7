"""What each int8 recipe keeps of fp32 WIDER AP, measured on images calibration never saw.

:func:`measure_recipes` converts one fp32 model with each recipe of :data:`RECIPES`
(:func:`scrfd_ref.device.quantize.convert_model`, cached), runs the fp32 model and every
int8 model over the held-out WIDER val images (every shared image except the committed
calibration list, :func:`held_out_items`) with the ``widerface-eval`` profile (threshold
0.02, the official protocol's ranking) and evaluates each with the official protocol
(:func:`scrfd_ref.widerface.evaluate.evaluate`). int8 models run in ONNX Runtime with
basic graph optimisation, the exact QDQ arithmetic (its fused U8S8 kernels saturate on
x86 CPUs without VNNI; :mod:`scrfd_ref.backends.ort`).

The recipes: ``minmax``, ``entropy`` and ``percentile`` (99.999) calibration, every
weighted node int8; ``default``: percentile plus the automatic mixed-precision search
(:mod:`scrfd_ref.device.mixed_precision`), what ``scrfd-ref quantize`` writes with no
other option. All of them keep the head outputs and the flattening tail in float
(:mod:`scrfd_ref.device.int8_build`).

``scrfd-ref int8-ap`` prints the table and writes it as JSON and Markdown.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from scrfd_ref.device.quantize import QuantRecipe

#: recipe name -> the recipe (``default`` is :class:`QuantRecipe`'s defaults)
RECIPES: dict[str, QuantRecipe] = {
    "minmax": QuantRecipe(method="minmax", mixed_precision=False),
    "entropy": QuantRecipe(method="entropy", mixed_precision=False),
    "percentile": QuantRecipe(method="percentile", mixed_precision=False),
    "default": QuantRecipe(),
}
SETTINGS = ("easy", "medium", "hard")


@dataclass
class RecipeRow:
    """One model under one recipe: its AP on the held-out images and what it costs.

    Attributes:
        model: the source model's file name.
        recipe: ``fp32`` or a :data:`RECIPES` name.
        ap: ``{easy, medium, hard}`` AP.
        ratio: AP / fp32 AP per setting (1.0 for fp32).
        int8_mac_share: share of the MACs in int8 (None for fp32).
        float_nodes: weighted nodes the recipe kept in float.
        convert_s: seconds the conversion took (0 when it came from the cache).
        images: held-out images evaluated.
    """

    model: str
    recipe: str
    ap: dict[str, float]
    ratio: dict[str, float] = field(default_factory=dict)
    int8_mac_share: float | None = None
    float_nodes: list[str] = field(default_factory=list)
    convert_s: float = 0.0
    images: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def held_out_items(images_dir: Path, ground_truth: Any) -> list[Any]:
    """Every WIDER val image under ``images_dir`` whose event the ground truth has, except
    the committed calibration images."""
    from scrfd_ref.device.calibration import calibration_keys
    from scrfd_ref.formats.dataset import list_images

    events = [p.name for p in sorted(Path(images_dir).iterdir())
              if p.is_dir() and p.name in ground_truth.events]
    calib = set(calibration_keys())
    return [i for i in list_images(images_dir, events) if f"{i.event}/{i.name}" not in calib]


def held_out_ap(model: Path, dtype: str, items: Sequence[Any], ground_truth: Any, *,
                input_size: tuple[int, int] = (640, 640), progress: bool = False
                ) -> dict[str, float]:
    """Official-protocol AP of ``model`` (run as ``dtype``) over ``items``."""
    from scrfd_ref.backends import get_backend
    from scrfd_ref.conformance.runs import run_device
    from scrfd_ref.core.profiles import get_profile
    from scrfd_ref.widerface.evaluate import evaluate

    profile = get_profile("widerface-eval", input_size=tuple(input_size))
    with get_backend("ort", model, dtype=dtype) as backend:
        run = run_device(backend, profile, items, device=f"{Path(model).stem} {dtype}",
                         progress=progress)
    keys = [tuple(k.split("/", 1)) for k in run.detections]
    result = evaluate(run.predictions(), ground_truth, images=keys)
    return {s: float(result.ap[s]) for s in SETTINGS}


def measure_recipes(model: Path, recipes: Sequence[str], items: Sequence[Any],
                    ground_truth: Any, *, cache_dir: Path | None = None,
                    input_size: tuple[int, int] = (640, 640), progress: bool = False,
                    on_row: Callable[[RecipeRow], None] | None = None) -> list[RecipeRow]:
    """fp32 and each named recipe of ``model`` on ``items`` (see the module docstring)."""
    from scrfd_ref.core.errors import InputError
    from scrfd_ref.device.quantize import conversion_record, convert_model

    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        raise InputError(f"unknown int8 recipe {unknown[0]!r}; known: {', '.join(RECIPES)}")
    model = Path(model)
    fp32 = held_out_ap(model, "fp32", items, ground_truth, input_size=input_size,
                       progress=progress)
    rows = [RecipeRow(model.name, "fp32", fp32, {s: 1.0 for s in SETTINGS},
                      images=len(items))]
    if on_row:
        on_row(rows[-1])
    for name in recipes:
        t0 = time.perf_counter()
        converted = convert_model(model, "int8", cache_dir=cache_dir, recipe=RECIPES[name],
                                  input_size=input_size, progress=progress)
        took = time.perf_counter() - t0
        record = conversion_record(converted) or {}
        ap = held_out_ap(converted, "int8", items, ground_truth, input_size=input_size,
                         progress=progress)
        rows.append(RecipeRow(
            model.name, name, ap, {s: ap[s] / fp32[s] if fp32[s] else float("nan")
                                   for s in SETTINGS},
            record.get("int8_mac_share"),
            list(record.get("search", {}).get("float_nodes", [])),
            took if took > 1.0 else 0.0, len(items)))
        if on_row:
            on_row(rows[-1])
    return rows


def table_markdown(rows: Sequence[RecipeRow]) -> str:
    """The rows as a Markdown table (AP and ratio to fp32 per setting)."""
    head = ("| model | recipe | easy | medium | hard | int8 MACs | float nodes |\n"
            "|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        cells = [f"{r.ap[s]:.4f} ({r.ratio[s]:.4f})" for s in SETTINGS]
        share = "-" if r.int8_mac_share is None else f"{100 * r.int8_mac_share:.1f}%"
        lines.append(f"| {r.model} | {r.recipe} | {' | '.join(cells)} | {share} | "
                     f"{', '.join(r.float_nodes) or '-'} |")
    return head + "\n".join(lines) + "\n"
