"""Read and inspect SCRFD ONNX files (seed-flow.md sections 1-2).

Loading, saving, describing a model and finding its heads live here; the rewrites into
the device layout (``export_device_layout``, ``drop_landmark_outputs``, ``fix_input_size``)
live in :mod:`scrfd_ref.device.export`, which builds on this module; output pruning
(:func:`keep_outputs`) serves both.

Heads are found by structure and shape, never by output name or order: the tail is
walked back from each output through flattening ops (:data:`TAIL_OPS`) to the raw map,
the maps are computed once with onnxruntime on a zero image (onnx shape inference
loses the spatial sizes in the group-norm and FPN-resize subgraphs of several real
exports), and kind and stride follow from the map's channel count (2 / 8 / 20) and
its size relative to the input. Everything here works on copies: no function changes
the ``onnx.ModelProto`` it is given.

Errors: unreadable or corrupt files raise :class:`~scrfd_ref.core.errors.InputError`, graphs
without SCRFD heads raise :class:`~scrfd_ref.core.errors.LayoutError`; both name the file
(or the graph when a bare ``ModelProto`` was passed) and list the outputs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence, Union

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper

from scrfd_ref.core.errors import InputError, LayoutError

STRIDES: tuple[int, ...] = (8, 16, 32)
#: Head kinds in output order, with the channel count of their raw map (2 anchors x C).
KIND_MAP_CHANNELS: dict[str, int] = {"score": 2, "bbox": 8, "kps": 20}
#: Ops of the flattening tail that the device export removes (output side of a head).
TAIL_OPS: frozenset[str] = frozenset(
    {"Transpose", "Reshape", "Flatten", "Sigmoid", "Identity", "Squeeze", "Unsqueeze"})
#: Input size used to find heads in a model whose input height/width are dynamic.
PROBE_SIZE: tuple[int, int] = (160, 128)

Dim = Union[int, str, None]
ModelOrPath = Union[onnx.ModelProto, str, os.PathLike]
_KIND_BY_CHANNELS = {c: k for k, c in KIND_MAP_CHANNELS.items()}


@dataclass(frozen=True)
class HeadOutput:
    """One SCRFD head found in a graph.

    Attributes:
        output_name: the graph output the head ends in (in the model that was searched).
        map_name: the tensor holding the head's raw NCHW map (where the device export cuts).
        kind: ``score``, ``bbox`` or ``kps``.
        stride: 8, 16 or 32.
        channels: channels of the raw map (2, 8 or 20).
        tail_ops: op types between the raw map and the output, output side first
            (empty for a model that is already in the device layout).
        map_shape: shape of the raw map at the probe input size.
        elem_type: ``onnx.TensorProto`` element type of the raw map.
    """

    output_name: str
    map_name: str
    kind: str
    stride: int
    channels: int
    tail_ops: tuple[str, ...]
    map_shape: tuple[int, ...]
    elem_type: int

    @property
    def device_name(self) -> str:
        """Output name in the device layout, e.g. ``score_8``."""
        return f"{self.kind}_{self.stride}"


@dataclass(frozen=True)
class ModelInfo:
    """What a model file declares, for reports and the CLI (nothing is run).

    Dims are ``int`` when fixed, ``str`` for a named dynamic dim and ``None`` when unknown.
    ``layout`` is guessed from the output ranks: rank 4 is the device layout, rank 2 or 3
    the standard export; ``landmarks`` is true for 9 outputs.
    """

    source: str
    input_name: str
    input_shape: tuple[Dim, ...]
    opset: int
    output_names: tuple[str, ...]
    output_shapes: tuple[tuple[Dim, ...], ...]
    landmarks: bool
    layout: Literal["standard", "device"]
    num_outputs: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_outputs", len(self.output_names))


# ----------------------------------------------------------------------------- files

def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Load and check an ONNX file.

    Raises:
        InputError: the file is missing, not a file, unreadable, not ONNX (protobuf
            parse fails, or no graph), or fails ``onnx.checker`` (corrupt/truncated).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: model file not found")
    if not p.is_file():
        raise InputError(f"{p}: not a file (expected an .onnx model)")
    try:
        model = onnx.load(str(p))
    except DecodeError as e:
        raise InputError(f"{p}: not a readable ONNX model, the file is truncated, corrupt or "
                         f"not ONNX ({e})") from e
    except (OSError, ValueError) as e:
        raise InputError(f"{p}: cannot read ONNX model: {e}") from e
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node:
        raise InputError(f"{p}: not an ONNX model (no IR version or empty graph)")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{p}: corrupt ONNX model, onnx.checker says: {first}") from e
    return model


def save_model(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` atomically (temp file in the same folder, then rename).

    Parent folders are created. Returns the path written.
    """
    from scrfd_ref.formats.files import write_bytes

    return write_bytes(path, model.SerializeToString(), fsync=True)


