"""What each int8 recipe keeps of fp32 WIDER AP, measured on images calibration never saw.

:func:`measure_recipes` converts one fp32 model with each recipe of :data:`RECIPES`
(:func:`scrfd_ref.quantize.convert.convert_model`, cached), runs the fp32 model and every
int8 model over the held-out WIDER val images (every shared image except the committed
calibration list, :func:`held_out_items`) with the ``widerface-eval`` profile (threshold
0.02, the official protocol's ranking) and evaluates each with the official protocol
(:func:`scrfd_ref.widerface.evaluate.evaluate`). int8 models run in ONNX Runtime with
basic graph optimisation, the exact QDQ arithmetic (its fused U8S8 kernels saturate on
x86 CPUs without VNNI; :mod:`scrfd_ref.backends.ort`).

The recipes: ``minmax``, ``entropy`` and ``percentile`` (99.999) calibration, every
weighted node int8; ``default``: percentile plus the automatic mixed-precision search
(:mod:`scrfd_ref.quantize.mixed_precision`), what ``scrfd-ref quantize`` writes with no
other option. All of them keep the head outputs and the flattening tail in float
(:mod:`scrfd_ref.quantize.int8_build`).

``nncf`` is a recognised third-party post-training quantizer beside them: OpenVINO's NNCF
with its defaults, calibrated on the same images with the same profile
(:mod:`scrfd_ref.quantize.nncf_int8`) and run by OpenVINO's CPU plugin (int8 kernels, VNNI
where the CPU has it; the optional extra ``pip install -e '.[openvino]'``).

``scrfd-ref int8-ap`` prints the table and writes it as JSON and Markdown.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from scrfd_ref.quantize.convert import QuantRecipe

#: recipe name -> the recipe (``default`` is :class:`QuantRecipe`'s defaults)
RECIPES: dict[str, QuantRecipe] = {
    "minmax": QuantRecipe(method="minmax", mixed_precision=False),
    "entropy": QuantRecipe(method="entropy", mixed_precision=False),
    "percentile": QuantRecipe(method="percentile", mixed_precision=False),
    "default": QuantRecipe(),
}
#: third-party quantizers compared beside the recipes: name -> the backend that runs them
THIRD_PARTY: dict[str, str] = {"nncf": "openvino"}
SETTINGS = ("easy", "medium", "hard")


def known_recipes() -> list[str]:
    """Every recipe name ``int8-ap`` takes (the ORT recipes, then the third-party ones)."""
    return [*RECIPES, *THIRD_PARTY]


@dataclass
class RecipeRow:
    """One model under one recipe: its AP on the held-out images and what it costs.

    Attributes:
        model: the source model's file name.
        recipe: ``fp32`` or a :data:`RECIPES` name.
        ap: ``{easy, medium, hard}`` AP.
        ratio: AP / fp32 AP per setting (1.0 for fp32).
        ratio_interval: its confidence interval per setting (paired image bootstrap
            against fp32 on the same images; :func:`compare_recipes`).
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
    ratio_interval: dict[str, list] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def held_out_items(images_dir: Path, ground_truth: Any) -> list[Any]:
    """Every WIDER val image under ``images_dir`` whose event the ground truth has, except
    the committed calibration images."""
    from scrfd_ref.formats.dataset import list_images
    from scrfd_ref.quantize.calibration import calibration_keys

    events = [p.name for p in sorted(Path(images_dir).iterdir())
              if p.is_dir() and p.name in ground_truth.events]
    calib = set(calibration_keys())
    return [i for i in list_images(images_dir, events) if f"{i.event}/{i.name}" not in calib]


