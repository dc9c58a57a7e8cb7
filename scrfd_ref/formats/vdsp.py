"""The device's vdsp params JSON (seed-flow.md section 7): read it, map it onto a profile.

A vdsp params file describes the device's fused preprocessing op::

    {"OpType": "FUSION_OP_RGB_LETTERBOX_CVTCOLOR_NORM_TENSOR",
     "OpConfig": {"IimageFormat": "RGB_PLANAR", "IimageWidth": 640, ...,
                  "OimageWidth": 640, "OimageHeight": 640, "Mean": [...], "Std": [...],
                  "NormaType": "MINUSMEAN_DIVSTD", "ColorCvtCode": "NO_CHANGE",
                  "ResizeType": "BILINEAR_CV", "Padding": [114, 114, 114]}}

:func:`read_vdsp_params` parses and validates it, the one validator of the file kind
(:func:`parse_vdsp`) that ``check-config`` and every command reading the file share:
unknown keys name the closest valid one; wrong types, unknown enum values and values out
of range (sizes 1..65535, ``Mean`` finite, ``Std`` finite and above 0, ``Padding`` pixel
values 0..255) are refused. :func:`apply_vdsp` sets the
preprocessing part of a profile from it: the letterbox (the device letterboxes each image
from its own size into ``Oimage*``, centred; the ``Iimage*`` fields describe the host
buffer and do not change the geometry), the channel order reaching the model
(``IimageFormat`` then ``ColorCvtCode``), ``Mean`` / ``Std`` / ``NormaType``, the resize
method and ``Padding`` when present (else the profile's pad value: the device default is
undocumented). Thresholds and box rounding stay the profile's.

Supported OpTypes: the letterbox fusion op the zoo uses, and the resize-only op (a plain
resize to the output size). Refused by name: the op without resize (``..._CVTCOLOR_NORM_
TENSOR``: every image must already have the output size), the ``_EXT`` op with explicit
padding and resize sizes, and the YUV NV12 (video) ops.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from scrfd_ref.core.errors import UsageError, did_you_mean
from scrfd_ref.core.profiles import Profile
from scrfd_ref.formats.files import display, input_file
from scrfd_ref.formats.manifest_check import nesting_depth

LETTERBOX_OP = "FUSION_OP_RGB_LETTERBOX_CVTCOLOR_NORM_TENSOR"
RESIZE_OP = "FUSION_OP_RGB_RESIZE_CVTCOLOR_NORM_TENSOR"
#: OpTypes the reference can emulate -> letterbox kind
SUPPORTED_OPS: dict[str, str] = {LETTERBOX_OP: "centered", RESIZE_OP: "stretch"}
#: OpTypes the device knows and the reference refuses, with the reason
REFUSED_OPS: dict[str, str] = {
    "FUSION_OP_RGB_CVTCOLOR_NORM_TENSOR": "it does not resize: every image would have to "
                                          "arrive at the output size already",
    "FUSION_OP_RGB_LETTERBOX_CVTCOLOR_NORM_TENSOR_EXT": "explicit PaddingLeft/Right/Top/"
                                                        "Bottom and ResizeWidth/Height are "
                                                        "not emulated",
    "FUSION_OP_YUV_NV12_LETTERBOX_CVTCOLOR_NORM_TENSOR": "YUV NV12 (video) input is not "
                                                         "emulated",
    "FUSION_OP_YUV_NV12_RESIZE_CVTCOLOR_NORM_TENSOR": "YUV NV12 (video) input is not emulated",
    "FUSION_OP_YUV_NV12_CVTCOLOR_NORM_TENSOR": "YUV NV12 (video) input is not emulated",
}
IMAGE_FORMATS = ("RGB_PLANAR", "RGB888", "BGR888", "YUV_NV12")
NORM_TYPES = {"MINUSMEAN_DIVSTD": "minusmean_divstd",
              "DIV255_MINUSMEAN_DIVSTD": "div255_minusmean_divstd", "DIV255": "div255"}
COLOR_CODES = ("NO_CHANGE", "BGR2RGB", "RGB2BGR", "YUV2RGB_NV12")
#: ResizeType -> the reference's interpolation (None: refused by name, with the reason)
RESIZE_TYPES: dict[str, str | None] = {
    "BILINEAR_CV": "bilinear", "BILINEAR": "bilinear", "NEAREST": "nearest",
    "BICUBIC": "bicubic", "LANCZOS_CV": "lanczos", "BILINEAR_PILLOW": "bilinear_pillow",
    "BICUBIC_PILLOW": "bicubic_pillow", "NO_RESIZE": None}
#: OpConfig keys: name -> kind of value
CONFIG_KEYS: dict[str, str] = {
    "IimageFormat": "enum", "IimageWidth": "size", "IimageHeight": "size",
    "IimageWidthPitch": "size", "IimageHeightPitch": "size", "OimageWidth": "size",
    "OimageHeight": "size", "Mean": "mean", "Std": "std", "NormaType": "enum",
    "ColorCvtCode": "enum", "ResizeType": "enum", "Padding": "pixel"}
#: largest image side a vdsp size field may give
MAX_SIDE = 65535
#: deepest nesting read (the file has 3 levels: object, OpConfig, a list of 3)
MAX_DEPTH = 8
REQUIRED_KEYS = ("IimageFormat", "OimageWidth", "OimageHeight", "Mean", "Std", "NormaType",
                 "ColorCvtCode", "ResizeType")
ENUMS: dict[str, tuple[str, ...]] = {"IimageFormat": IMAGE_FORMATS,
                                     "NormaType": tuple(NORM_TYPES),
                                     "ColorCvtCode": COLOR_CODES,
                                     "ResizeType": tuple(RESIZE_TYPES)}


def suggest(word: str, choices) -> str:
    """``; did you mean X?`` for the closest valid name, or the list of valid names."""
    return did_you_mean(word, list(choices))


@dataclass(frozen=True)
class VdspParams:
    """A read vdsp params file.

    Attributes:
        source: the file.
        op_type: ``OpType``.
        config: ``OpConfig`` as read.
        text: the file's content (recorded in a dump's manifest).
        problems: what is wrong with it (unknown keys, wrong types, unknown values); one
            line each, naming the field.
    """

    source: str
    op_type: str
    config: Mapping[str, Any]
    text: str
    problems: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        """sha256 of the file's content."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def get(self, key: str, default: Any = None) -> Any:
        """An ``OpConfig`` value."""
        return self.config.get(key, default)

    def model_channel_order(self) -> str:
        """``rgb`` or ``bgr``: what reaches the model. ``IimageFormat`` gives the buffer's
        order (``BGR888`` is BGR, the others RGB); ``BGR2RGB`` and ``RGB2BGR`` swap the
        first and third channel (a swap, whatever the name says), ``NO_CHANGE`` keeps it."""
        order = "bgr" if self.get("IimageFormat", "RGB_PLANAR") == "BGR888" else "rgb"
        if self.get("ColorCvtCode", "NO_CHANGE") in ("BGR2RGB", "RGB2BGR"):
            order = "rgb" if order == "bgr" else "bgr"
        return order

    def to_record(self) -> dict[str, Any]:
        """What a manifest records: the file name, its sha256 and its parsed content."""
        return {"file": Path(self.source).name, "sha256": self.sha256,
                "OpType": self.op_type, "OpConfig": dict(self.config)}


