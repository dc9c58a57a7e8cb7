"""The vamc build YAML (seed-flow.md section 7) read into the project's conversion recipe.

The zoo's files nest their keys differently from model to model, so keys are located by
name anywhere in the document (:func:`find_keys`), never by a fixed path; a key found in
two places with different values is refused. What the reader does not understand is
listed in one warning (:attr:`BuildRecipe.unsupported`); a missing required key is an
error. The YAML is read with ``yaml.safe_load`` only: a tag never constructs a Python
object.

The recipe: model dtype (``fp16`` / ``int8``), the model's input shape, and for int8 the
calibration: mode (``max`` -> min/max, ``percentile``, ``kl`` / ``entropy``), per-channel
weights, how many images, where they are, and the calibration preprocessing ops (decode,
resize long side to N keeping the ratio, pad to square, normalise).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from scrfd_ref.core.errors import UsageError
from scrfd_ref.formats.files import display, input_file

#: calibrate_mode values -> the ORT calibration method names used by the project
CALIBRATION_MODES = {"max": "minmax", "minmax": "minmax", "min_max": "minmax",
                     "percentile": "percentile", "kl": "entropy", "entropy": "entropy"}
#: keys the recipe reads (anywhere in the document)
KNOWN_KEYS = {"name", "frontend", "backend", "type", "checkpoint", "shape", "dtype", "compile",
              "quantize", "calibrate_mode", "quantize_per_channel", "calib", "path", "suffix",
              "get_data_num", "process_ops", "data_transport_mode", "cluster_mode",
              "percentile"}
OP_TYPES = ("DecodeImage", "Resize", "Pad", "Normalize", "ToTensor")


@dataclass(frozen=True)
class CalibrationOps:
    """The calibration preprocessing the YAML describes."""

    resize_long_side: int | None = None
    pad_to_square: bool = False
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    div255: bool = False


@dataclass(frozen=True)
class BuildRecipe:
    """A build YAML as a conversion recipe.

    Attributes:
        source: the file.
        dtype: ``fp16`` or ``int8`` (the backend's dtype).
        input_shape: ``(N, C, H, W)`` from ``frontend.shape``, or None.
        calibrate_mode: ``minmax``, ``percentile`` or ``entropy`` (int8).
        percentile: the percentile of the percentile mode (None: the tool's default).
        per_channel: per-channel weight quantization (int8).
        calib_count: how many calibration images (``get_data_num``).
        calib_path, calib_suffix: where the calibration images are.
        ops: :class:`CalibrationOps`.
        unsupported: keys found but not understood (one warning lists them).
        text: the file's content.
    """

    source: str
    dtype: str
    input_shape: tuple[int, ...] | None = None
    calibrate_mode: str | None = None
    percentile: float | None = None
    per_channel: bool | None = None
    calib_count: int | None = None
    calib_path: str | None = None
    calib_suffix: str | None = None
    ops: CalibrationOps = field(default_factory=CalibrationOps)
    unsupported: tuple[str, ...] = ()
    text: str = ""

    def to_record(self) -> dict[str, Any]:
        """What a manifest or a report records."""
        return {"file": Path(self.source).name, "dtype": self.dtype,
                "input_shape": list(self.input_shape) if self.input_shape else None,
                "calibrate_mode": self.calibrate_mode, "percentile": self.percentile,
                "per_channel": self.per_channel, "calib_count": self.calib_count,
                "ops": {"resize_long_side": self.ops.resize_long_side,
                        "pad_to_square": self.ops.pad_to_square,
                        "mean": list(self.ops.mean) if self.ops.mean else None,
                        "std": list(self.ops.std) if self.ops.std else None,
                        "div255": self.ops.div255}}


def find_keys(doc: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """Every ``(key, dotted path, value)`` of a nested mapping (lists walked too)."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            here = f"{path}.{k}" if path else str(k)
            yield str(k), here, v
            yield from find_keys(v, here)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from find_keys(v, f"{path}[{i}]")


def _one(doc: Any, key: str, source: str, *, under: str | None = None) -> Any:
    """The value of ``key`` wherever it is (below a ``under`` key when given); None when
    absent; a UsageError when two places disagree."""
    found = [(p, v) for k, p, v in find_keys(doc) if k == key
             and (under is None or f"{under}." in f".{p}")]
    values = {repr(v) for _, v in found}
    if len(values) > 1:
        where = ", ".join(p for p, _ in found)
        raise UsageError(f"--build-yaml {source}: {key} has different values in {where}")
    return found[0][1] if found else None


def _triple(value: Any, what: str, source: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise UsageError(f"--build-yaml {source}: {what} must be 3 numbers, got {value!r}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def _ops(doc: Any, source: str) -> tuple[CalibrationOps, list[str]]:
    ops_list = _one(doc, "process_ops", source)
    if ops_list is None:
        return CalibrationOps(), []
    if not isinstance(ops_list, list):
        raise UsageError(f"--build-yaml {source}: process_ops must be a list")
    resize = pad = None
    mean = std = None
    div255 = False
    unsupported = []
    for i, op in enumerate(ops_list):
        kind = op.get("type") if isinstance(op, dict) else None
        if kind not in OP_TYPES:
            unsupported.append(f"process_ops[{i}] type {kind!r}")
            continue
        if kind == "Resize":
            size = op.get("size")
            side = op.get("adaptive_side", "long")
            if not (isinstance(size, list) and size and isinstance(size[0], int)) or side != "long":
                unsupported.append(f"process_ops[{i}] Resize size {size!r} adaptive_side "
                                   f"{side!r} (only: long side to N)")
            else:
                resize = int(size[0])
        elif kind == "Pad":
            pad = bool(op.get("pad_to_square", False))
        elif kind == "Normalize":
            mean = _triple(op.get("mean"), f"process_ops[{i}] Normalize mean", source)
            std = _triple(op.get("std"), f"process_ops[{i}] Normalize std", source)
            # ``div255: null`` (the zoo's SCRFD file) means "not set": no division by 255
            div255 = bool(op.get("div255"))
    return CalibrationOps(resize, bool(pad), mean, std, div255), unsupported


def read_build_yaml(path: str | Path) -> BuildRecipe:
    """Read a build YAML into a :class:`BuildRecipe` (``yaml.safe_load`` only).

    Raises:
        DataMissingError: no such file.
        UsageError: not YAML, not a mapping, a missing required key (the backend
            ``dtype``; for int8 ``calibrate_mode``), or conflicting values.
    """
    import yaml

    p = input_file(path, "--build-yaml", "build YAML")
    source = display(p)
    try:
        text = p.read_text(encoding="utf-8")
        doc = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--build-yaml {source}: not a readable YAML file ({first})") from None
    if not isinstance(doc, dict):
        raise UsageError(f"--build-yaml {source}: a build YAML is a mapping of keys")
    backend = doc.get("backend") if isinstance(doc.get("backend"), dict) else {}
    dtype = backend.get("dtype", doc.get("dtype"))
    if dtype not in ("fp16", "int8"):
        raise UsageError(f"--build-yaml {source}: the backend dtype must be fp16 or int8, got "
                         f"{dtype!r}")
    shape = _one(doc, "shape", source)
    input_shape = None
    if isinstance(shape, dict) and shape:
        dims = next(iter(shape.values()))
        if isinstance(dims, list) and all(isinstance(d, int) for d in dims):
            input_shape = tuple(dims)
    mode = _one(doc, "calibrate_mode", source)
    if dtype == "int8" and mode is None:
        raise UsageError(f"--build-yaml {source}: an int8 build needs calibrate_mode "
                         f"({', '.join(CALIBRATION_MODES)})")
    if mode is not None and str(mode).lower() not in CALIBRATION_MODES:
        raise UsageError(f"--build-yaml {source}: calibrate_mode {mode!r} is not one of "
                         f"{', '.join(CALIBRATION_MODES)}")
    count = _one(doc, "get_data_num", source)
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                              or count < 1):
        raise UsageError(f"--build-yaml {source}: get_data_num must be a positive integer")
    ops, unsupported = _ops(doc, source)
    # below ``shape`` the keys are the model's input names, below process_ops the ops' own
    unknown = sorted({p for k, p, _ in find_keys(doc) if k not in KNOWN_KEYS
                      and ".process_ops[" not in f".{p}" and ".shape." not in f".{p}"})
    percentile = _one(doc, "percentile", source)
    return BuildRecipe(
        source=source, dtype=dtype, input_shape=input_shape,
        calibrate_mode=CALIBRATION_MODES[str(mode).lower()] if mode is not None else None,
        percentile=float(percentile) if isinstance(percentile, (int, float)) else None,
        per_channel=_one(doc, "quantize_per_channel", source),
        calib_count=count, calib_path=_one(doc, "path", source, under="calib"),
        calib_suffix=_one(doc, "suffix", source, under="calib"), ops=ops,
        unsupported=tuple(unknown + unsupported), text=text)