def held_out_predictions(model: Path, dtype: str, items: Sequence[Any], *,
                         input_size: tuple[int, int] = (640, 640), progress: bool = False,
                         backend: str = "ort") -> dict[tuple[str, str], Any]:
    """WIDER predictions of ``model`` (run as ``dtype`` on ``backend``) over ``items``, the
    ``widerface-eval`` profile."""
    from scrfd_ref.backends import get_backend
    from scrfd_ref.conformance.runs import run_device
    from scrfd_ref.core.profiles import get_profile

    profile = get_profile("widerface-eval", input_size=tuple(input_size))
    with get_backend(backend, model, dtype=dtype) as runner:
        run = run_device(runner, profile, items, device=f"{Path(model).stem} {dtype}",
                         progress=progress)
    return run.predictions()


def held_out_ap(model: Path, dtype: str, items: Sequence[Any], ground_truth: Any, *,
                input_size: tuple[int, int] = (640, 640), progress: bool = False,
                backend: str = "ort") -> dict[str, float]:
    """Official-protocol AP of ``model`` (run as ``dtype`` on ``backend``) over ``items``."""
    from scrfd_ref.widerface.evaluate import evaluate

    preds = held_out_predictions(model, dtype, items, input_size=input_size,
                                 progress=progress, backend=backend)
    result = evaluate(preds, ground_truth, images=list(preds))
    return {s: float(result.ap[s]) for s in SETTINGS}


def bootstrap_settings(gates: Any = None) -> dict[str, Any]:
    """Confidence, resamples and seed of the int8 AP gates (the one gates declaration)."""
    from scrfd_ref.conformance.gates import Gates

    return (gates or Gates.load()).bootstrap_settings("int8")


@dataclass
class RecipeDifference:
    """Recipe ``b`` against recipe ``a`` of one model on the same images (paired bootstrap):
    per setting the AP delta ``b - a``, its interval, and whether the interval excludes 0
    (``significant``: the images show a real difference, not sampling noise)."""

    model: str
    a: str
    b: str
    delta: dict[str, float]
    interval: dict[str, list]
    significant: dict[str, bool]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def compare_recipes(model: str, predictions: dict[str, Any], ground_truth: Any,
                    settings: dict[str, Any]) -> tuple[dict[str, dict], list[RecipeDifference]]:
    """Intervals of every recipe's ratio to fp32, and every pair of recipes' AP delta.

    Args:
        model: the model's name (for the rows).
        predictions: recipe name (``fp32`` first) -> its WIDER predictions.
        ground_truth: the ground truth.
        settings: :func:`bootstrap_settings`.

    Returns:
        ``({recipe: {setting: [low, high]}}`` of the ratio to fp32, the pairwise
        differences).
    """
    from scrfd_ref.widerface.bootstrap import paired_bootstrap

    names = list(predictions)
    keys = list(predictions["fp32"])
    boot = lambda a, b: paired_bootstrap(predictions[a], predictions[b], ground_truth,  # noqa: E731
                                         images=keys, **settings)
    ratios = {"fp32": {s: [1.0, 1.0] for s in SETTINGS}}
    diffs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pb = boot(a, b)
            if a == "fp32":
                ratios[b] = {s: pb[s].ratio_interval.to_list() for s in SETTINGS}
                continue
            diffs.append(RecipeDifference(
                model, a, b, {s: pb[s].delta for s in SETTINGS},
                {s: pb[s].delta_interval.to_list() for s in SETTINGS},
                {s: not pb[s].delta_interval.contains(0.0) for s in SETTINGS}))
    return ratios, diffs