def _triple(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _value_problem(key: str, kind: str, value: Any) -> str | None:
    if kind == "size":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SIDE:
            return f"OpConfig.{key}: must be a positive integer up to {MAX_SIDE}, got {value!r}"
    elif kind in ("mean", "std", "pixel"):
        if not _triple(value):
            return f"OpConfig.{key}: must be a list of 3 numbers, got {value!r}"
        if kind == "mean" and not all(math.isfinite(v) for v in value):
            return f"OpConfig.{key}: must be 3 finite numbers, got {value!r}"
        if kind == "std" and not all(math.isfinite(v) and v > 0 for v in value):
            return f"OpConfig.{key}: must be 3 finite numbers above 0, got {value!r}"
        if kind == "pixel" and not all(math.isfinite(v) and 0 <= v <= 255 for v in value):
            return f"OpConfig.{key}: must be 3 numbers from 0 to 255, got {value!r}"
    elif kind == "enum":
        if value not in ENUMS[key]:
            return f"OpConfig.{key}: unknown value {value!r}" + suggest(str(value), ENUMS[key])
    return None


def parse_vdsp(doc: Any, source: str, text: str = "") -> VdspParams:
    """Validate a parsed vdsp document; problems are collected, not raised."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        raise UsageError(f"{source}: a vdsp params file is a JSON object with OpType and "
                         "OpConfig")
    for k in doc:
        if k not in ("OpType", "OpConfig"):
            problems.append(f"{k}: unknown key" + suggest(k, ("OpType", "OpConfig")))
    op = doc.get("OpType")
    config = doc.get("OpConfig")
    if not isinstance(op, str):
        problems.append(f"OpType: missing or not text ({op!r})")
        op = ""
    elif op not in SUPPORTED_OPS and op not in REFUSED_OPS:
        problems.append(f"OpType: unknown op {op!r}" + suggest(op, [*SUPPORTED_OPS, *REFUSED_OPS]))
    if not isinstance(config, dict):
        problems.append(f"OpConfig: missing or not an object ({type(config).__name__})")
        config = {}
    for k, v in config.items():
        if k not in CONFIG_KEYS:
            problems.append(f"OpConfig.{k}: unknown key" + suggest(k, CONFIG_KEYS))
            continue
        bad = _value_problem(k, CONFIG_KEYS[k], v)
        if bad:
            problems.append(bad)
    for k in REQUIRED_KEYS:
        if k not in config:
            problems.append(f"OpConfig.{k}: missing")
    return VdspParams(source, op, config, text, tuple(problems))


def read_vdsp_params(path: str | Path) -> VdspParams:
    """Read a vdsp params JSON file (problems collected in :attr:`VdspParams.problems`).

    Raises:
        DataMissingError: no such file.
        UsageError: a folder, unreadable, or not JSON (exit 2).
    """
    from scrfd_ref.formats.strict import StrictFormatError, json_loads, regular_file_text

    p = input_file(path, "--vdsp-params", "vdsp params file")
    try:
        text = regular_file_text(p)
        doc = json_loads(text)
    except (OSError, StrictFormatError) as exc:
        raise UsageError(f"--vdsp-params {display(p)}: not a readable JSON file ({exc})") from None
    if nesting_depth(doc, MAX_DEPTH) > MAX_DEPTH:
        raise UsageError(f"--vdsp-params {display(p)}: not a readable JSON file (nested too "
                         f"deeply: more than {MAX_DEPTH} levels; a vdsp params file has 3)")
    return parse_vdsp(doc, display(p), text)


def profile_fields(vdsp: VdspParams) -> dict[str, Any]:
    """The profile fields the file sets (see the module docstring).

    Raises:
        UsageError: the file has problems, or an OpType / value the reference refuses
            (named, with the reason).
    """
    if vdsp.problems:
        raise UsageError(f"--vdsp-params {vdsp.source}: {vdsp.problems[0]}"
                         + (f" (and {len(vdsp.problems) - 1} more; scrfd-ref check-config "
                            "lists them)" if len(vdsp.problems) > 1 else ""))
    if vdsp.op_type in REFUSED_OPS:
        raise UsageError(f"--vdsp-params {vdsp.source}: OpType {vdsp.op_type} is not supported: "
                         f"{REFUSED_OPS[vdsp.op_type]}")
    if vdsp.get("IimageFormat") == "YUV_NV12":
        raise UsageError(f"--vdsp-params {vdsp.source}: IimageFormat YUV_NV12 is not supported "
                         "(video input is not emulated)")
    if vdsp.get("ColorCvtCode") == "YUV2RGB_NV12":
        raise UsageError(f"--vdsp-params {vdsp.source}: ColorCvtCode YUV2RGB_NV12 is not "
                         "supported (video input is not emulated)")
    interpolation = RESIZE_TYPES[vdsp.get("ResizeType")]
    if interpolation is None:
        raise UsageError(f"--vdsp-params {vdsp.source}: ResizeType NO_RESIZE is not supported "
                         "(every image would have to arrive at the output size)")
    fields: dict[str, Any] = {
        "input_size": (int(vdsp.get("OimageWidth")), int(vdsp.get("OimageHeight"))),
        "letterbox": SUPPORTED_OPS[vdsp.op_type],
        "mean": tuple(float(v) for v in vdsp.get("Mean")),
        "std": tuple(float(v) for v in vdsp.get("Std")),
        "norm": NORM_TYPES[vdsp.get("NormaType")],
        "channel_order": vdsp.model_channel_order(),
        "interpolation": interpolation,
    }
    padding = vdsp.get("Padding")
    if padding is not None:
        if len({float(v) for v in padding}) != 1:
            raise UsageError(f"--vdsp-params {vdsp.source}: Padding {padding} differs per "
                             "channel; the reference pads with one pixel value")
        fields["pad_value"] = float(padding[0])
    return fields


def apply_vdsp(profile: Profile, vdsp: VdspParams) -> Profile:
    """``profile`` with its preprocessing taken from ``vdsp`` (thresholds kept).

    Raises:
        UsageError: see :func:`profile_fields`; an output size that is not a multiple of 32.
    """
    fields = profile_fields(vdsp)
    w, h = fields["input_size"]
    if w % 32 or h % 32:
        raise UsageError(f"--vdsp-params {vdsp.source}: OimageWidth x OimageHeight {w}x{h} is "
                         "not a multiple of 32 (SCRFD's largest stride)")
    return profile.replace(**fields)