# ----------------------------------------------------------------------------- inspection

def describe_model(model_or_path: ModelOrPath) -> ModelInfo:
    """Summarise a model's input, opset and outputs without running it.

    Raises:
        InputError: the file cannot be loaded, or the graph has no image input.
        LayoutError: the output ranks fit neither layout (all 2/3 or all 4).
    """
    model, label = _resolve(model_or_path)
    inp = _image_input(model, label)
    names = tuple(o.name for o in model.graph.output)
    shapes = tuple(_value_shape(o) for o in model.graph.output)
    ranks = {len(s) for s in shapes if s is not None}
    if None not in shapes and ranks == {4}:
        layout: Literal["standard", "device"] = "device"
    elif None not in shapes and ranks and ranks <= {2, 3}:
        layout = "standard"
    else:
        raise LayoutError(f"{label}: cannot tell the output layout from the output ranks "
                          f"(standard: all rank 2 or 3, device: all rank 4); "
                          f"outputs: {_list_outputs(model)}")
    return ModelInfo(source=label, input_name=inp.name, input_shape=_value_shape(inp) or (),
                     opset=_default_opset(model), output_names=names,
                     output_shapes=shapes, landmarks=len(names) == 9, layout=layout)


def find_heads(model_or_path: ModelOrPath, *,
               probe_size: tuple[int, int] | None = None) -> tuple[HeadOutput, ...]:
    """Find the SCRFD heads of a standard or device-layout model.

    Each output is walked back through :data:`TAIL_OPS` to its raw map; the maps are
    computed once with onnxruntime on a zero image of ``probe_size`` ``(W, H)``
    (default: the model's fixed input size, else :data:`PROBE_SIZE`) and each head's
    kind and stride follow from the map's channels and spatial size. Returned in
    device order: scores, boxes, landmarks, strides ascending within each kind.

    Raises:
        LayoutError: not 6 or 9 outputs, a map that is not ``(B, 2/8/20, H/s, W/s)``,
            a sigmoid on a box or landmark head, or a missing/duplicated head.
        InputError: onnxruntime cannot run the model at the probe size.
    """
    model, label = _resolve(model_or_path)
    return _find_heads(model, label, probe_size)


# ----------------------------------------------------------------------------- internals

def keep_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """Copy of ``model`` whose outputs are the tensors ``names`` (no declared shapes), with
    nodes, initializers and value_info that no longer feed any output removed.

    The graph is assumed topologically sorted (the ONNX rule) and free of subgraphs.
    """
    names = list(dict.fromkeys(names))
    needed = set(names)
    kept: list[onnx.NodeProto] = []
    for node in reversed(model.graph.node):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    kept.reverse()
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*g.value_info, *g.output, *g.input]}
    inits = [t for t in g.initializer if t.name in needed]
    init_names = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in init_names or i.name in needed]
    value_info = [v for v in g.value_info if v.name in needed and v.name not in names]
    replace_field(g.node, kept)
    replace_field(g.initializer, inits)
    replace_field(g.input, inputs)
    replace_field(g.value_info, value_info)
    replace_field(g.output, [helper.make_tensor_value_info(n, types.get(n, TensorProto.FLOAT), None)
                        for n in names])
    return out


def replace_field(field_: object, items: Iterable) -> None:
    """Replace the contents of a repeated protobuf field by copies of ``items``."""
    copies = [type(i).FromString(i.SerializeToString()) for i in items]
    del field_[:]  # type: ignore[index]
    field_.extend(copies)  # type: ignore[attr-defined]