def measure_recipes(model: Path, recipes: Sequence[str], items: Sequence[Any],
                    ground_truth: Any, *, cache_dir: Path | None = None,
                    input_size: tuple[int, int] = (640, 640), progress: bool = False,
                    on_row: Callable[[RecipeRow], None] | None = None,
                    differences: list | None = None) -> list[RecipeRow]:
    """fp32 and each named recipe of ``model`` on ``items`` (see the module docstring),
    each row with the interval of its ratio to fp32; ``differences`` (a list) receives the
    :class:`RecipeDifference` of every pair of recipes."""
    from scrfd_ref.core.errors import InputError
    from scrfd_ref.quantize.convert import conversion_record, convert_model

    unknown = [r for r in recipes if r not in known_recipes()]
    if unknown:
        raise InputError(f"unknown int8 recipe {unknown[0]!r}; known: "
                         f"{', '.join(known_recipes())}")
    from scrfd_ref.widerface.evaluate import evaluate

    model = Path(model)
    predictions = {"fp32": held_out_predictions(model, "fp32", items, input_size=input_size,
                                                progress=progress)}
    keys = list(predictions["fp32"])
    ap_of = lambda preds: {s: float(r.ap[s]) for r in [evaluate(preds, ground_truth,  # noqa: E731
                                                                images=keys)] for s in SETTINGS}
    fp32 = ap_of(predictions["fp32"])
    rows = [RecipeRow(model.name, "fp32", fp32, {s: 1.0 for s in SETTINGS},
                      images=len(items))]
    if on_row:
        on_row(rows[-1])
    for name in recipes:
        t0 = time.perf_counter()
        runner = THIRD_PARTY.get(name, "ort")
        if name in THIRD_PARTY:
            from scrfd_ref.quantize.nncf_int8 import nncf_model

            converted = nncf_model(model, input_size=input_size, cache=cache_dir,
                                   progress=progress)
        else:
            converted = convert_model(model, "int8", cache_dir=cache_dir, recipe=RECIPES[name],
                                      input_size=input_size, progress=progress)
        took = time.perf_counter() - t0
        record = conversion_record(converted) or {}
        predictions[name] = held_out_predictions(converted, "int8", items,
                                                 input_size=input_size, progress=progress,
                                                 backend=runner)
        ap = ap_of(predictions[name])
        rows.append(RecipeRow(
            model.name, name, ap, {s: ap[s] / fp32[s] if fp32[s] else float("nan")
                                   for s in SETTINGS},
            record.get("int8_mac_share"),
            list(record.get("search", {}).get("float_nodes", [])),
            took if took > 1.0 else 0.0, len(items)))
        if on_row:
            on_row(rows[-1])
    intervals, pairs = compare_recipes(model.name, predictions, ground_truth,
                                       bootstrap_settings())
    for row in rows:
        row.ratio_interval = intervals[row.recipe]
    if differences is not None:
        differences.extend(pairs)
    return rows


def _interval(iv: Sequence | None) -> str:
    if not iv or iv[0] is None or iv[1] is None:
        return ""
    return f" [{iv[0]:.4f}, {iv[1]:.4f}]"


def table_markdown(rows: Sequence[RecipeRow]) -> str:
    """The rows as a Markdown table (AP and ratio to fp32 per setting, with the ratio's
    interval when measured)."""
    head = ("| model | recipe | easy | medium | hard | int8 MACs | float nodes |\n"
            "|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        cells = [f"{r.ap[s]:.4f} ({r.ratio[s]:.4f}{_interval(r.ratio_interval.get(s))})"
                 for s in SETTINGS]
        share = "-" if r.int8_mac_share is None else f"{100 * r.int8_mac_share:.1f}%"
        lines.append(f"| {r.model} | {r.recipe} | {' | '.join(cells)} | {share} | "
                     f"{', '.join(r.float_nodes) or '-'} |")
    return head + "\n".join(lines) + "\n"


def differences_markdown(differences: Sequence[RecipeDifference], settings: dict) -> str:
    """Which recipe differences the images show (the delta interval excludes 0) and which
    are within the evaluation's sampling noise."""
    if not differences:
        return ""
    pct = f"{100 * settings['confidence']:g}%"
    lines = [f"Recipe differences (AP of b minus a, {pct} paired-bootstrap interval over the "
             f"same images, {settings['resamples']} resamples; **significant** when the "
             "interval excludes 0, else within sampling noise):", "",
             "| model | a | b | easy | medium | hard |", "|---|---|---|---|---|---|"]
    for d in differences:
        cells = [f"{d.delta[s]:+.4f}{_interval(d.interval[s])}"
                 + (" **significant**" if d.significant[s] else "") for s in SETTINGS]
        lines.append(f"| {d.model} | {d.a} | {d.b} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
