"""``check-config``: cross-check a model, its vdsp params file and its build YAML.

Every finding is one line with its severity (``error`` / ``warning`` / ``info``) and the
field it is about. Errors are configurations that make the device compute something else than SCRFD
(the reference would then judge a device fault that is a configuration fault):

- the vdsp output size differs from the model's fixed input, or, for a dynamic model,
  from the build YAML's input shape and the expected input size (``--input-size``,
  default 640; the zoo's 256-vs-640 mistake);
- a normalisation other than SCRFD's ``(x - 127.5) / 128`` (``DIV255``, ImageNet mean /
  std), or BGR reaching the RGB-trained model (``BGR888`` without ``BGR2RGB``);
- a pitch smaller than its width, unknown keys (with the closest valid key), unknown values;
- a build YAML whose calibration resize or normalisation differs from the vdsp file;
- a value of the wrong type or out of range in either file (the readers' one validator per
  file kind: :func:`scrfd_ref.formats.vdsp.parse_vdsp`,
  :func:`scrfd_ref.formats.build_yaml.value_problems`).

Warnings: an OpType or resize the reference cannot emulate, keys of the YAML the reader
did not understand. Info: no
``Padding`` (the device default is undocumented; the profile's pad value is assumed).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scrfd_ref.core.profiles import SCRFD_MEAN, SCRFD_STD
from scrfd_ref.formats.build_yaml import BuildRecipe
from scrfd_ref.formats.vdsp import REFUSED_OPS, VdspParams

DEFAULT_INPUT_SIZE = (640, 640)


@dataclass(frozen=True)
class Finding:
    """One line of the linter's output."""

    severity: str   # "error", "warning" or "info"
    field: str      # e.g. "vdsp OpConfig.OimageWidth"
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.field}: {self.message}"


def model_input_size(model: Path) -> tuple[int | None, int | None]:
    """``(W, H)`` of the model's image input (None for a dynamic side)."""
    from scrfd_ref.device.onnx_tools import describe_model

    shape = describe_model(model).input_shape
    h = shape[2] if len(shape) == 4 and isinstance(shape[2], int) else None
    w = shape[3] if len(shape) == 4 and isinstance(shape[3], int) else None
    return w, h


def _expected_size(model: Path | None,
                   input_size: tuple[int, int] | None) -> tuple[tuple[int, int], str]:
    """The input size everything must agree on, and where it comes from."""
    if model is not None:
        w, h = model_input_size(model)
        if w and h:
            return (w, h), f"the model's fixed input ({model.name})"
    if input_size:
        w, h = input_size
        return (w, h), f"the expected input size (--input-size {w},{h})"
    return DEFAULT_INPUT_SIZE, "the expected input size (default; --input-size W,H sets it)"


def lint_vdsp(vdsp: VdspParams, expected: tuple[int, int], where: str) -> list[Finding]:
    """Findings of a vdsp file against SCRFD and the expected input size (a field with a
    problem of its own is reported once, and not judged further)."""
    out = [Finding("error", f"vdsp {p.split(':')[0]}", p.split(": ", 1)[1] if ": " in p else p)
           for p in vdsp.problems]
    bad = {p.split(":")[0].removeprefix("OpConfig.") for p in vdsp.problems}

    def get(key: str):
        return None if key in bad else vdsp.get(key)

    f = lambda key: f"vdsp OpConfig.{key}"  # noqa: E731
    if vdsp.op_type in REFUSED_OPS:
        out.append(Finding("warning", "vdsp OpType", f"{vdsp.op_type} cannot be emulated by the "
                                                     f"reference: {REFUSED_OPS[vdsp.op_type]}"))
    ow, oh = get("OimageWidth"), get("OimageHeight")
    if ow is not None and oh is not None and (ow, oh) != tuple(expected):
        out.append(Finding("error", f("OimageWidth/OimageHeight"),
                           f"{ow}x{oh} but {where} is {expected[0]}x{expected[1]}: the device "
                           "would feed the model another size than it was built for"))
    for side in ("Width", "Height"):
        size, pitch = get(f"Iimage{side}"), get(f"Iimage{side}Pitch")
        if size is not None and pitch is not None and pitch < size:
            out.append(Finding("error", f(f"Iimage{side}Pitch"),
                               f"{pitch} is smaller than Iimage{side} {size} (a row stride "
                               "must hold the row)"))
    fmt, code, norm = get("IimageFormat"), get("ColorCvtCode"), get("NormaType")
    mean, std = get("Mean"), get("Std")
    if norm is not None and norm != "MINUSMEAN_DIVSTD":
        out.append(Finding("error", f("NormaType"), f"{norm}, but SCRFD was trained on "
                                                    "(x - 127.5) / 128 (MINUSMEAN_DIVSTD)"))
    elif mean is not None and std is not None and (
            tuple(map(float, mean)) != SCRFD_MEAN or tuple(map(float, std)) != SCRFD_STD):
        out.append(Finding("error", f("Mean/Std"), f"mean {mean} std {std}, but SCRFD was "
                                                   "trained on mean 127.5, std 128"))
    if fmt and code and (fmt == "YUV_NV12") != (code == "YUV2RGB_NV12"):
        out.append(Finding("error", f("ColorCvtCode"), f"{code} with IimageFormat {fmt}: YUV "
                                                       "NV12 input needs YUV2RGB_NV12 and only "
                                                       "it"))
    elif fmt == "YUV_NV12":
        out.append(Finding("warning", f("IimageFormat"), "YUV_NV12 (video) input is not "
                                                         "emulated by the reference"))
    elif fmt and code and vdsp.model_channel_order() == "bgr":
        out.append(Finding("error", f("ColorCvtCode"),
                           f"{fmt} with {code} gives the model BGR, but SCRFD was trained on "
                           "RGB (use BGR2RGB for BGR888)"))
    if get("ResizeType") == "NO_RESIZE":
        out.append(Finding("warning", f("ResizeType"), "NO_RESIZE: every image must arrive at "
                                                       "the output size; not emulated"))
    if "Padding" not in vdsp.config:
        out.append(Finding("info", f("Padding"), "absent: the device's undocumented default "
                                                 "pad value applies (the reference assumes "
                                                 "the profile's, 114 for device-flow)"))
    return out