def _resolve(model_or_path: ModelOrPath) -> tuple[onnx.ModelProto, str]:
    """``(model, label for messages)`` from a ModelProto or a path."""
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path, _graph_label(model_or_path)
    return load_model(model_or_path), str(model_or_path)


def _graph_label(model: onnx.ModelProto) -> str:
    """Label for messages about a model given as a ModelProto (no file name known)."""
    return f"model graph '{model.graph.name or '(unnamed)'}'"


def _default_opset(model: onnx.ModelProto) -> int:
    """Version of the default (ai.onnx) opset, 0 when absent."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _dim(d: onnx.TensorShapeProto.Dimension) -> Dim:
    """A dim as int (fixed), str (named dynamic) or None (unknown)."""
    if d.HasField("dim_value"):
        return int(d.dim_value)
    if d.HasField("dim_param"):
        return d.dim_param
    return None


def _value_shape(v: onnx.ValueInfoProto) -> tuple[Dim, ...] | None:
    """Declared shape of a value (None when the rank is unknown)."""
    t = v.type.tensor_type
    return tuple(_dim(d) for d in t.shape.dim) if t.HasField("shape") else None


def _list_outputs(model: onnx.ModelProto) -> str:
    """``name [d0, d1, ...]`` for every graph output, for error messages."""
    def fmt(s: tuple[Dim, ...] | None) -> str:
        dims = ["?"] if s is None else ["?" if d is None else str(d) for d in s]
        return "[" + ", ".join(dims) + "]"
    return ", ".join(f"{o.name} {fmt(_value_shape(o))}" for o in model.graph.output) or "(none)"


def _image_input(model: onnx.ModelProto, label: str) -> onnx.ValueInfoProto:
    """The single non-initializer graph input, which must be rank 4 (NCHW)."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise LayoutError(f"{label}: expected one image input, found {len(inputs)}: "
                          f"{[i.name for i in inputs]}")
    shape = _value_shape(inputs[0])
    if shape is not None and len(shape) != 4:
        raise LayoutError(f"{label}: input {inputs[0].name} has shape {list(shape)}, "
                          f"expected NCHW [B, 3, H, W]")
    return inputs[0]


def _check_size(input_size: tuple[int, int], label: str) -> tuple[int, int]:
    """``(W, H)`` as ints, both positive multiples of 32, else InputError."""
    try:
        w, h = (int(v) for v in input_size)
    except (TypeError, ValueError) as e:
        raise InputError(f"{label}: input_size must be (width, height), got {input_size!r}") from e
    if w <= 0 or h <= 0 or w % 32 or h % 32:
        raise InputError(f"{label}: input size {w}x{h} is not a positive multiple of 32 "
                         f"(SCRFD needs H and W divisible by the largest stride, 32)")
    return w, h


def _probe_size(model: onnx.ModelProto, probe_size: tuple[int, int] | None,
                label: str) -> tuple[int, int]:
    """``(W, H)`` to run at: ``probe_size``, else the fixed input dims, else PROBE_SIZE."""
    if probe_size is not None:
        return _check_size(probe_size, label)
    shape = _value_shape(_image_input(model, label)) or (None,) * 4
    h, w = shape[2], shape[3]
    return (w if isinstance(w, int) else PROBE_SIZE[0], h if isinstance(h, int) else PROBE_SIZE[1])


def _run_zeros(model: onnx.ModelProto, input_size: tuple[int, int], label: str,
               hint: str = "") -> dict[str, np.ndarray]:
    """Run ``model`` once on a zero image of ``(W, H)``; outputs by name.

    ``hint`` is appended to the error message when onnxruntime fails.
    """
    import onnxruntime as ort  # local: importing onnx_tools must not need onnxruntime loaded

    inp = _image_input(model, label)
    shape = _value_shape(inp) or (None,) * 4
    batch, chans = (d if isinstance(d, int) else dflt for d, dflt in zip(shape[:2], (1, 3)))
    dtype = helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type or TensorProto.FLOAT)
    w, h = input_size
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        arrays = sess.run(None, {inp.name: np.zeros((batch, chans, h, w), dtype)})
    except Exception as e:  # onnxruntime raises several unrelated exception types
        detail = (str(e).strip().strip("'\"").splitlines() or [repr(e)])[0]
        raise InputError(f"{label}: onnxruntime cannot run the model at {w}x{h}{hint}: "
                         f"{detail}") from e
    return {o.name: a for o, a in zip(sess.get_outputs(), arrays)}


