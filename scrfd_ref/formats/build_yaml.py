"""The vamc build YAML (seed-flow.md section 7) read into the project's conversion recipe.

The zoo's files nest their keys differently from model to model, so keys are located by
name anywhere in the document (:func:`find_keys`), never by a fixed path; a key found in
two places with different values is refused. What the reader does not understand is
listed in one warning (:attr:`BuildRecipe.unsupported`); a missing required key is an
error. The YAML is read with a bounded ``yaml.SafeLoader``: a tag never constructs a
Python object, nesting deeper than :data:`MAX_DEPTH`, an alias used inside the node it
names, and aliases expanding to more than :data:`MAX_NODES` nodes ("billion laughs") are
refused before anything walks the document.

Values are checked for type and range in one place (:func:`value_problems`), whatever
command reads the file: ``quantize_per_channel``, ``pad_to_square`` and ``div255`` are
YAML booleans (a quoted ``"false"`` is text, refused, never taken as true), ``percentile``
a finite number in (0, 100], the Normalize ``std`` finite and above 0, sizes positive.
The problems are collected in :attr:`BuildRecipe.problems`: ``check-config`` lists them as
errors, and :meth:`BuildRecipe.check` refuses a recipe with any.

The recipe: model dtype (``fp16`` / ``int8``), the model's input shape, and for int8 the
calibration: mode (``max`` -> min/max, ``percentile``, ``kl`` / ``entropy``), per-channel
weights, how many images, where they are, and the calibration preprocessing ops (decode,
resize long side to N keeping the ratio, pad to square, normalise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from scrfd_ref.core.dtypes import BUILD_YAML_DTYPES
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
#: deepest nesting of a build YAML read (the zoo's files have 6 levels)
MAX_DEPTH = 32
#: most nodes a build YAML may expand to, aliases counted at every use (the zoo's: ~80)
MAX_NODES = 100_000


def _bounded_loader():
    """A ``yaml.SafeLoader`` that refuses deep nesting, self-referencing aliases and alias
    expansion beyond :data:`MAX_NODES` (a ``yaml.YAMLError`` saying which)."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._open_anchors: list[str] = []
            self._depth = 0
            self._sizes: dict[int, int] = {}

        def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
            if self.check_event(yaml.AliasEvent):
                anchor = self.peek_event().anchor
                if anchor in self._open_anchors:
                    raise yaml.YAMLError(f"alias *{anchor} is used inside the node it names "
                                         "(a self-referencing structure)")
                return super().compose_node(parent, index)
            event = self.peek_event()
            anchor = getattr(event, "anchor", None)
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels (line "
                                     f"{event.start_mark.line + 1})")
            if anchor:
                self._open_anchors.append(anchor)
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
                if anchor:
                    self._open_anchors.pop()

        def compose_document(self):  # type: ignore[no-untyped-def]
            node = super().compose_document()
            if self._expanded(node) > MAX_NODES:
                raise yaml.YAMLError(f"its aliases expand to more than {MAX_NODES:,} nodes "
                                     "(a \"billion laughs\" document)")
            return node

        def _expanded(self, node) -> int:  # type: ignore[no-untyped-def]
            """Nodes of ``node`` with every alias counted where it is used (each node's
            count computed once, so the walk is linear in the file)."""
            key = id(node)
            if key not in self._sizes:
                children = []
                if isinstance(node, yaml.SequenceNode):
                    children = node.value
                elif isinstance(node, yaml.MappingNode):
                    children = [n for pair in node.value for n in pair]
                self._sizes[key] = 1 + sum(self._expanded(c) for c in children)
            return self._sizes[key]

    return BoundedLoader


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
    problems: tuple[str, ...] = ()

    def check(self) -> "BuildRecipe":
        """This recipe, when its values are valid.

        Raises:
            UsageError: the first problem of :attr:`problems` (and their count), naming
                the file.
        """
        if self.problems:
            more = len(self.problems) - 1
            raise UsageError(f"--build-yaml {self.source}: {self.problems[0]}"
                             + (f" (and {more} more; scrfd-ref check-config lists them)"
                                if more else ""))
        return self

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


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def value_problems(doc: Any, source: str) -> list[str]:
    """Type and range problems of the values the recipe reads, one line each naming the
    key (see the module docstring)."""
    problems = []
    flag = _one(doc, "quantize_per_channel", source)
    if flag is not None and not isinstance(flag, bool):
        problems.append(f"quantize_per_channel: must be true or false, got {flag!r}")
    pct = _one(doc, "percentile", source)
    if pct is not None and not (_is_number(pct) and math.isfinite(pct) and 0 < pct <= 100):
        problems.append(f"percentile: must be a number in (0, 100], got {pct!r}")
    for key in ("path", "suffix"):
        value = _one(doc, key, source, under="calib")
        if value is not None and not isinstance(value, str):
            problems.append(f"calib.{key}: must be text, got {value!r}")
    shape = _one(doc, "shape", source)
    if isinstance(shape, dict):
        for name, dims in shape.items():
            if not (isinstance(dims, list) and dims and all(
                    isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims)):
                problems.append(f"frontend.shape.{name}: must be a list of positive integers, "
                                f"got {dims!r}")
    ops_list = _one(doc, "process_ops", source)
    for i, op in enumerate(ops_list if isinstance(ops_list, list) else []):
        if not isinstance(op, dict):
            continue
        where = f"process_ops[{i}] {op.get('type')}"
        for key in ("pad_to_square", "div255"):
            if op.get(key) is not None and not isinstance(op.get(key), bool):
                problems.append(f"{where} {key}: must be true, false or null, got "
                                f"{op.get(key)!r}")
        size = op.get("size")
        if op.get("type") == "Resize" and isinstance(size, list) and size and (
                not isinstance(size[0], int) or isinstance(size[0], bool) or size[0] <= 0):
            problems.append(f"{where} size: the long side must be a positive integer, got "
                            f"{size[0]!r}")
        for key, low in (("mean", None), ("std", 0.0)):
            value = op.get(key)
            if op.get("type") == "Normalize" and isinstance(value, list) and all(
                    _is_number(v) for v in value) and not all(
                    math.isfinite(v) and (low is None or v > low) for v in value):
                problems.append(f"{where} {key}: must be finite numbers"
                                + (" above 0" if low is not None else "") + f", got {value!r}")
    return problems


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

    from scrfd_ref.formats.strict import StrictFormatError, regular_file_text, strict_yaml_loader

    p = input_file(path, "--build-yaml", "build YAML")
    source = display(p)
    try:
        text = regular_file_text(p)
        doc = yaml.load(text, Loader=strict_yaml_loader(_bounded_loader()))  # noqa: S506
    except StrictFormatError as exc:
        raise UsageError(f"--build-yaml {source}: not a readable YAML file ({exc})") from None
    except RecursionError:
        raise UsageError(f"--build-yaml {source}: not a readable YAML file (nested more than "
                         f"{MAX_DEPTH} levels)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--build-yaml {source}: not a readable YAML file ({first})") from None
    if not isinstance(doc, dict):
        raise UsageError(f"--build-yaml {source}: a build YAML is a mapping of keys")
    backend = doc.get("backend") if isinstance(doc.get("backend"), dict) else {}
    dtype = backend.get("dtype", doc.get("dtype"))
    if dtype not in BUILD_YAML_DTYPES:
        raise UsageError(f"--build-yaml {source}: the backend dtype must be "
                         f"{' or '.join(BUILD_YAML_DTYPES)}, got {dtype!r}")
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
    problems = value_problems(doc, source)
    per_channel = _one(doc, "quantize_per_channel", source)
    return BuildRecipe(
        source=source, dtype=dtype, input_shape=input_shape,
        calibrate_mode=CALIBRATION_MODES[str(mode).lower()] if mode is not None else None,
        percentile=float(percentile) if _is_number(percentile) else None,
        per_channel=per_channel if isinstance(per_channel, bool) else None,
        calib_count=count, calib_path=_one(doc, "path", source, under="calib"),
        calib_suffix=_one(doc, "suffix", source, under="calib"), ops=ops,
        unsupported=tuple(unknown + unsupported), text=text, problems=tuple(problems))