def lint_recipe(recipe: BuildRecipe, vdsp: VdspParams | None,
                expected: tuple[int, int], where: str) -> list[Finding]:
    """Findings of a build YAML, and of its calibration against the vdsp file."""
    out = [Finding("error", f"yaml {p.split(': ', 1)[0]}", p.split(": ", 1)[1] if ": " in p
                   else p) for p in recipe.problems]
    if recipe.unsupported:
        out.append(Finding("warning", "yaml", "not understood (ignored): "
                                              + ", ".join(recipe.unsupported)))
    if recipe.input_shape and len(recipe.input_shape) == 4:
        h, w = recipe.input_shape[2], recipe.input_shape[3]
        if (w, h) != tuple(expected):
            out.append(Finding("error", "yaml frontend.shape", f"{w}x{h} but {where} is "
                                                               f"{expected[0]}x{expected[1]}"))
    ops = recipe.ops
    if recipe.dtype == "int8":
        if ops.resize_long_side is not None and ops.resize_long_side != max(expected):
            out.append(Finding("error", "yaml calib Resize", f"long side to "
                                                             f"{ops.resize_long_side}, but the "
                                                             f"model input is {expected[0]}x"
                                                             f"{expected[1]}"))
        if ops.mean is not None and (ops.mean != SCRFD_MEAN or (ops.std or SCRFD_STD) != SCRFD_STD
                                     or ops.div255):
            out.append(Finding("error", "yaml calib Normalize",
                               f"mean {list(ops.mean)} std {list(ops.std or ())}"
                               f"{' div255' if ops.div255 else ''}, but SCRFD was trained on "
                               "(x - 127.5) / 128"))
    if vdsp is not None and recipe.dtype == "int8":
        ow, oh = vdsp.get("OimageWidth"), vdsp.get("OimageHeight")
        if ops.resize_long_side is not None and isinstance(ow, int) and isinstance(oh, int) \
                and ops.resize_long_side != max(ow, oh):
            out.append(Finding("error", "yaml calib Resize vs vdsp",
                               f"calibration resizes the long side to {ops.resize_long_side} "
                               f"but the device letterboxes to {ow}x{oh}: int8 would be "
                               "calibrated on other inputs than the device sees"))
        vm, vs = vdsp.get("Mean"), vdsp.get("Std")
        if ops.mean is not None and isinstance(vm, list) and isinstance(vs, list) and (
                list(ops.mean) != [float(x) for x in vm]
                or list(ops.std or ()) != [float(x) for x in vs]):
            out.append(Finding("error", "yaml calib Normalize vs vdsp",
                               f"calibration normalises with mean {list(ops.mean)} std "
                               f"{list(ops.std or ())}, the device with mean {vm} std {vs}"))
    return out


def check_config(model: Path | None, vdsp: VdspParams | None, recipe: BuildRecipe | None,
                 input_size: tuple[int, int] | None = None) -> list[Finding]:
    """Every finding of the given files, errors first."""
    expected, where = _expected_size(model, input_size)
    findings: list[Finding] = []
    if vdsp is not None:
        findings += lint_vdsp(vdsp, expected, where)
    if recipe is not None:
        findings += lint_recipe(recipe, vdsp, expected, where)
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(findings, key=lambda f: order[f.severity])