def _walk_tail(output: str, producers: dict[str, onnx.NodeProto]) -> tuple[str, tuple[str, ...]]:
    """Follow ``output`` back through :data:`TAIL_OPS`: ``(raw map name, ops passed)``."""
    name, ops = output, []
    while (node := producers.get(name)) is not None and node.op_type in TAIL_OPS:
        ops.append(node.op_type)
        name = node.input[0]
    return name, tuple(ops)


def _classify_map(shape: tuple[int, ...], input_size: tuple[int, int]) -> tuple[str, int] | None:
    """``(kind, stride)`` of a raw map of ``shape`` at input ``(W, H)``, or None."""
    if len(shape) != 4 or shape[1] not in _KIND_BY_CHANNELS or 0 in shape[2:]:
        return None
    w, h = input_size
    if h % shape[2] or w % shape[3] or h // shape[2] != w // shape[3]:
        return None
    stride = h // shape[2]
    return (_KIND_BY_CHANNELS[shape[1]], stride) if stride in STRIDES else None


def _find_heads(model: onnx.ModelProto, label: str,
                probe_size: tuple[int, int] | None) -> tuple[HeadOutput, ...]:
    """:func:`find_heads` with ``label`` (file or graph) in error messages."""
    outputs = [o.name for o in model.graph.output]

    def fail(what: str) -> LayoutError:
        return LayoutError(f"{label}: outputs do not look like SCRFD heads: {what}; "
                           f"outputs: {_list_outputs(model)}")

    if len(outputs) not in (6, 9):
        raise fail(f"{len(outputs)} output(s), SCRFD models have 6 (scores, boxes) or 9 "
                   f"(with landmarks)")
    producers = {o: n for n in model.graph.node for o in n.output}
    tails = {o: _walk_tail(o, producers) for o in outputs}
    map_names = [m for m, _ in tails.values()]
    if len(set(map_names)) != len(map_names):
        raise fail("several outputs come from the same tensor")
    size = _probe_size(model, probe_size, label)
    maps = _run_zeros(keep_outputs(model, map_names), size, label)
    heads = []
    for out, (map_name, ops) in tails.items():
        shape = maps[map_name].shape
        found = _classify_map(shape, size)
        if found is None:
            raise fail(f"output {out} comes from tensor {map_name} of shape {list(shape)} at "
                       f"input {size[0]}x{size[1]}, not a (B, 2|8|20, H/s, W/s) map for a "
                       f"stride s in {STRIDES}")
        kind, stride = found
        if kind != "score" and "Sigmoid" in ops:
            raise fail(f"output {out} ({kind} head, stride {stride}) passes through a Sigmoid")
        heads.append(HeadOutput(out, map_name, kind, stride, shape[1], ops, tuple(shape),
                                helper.np_dtype_to_tensor_dtype(maps[map_name].dtype)))
    kinds = ("score", "bbox", "kps") if len(outputs) == 9 else ("score", "bbox")
    expected = [(k, s) for k in kinds for s in STRIDES]
    order = {ks: i for i, ks in enumerate(expected)}
    got = sorted((h.kind, h.stride) for h in heads)
    if got != sorted(expected):
        raise fail(f"found heads {got}, expected one each of {expected}")
    return tuple(sorted(heads, key=lambda h: order[(h.kind, h.stride)]))


__all__ = ["KIND_MAP_CHANNELS", "PROBE_SIZE", "STRIDES", "TAIL_OPS", "Dim", "HeadOutput",
           "ModelInfo", "ModelOrPath", "describe_model", "find_heads", "keep_outputs",
           "load_model", "replace_field", "save_model"]
