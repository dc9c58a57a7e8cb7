"""Rewrite SCRFD ONNX graphs into the device layout (seed-flow.md section 2).

The insightface export ends every head with a short *flattening tail* after the head's
last computing op (the conv, or the learned ``Scale`` ``Mul`` behind it)::

    raw map (B, 2*C, H, W) -> Transpose -> Reshape (-1, C) or (1, -1, C) [-> Sigmoid]

:func:`export_device_layout` cuts every head before that tail, so each graph output is
the raw NCHW map the vendor flow compiles: scores as logits ``(B, 2, H, W)``, boxes
``(B, 8, H, W)``, landmarks ``(B, 20, H, W)``, named ``score_8 ... kps_32`` in the order
scores, boxes, landmarks (strides 8, 16, 32 each). :func:`drop_landmark_outputs` and
:func:`fix_input_size` are the other two rewrites. Like everything in
:mod:`scrfd_ref.device.onnx_tools` (which finds the heads), they work on copies: no function changes the ``onnx.ModelProto`` it is given.

This module builds on :mod:`scrfd_ref.device.onnx_tools` (head finding, output pruning
with :func:`~scrfd_ref.device.onnx_tools.keep_outputs`); onnx_tools imports nothing from here.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import onnx
from onnx import helper, shape_inference

from scrfd_ref.core.errors import InputError, LayoutError
from scrfd_ref.device.onnx_tools import (
    Dim,
    HeadOutput,
    ModelOrPath,
    _check_size,
    _find_heads,
    _graph_label,
    _image_input,
    _resolve,
    _run_zeros,
    _value_shape,
    keep_outputs,
    replace_field,
)


def fix_input_size(model: onnx.ModelProto, input_size: tuple[int, int]) -> onnx.ModelProto:
    """Copy of ``model`` with the image input fixed to ``(W, H)`` and static output shapes.

    The input becomes ``[B, 3, H, W]`` (a dynamic batch becomes 1), stale intermediate
    shapes are dropped and re-inferred with onnx shape inference, and the output shapes
    are taken from one onnxruntime run at that size (onnx shape inference alone cannot
    resolve the real exports' group-norm and resize subgraphs).

    Raises:
        InputError: the size is not a positive multiple of 32, or the model cannot run
            at that size (e.g. a static export with resize sizes baked in).
    """

    return _fix_input_size(model, input_size, _graph_label(model))


def export_device_layout(model_or_path: ModelOrPath, *,
                         input_size: tuple[int, int] | None = None,
                         drop_landmarks: bool = False) -> onnx.ModelProto:
    """Turn a standard SCRFD export into the device layout (seed-flow.md section 2).

    Every head is cut before its flattening tail, so the outputs are the raw NCHW maps
    ``score_{8,16,32}`` ``(B, 2, H/s, W/s)`` (logits), ``bbox_*`` ``(B, 8, ...)`` and, unless
    ``drop_landmarks``, ``kps_*`` ``(B, 20, ...)``, in that order. Nodes and weights no
    longer needed are pruned. ``input_size=(W, H)`` fixes the input and gives every
    output a static shape; otherwise dynamic input dims stay dynamic. A model already in
    the device layout is accepted (outputs are renamed and reordered only).

    Raises:
        InputError: the file cannot be loaded or the model cannot run at ``input_size``.
        LayoutError: the graph does not end in SCRFD heads (see
            :func:`~scrfd_ref.device.onnx_tools.find_heads`).
    """

    model, label = _resolve(model_or_path)
    if input_size is not None:
        model = _fix_input_size(model, input_size, label)
    heads = [h for h in _find_heads(model, label, None)
             if not (drop_landmarks and h.kind == "kps")]
    image = _image_input(model, label)
    if image.name in {h.device_name for h in heads}:
        raise LayoutError(f"{label}: the input is named {image.name!r}, which the device "
                          f"layout needs for an output")
    input_shape = _value_shape(image) or (None,) * 4
    pruned = keep_outputs(model, [h.map_name for h in heads])
    _rename_tensors(pruned.graph, {h.map_name: h.device_name for h in heads})
    replace_field(pruned.graph.output, [_map_value_info(h, input_shape) for h in heads])
    replace_field(pruned.graph.value_info,
             [v for v in pruned.graph.value_info if v.name not in {h.device_name for h in heads}])
    return pruned


def drop_landmark_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of a 9-output model without its landmark outputs, pruned (6 outputs).

    Works on the standard layout (and the device layout alike); the remaining outputs
    keep their names, shapes and order. A 6-output model is returned as a plain copy.

    Raises:
        LayoutError: the graph does not end in SCRFD heads.
    """

    label = _graph_label(model)
    heads = _find_heads(model, label, None)
    landmark_outputs = {h.output_name for h in heads if h.kind == "kps"}
    kept = [o for o in model.graph.output if o.name not in landmark_outputs]
    pruned = keep_outputs(model, [o.name for o in kept])
    del pruned.graph.output[:]
    pruned.graph.output.extend(kept)
    return pruned


# ----------------------------------------------------------------------------- internals

def _tensor_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name used in ``graph`` (node inputs/outputs, initializers, inputs)."""
    return ({t for n in graph.node for t in (*n.input, *n.output)}
            | {t.name for t in graph.initializer} | {i.name for i in graph.input})


def _rename_tensors(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    """Rename tensors in place (on a graph this module owns), avoiding collisions.

    Goes through unique temporary names first, so swaps and chains are safe; any other
    tensor that already holds a target name is renamed out of the way. Node inputs and
    outputs, initializers, value_info and outputs are renamed; the image input must not
    be among the names involved (the caller checks).
    """
    names = _tensor_names(graph)
    targets = set(mapping.values())
    blockers = {n for n in names & targets if n not in mapping}
    full = {**{b: _fresh(f"{b}_orig", names | targets) for b in blockers}, **mapping}
    temp = {old: _fresh(f"__rename_{i}", names | targets) for i, old in enumerate(full)}
    for step in (temp, {temp[old]: new for old, new in full.items()}):
        for node in graph.node:
            node.input[:] = [step.get(i, i) for i in node.input]
            node.output[:] = [step.get(o, o) for o in node.output]
        for v in [*graph.value_info, *graph.output, *graph.initializer, *graph.input]:
            v.name = step.get(v.name, v.name)


def _fresh(base: str, taken: set[str]) -> str:
    """``base`` or ``base_1``, ``base_2``, ... whichever is not in ``taken``."""
    candidates = itertools.chain([base], (f"{base}_{i}" for i in itertools.count(1)))
    return next(c for c in candidates if c not in taken)


def _map_value_info(head: HeadOutput, input_shape: Sequence[Dim]) -> onnx.ValueInfoProto:
    """Device-layout output declaration of ``head``: the probed map shape when the input
    is fully static, else the input's batch dim, the channels, and dynamic H and W."""
    static = all(isinstance(d, int) for d in input_shape)
    shape = (list(head.map_shape) if static
             else [input_shape[0], head.channels, None, None])
    return helper.make_tensor_value_info(head.device_name, head.elem_type, shape)


def _fix_input_size(model: onnx.ModelProto, input_size: tuple[int, int],
                    label: str) -> onnx.ModelProto:
    """:func:`fix_input_size` with ``label`` (file or graph) in error messages."""

    w, h = _check_size(input_size, label)
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    inp = _image_input(fixed, label)
    old = _value_shape(inp) or (None,) * 4
    new = [old[0] if isinstance(old[0], int) else 1, old[1] if isinstance(old[1], int) else 3, h, w]
    inp.type.tensor_type.ClearField("shape")
    inp.type.tensor_type.shape.dim.extend(
        onnx.TensorShapeProto.Dimension(dim_value=d) for d in new)
    del fixed.graph.value_info[:]
    for o in fixed.graph.output:
        o.type.tensor_type.ClearField("shape")
    was_fixed = isinstance(old[2], int) and isinstance(old[3], int) and (old[3], old[2]) != (w, h)
    hint = (f" (its input was fixed at {old[3]}x{old[2]}; a static export may have feature "
            f"sizes baked into its graph)") if was_fixed else ""
    arrays = _run_zeros(fixed, (w, h), label, hint)
    for o in fixed.graph.output:
        o.type.tensor_type.shape.dim.extend(
            onnx.TensorShapeProto.Dimension(dim_value=d) for d in arrays[o.name].shape)
    try:
        return shape_inference.infer_shapes(fixed, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as e:
        raise InputError(f"{label}: shape inference fails at {w}x{h}: {e}") from e


__all__ = ["drop_landmark_outputs", "export_device_layout", "fix_input_size"]
