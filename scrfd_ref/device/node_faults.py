"""Single-node faults: a compiler bug simulated in ONE node of an ONNX graph.

:func:`inject_node_fault` returns a modified copy of an ``onnx.ModelProto`` (the input is
never changed) in which one node, named by its ``name``, computes the wrong thing. Only
top-level graph nodes are considered. The faults (:data:`NODE_FAULTS`) and what they model:

- ``conv_weight_scale`` (magnitude, default 1.5): the Conv's weight multiplied by the
  magnitude, a mis-scaled weight (a BatchNorm folded twice, a wrong per-layer scale). A
  weight initializer shared with another node gets a copy of its own; a weight that comes
  through a DequantizeLinear of an initializer (QDQ model) gets that scale multiplied.
- ``conv_bias_drop``: the Conv's bias input removed, a lowering that forgets the bias (the
  folded BatchNorm shift); Convs without a bias do not apply.
- ``relu_clip6``: the Relu replaced by Clip(0, 6), a ReLU lowered as ReLU6 (min/max as
  scalar initializer inputs from opset 11, attributes before). A no-op wherever the Relu
  never sees values above 6.
- ``relu_identity``: the Relu replaced by Identity, an activation lost in fusion.
- ``resize_mode``: a Resize's mode nearest -> linear (or linear -> nearest), the wrong
  interpolation kernel; every other attribute is kept (onnxruntime runs linear with every
  coordinate mode and ignores nearest_mode). A nearest Resize whose constant scales (or
  sizes) scale the outer dims in a way onnxruntime's linear kernel rejects (4-D: scales
  other than [1, 1, h, w] or [1, h, w, 1]; 5-D: other than [1, 1, d, h, w]) does not apply.
- ``add_drop``: an Add of two node outputs (a residual or FPN lateral sum) replaced by
  Identity of its input 0, a branch lost. Only Adds of two (non-Constant) node outputs of
  shapes not known to differ apply, so input 0 is never a graph input; in the SCRFD FPN it
  is the lateral conv, so the top-down (upsampled) or bottom-up branch is dropped.
- ``pad_shift``: a Conv's symmetric pads [t, l, b, r] (auto_pad NOTSET, b >= 1, r >= 1)
  become [t+1, l+1, b-1, r-1]: same output shape, window moved one pixel (off-by-one pads).
- ``int8_scale`` (magnitude, default 2.0): in a QDQ model (onnxruntime ``quantize_static``,
  QDQ format), the DequantizeLinear of an activation QuantizeLinear that feeds the node's
  input 0 gets its scale multiplied, a wrong requantization scale. The node is named by
  the consumer (e.g. a Conv), so float and QDQ versions of a model share node names; a
  DequantizeLinear shared with other consumers is duplicated for this node, a shared scale
  initializer copied.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from scrfd_ref.core.errors import InputError

__all__ = ["NODE_FAULTS", "eligible_nodes", "inject_node_fault"]

NODE_FAULTS: dict[str, str] = {
    "conv_weight_scale": "Conv weight multiplied by the magnitude (default 1.5)",
    "conv_bias_drop": "Conv bias input removed",
    "relu_clip6": "Relu replaced by Clip(0, 6)",
    "relu_identity": "Relu replaced by Identity",
    "resize_mode": "Resize mode nearest <-> linear",
    "add_drop": "Add of two node outputs replaced by Identity of input 0",
    "pad_shift": "Conv pads [t,l,b,r] -> [t+1,l+1,b-1,r-1] (window shifted one pixel)",
    "int8_scale": "QDQ: activation DequantizeLinear scale of input 0 times the magnitude (2.0)",
}
DEFAULT_MAGNITUDE: dict[str, float] = {"conv_weight_scale": 1.5, "int8_scale": 2.0}


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep + [helper.make_attribute(name, value)])


class _Graph:
    """Lookup tables over the top-level graph of ``model`` (which it may then edit)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model, self.g = model, model.graph
        self.inits = {t.name: t for t in self.g.initializer}
        self.producer = {o: n for n in self.g.node for o in n.output if o}
        self.uses: dict[str, int] = {}
        for name in [i for n in self.g.node for i in n.input] + [o.name for o in self.g.output]:
            self.uses[name] = self.uses.get(name, 0) + 1
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.taken = (set(self.inits) | set(self.producer) | set(self.uses)
                      | {i.name for i in self.g.input} | {n.name for n in self.g.node})
        self._types: dict[str, onnx.TypeProto] | None = None

    def node(self, name: str) -> onnx.NodeProto:
        for n in self.g.node:
            if n.name == name:
                return n
        raise InputError(f"node {name!r} is not in the graph (no top-level node has that name).")

    def tensor_type(self, name: str) -> onnx.TypeProto | None:
        """The (shape-inferred) type of a tensor, or None when unknown."""
        if self._types is None:
            try:
                g = onnx.shape_inference.infer_shapes(self.model).graph
            except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
                g = self.g
            self._types = {v.name: v.type for v in [*g.input, *g.value_info, *g.output]}
        return self._types.get(name)

    def dims(self, name: str) -> list[int | None] | None:
        t = self.tensor_type(name)
        if t is None or not t.tensor_type.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim]

    def is_data(self, name: str) -> bool:
        """Produced by a node that is not a Constant (and is not an initializer)."""
        n = self.producer.get(name)
        return n is not None and n.op_type != "Constant" and name not in self.inits

    def weight_dq(self, name: str) -> onnx.NodeProto | None:
        """The DequantizeLinear making ``name`` from an initializer, with an initializer scale."""
        n = self.producer.get(name)
        ok = n is not None and n.op_type == "DequantizeLinear" and {*n.input[:2]} <= {*self.inits}
        return n if ok else None

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def add_init(self, array: np.ndarray, base: str) -> str:
        name = self.fresh(base)
        tensor = numpy_helper.from_array(array, name)
        self.g.initializer.append(tensor)
        self.inits[name] = tensor
        if self.model.ir_version < 4:  # old IR: every initializer is also a graph input
            self.g.input.append(helper.make_tensor_value_info(name, tensor.data_type, array.shape))
        return name

    def scale_init(self, node: onnx.NodeProto, idx: int, factor: float) -> None:
        """Multiply the initializer ``node.input[idx]`` by ``factor`` for this node only."""
        name = node.input[idx]
        array = numpy_helper.to_array(self.inits[name])
        scaled = (array.astype(np.float64) * factor).astype(array.dtype)
        if self.uses.get(name, 0) > 1:
            node.input[idx] = self.add_init(scaled, f"{name}_{node.name}_fault")
        else:
            self.inits[name].CopyFrom(numpy_helper.from_array(scaled, name))

    def scale_dq(self, dq: onnx.NodeProto, consumer: onnx.NodeProto, idx: int,
                 factor: float) -> None:
        """Multiply the scale of ``dq`` as seen by ``consumer.input[idx]`` only."""
        if self.uses.get(dq.output[0], 0) > 1:  # shared: a duplicate for this consumer
            at = list(self.g.node).index(dq) + 1
            self.g.node.insert(at, dq)
            dq = self.g.node[at]
            dq.name = self.fresh(f"{dq.name or 'DequantizeLinear'}_{consumer.name}_fault")
            dq.output[0] = consumer.input[idx] = self.fresh(f"{dq.output[0]}_{consumer.name}_fault")
            for i in dq.input:
                self.uses[i] = self.uses.get(i, 0) + 1
        self.scale_init(dq, 1, factor)


def _resize_scales(gr: _Graph, node: onnx.NodeProto) -> list[float] | None:
    """The constant scales of a Resize (from its scales or sizes input), or None."""
    def const(i: int) -> np.ndarray | None:
        name = node.input[i] if len(node.input) > i else ""
        a = numpy_helper.to_array(gr.inits[name]) if name in gr.inits else None
        return a if a is not None and a.size else None

    scales, sizes, dims = const(2) if gr.opset >= 11 else const(1), const(3), gr.dims(node.input[0])
    if scales is None and sizes is not None and dims and len(dims) == sizes.size and all(dims):
        scales = sizes / np.array(dims)
    return None if scales is None else [float(v) for v in scales]


def _why_not(gr: _Graph, node: onnx.NodeProto, fault: str) -> str | None:
    """Why ``fault`` does not apply to ``node``, or None when it does."""
    op = node.op_type
    wanted = {"relu_clip6": "Relu", "relu_identity": "Relu", "resize_mode": "Resize",
              "add_drop": "Add", "conv_weight_scale": "Conv", "conv_bias_drop": "Conv",
              "pad_shift": "Conv"}.get(fault)
    if wanted and op != wanted:
        return f"it is a {op}, not a {wanted}"
    weight = node.input[1] if len(node.input) > 1 else ""
    if fault == "conv_weight_scale" and weight not in gr.inits and gr.weight_dq(weight) is None:
        return "its weight is neither an initializer nor a DequantizeLinear of one"
    if fault == "conv_bias_drop" and not (len(node.input) > 2 and node.input[2]):
        return "it has no bias input"
    if fault == "resize_mode":
        mode = _attr(node, "mode", b"nearest")
        if mode not in (b"nearest", b"linear"):
            return f"its mode is {mode.decode()}, neither nearest nor linear"
        s = _resize_scales(gr, node) if mode == b"nearest" else None
        if s and not (len(s) < 4 or s[:2] == [1, 1] or (len(s) == 4 and s[0] == s[3] == 1)):
            return f"its scales {s} are ones onnxruntime's linear Resize rejects"
    if fault == "add_drop":
        if len(node.input) != 2 or not all(gr.is_data(i) for i in node.input):
            return "its inputs are not both produced by (non-Constant) nodes"
        a, b = gr.dims(node.input[0]), gr.dims(node.input[1])
        if a is not None and b is not None and (
                len(a) != len(b) or any(x and y and x != y for x, y in zip(a, b))):
            return "its inputs have different shapes (a broadcast), so one alone changes the shape"
    if fault == "pad_shift":
        if _attr(node, "auto_pad", b"NOTSET") != b"NOTSET":
            return "its auto_pad is not NOTSET"
        pads = list(_attr(node, "pads", [0, 0, 0, 0]))
        if len(pads) != 4 or pads[:2] != pads[2:] or min(pads[2:]) < 1:
            return f"its pads {pads} are not symmetric 2-D pads with bottom and right >= 1"
    if fault == "int8_scale":
        if op in ("QuantizeLinear", "DequantizeLinear"):
            return "it is a quantize/dequantize node itself"
        dq = gr.producer.get(node.input[0]) if node.input else None
        if dq is None or dq.op_type != "DequantizeLinear":
            return "its input 0 is not produced by a DequantizeLinear"
        q = gr.producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            return "the DequantizeLinear feeding its input 0 is not of an activation QuantizeLinear"
        if dq.input[1] not in gr.inits:
            return "the scale of the DequantizeLinear feeding its input 0 is not an initializer"
    return None


def _apply(gr: _Graph, node: onnx.NodeProto, fault: str, factor: float) -> None:
    """Rewrite ``node`` (of ``gr``'s model, in place) with ``fault``."""
    if fault == "conv_weight_scale" and node.input[1] in gr.inits:
        gr.scale_init(node, 1, factor)
    elif fault == "conv_weight_scale":  # QDQ weight: its dequantization scale
        gr.scale_dq(gr.weight_dq(node.input[1]), node, 1, factor)
    elif fault == "int8_scale":
        gr.scale_dq(gr.producer[node.input[0]], node, 0, factor)
    elif fault == "conv_bias_drop":
        bias = node.input[2]
        del node.input[2:]
        if gr.uses.get(bias) == 1 and bias in gr.inits:  # now unused: drop the initializer too
            gr.g.initializer.remove(gr.inits.pop(bias))
            for i in [i for i in gr.g.input if i.name == bias]:  # old IR lists it as an input
                gr.g.input.remove(i)
    elif fault == "relu_clip6" and gr.opset < 11:
        node.op_type = "Clip"
        lo, hi = helper.make_attribute("min", 0.0), helper.make_attribute("max", 6.0)
        node.attribute.extend([lo, hi])
    elif fault == "relu_clip6":
        t = gr.tensor_type(node.input[0])
        elem = t.tensor_type.elem_type if t is not None else 0
        dtype = helper.tensor_dtype_to_np_dtype(elem or onnx.TensorProto.FLOAT)
        node.op_type = "Clip"
        node.input.extend([gr.add_init(np.array(0, dtype), f"{node.name}_clip_min"),
                           gr.add_init(np.array(6, dtype), f"{node.name}_clip_max")])
    elif fault in ("relu_identity", "add_drop"):
        node.op_type = "Identity"
        del node.input[1:]  # add_drop keeps input 0 (see the module docstring)
    elif fault == "resize_mode":
        nearest = _attr(node, "mode", b"nearest") == b"nearest"
        _set_attr(node, "mode", "linear" if nearest else "nearest")
    elif fault == "pad_shift":
        t, left, b, r = _attr(node, "pads")
        _set_attr(node, "pads", [t + 1, left + 1, b - 1, r - 1])


def _check_fault(fault: str) -> None:
    if fault not in NODE_FAULTS:
        raise InputError(f"unknown node fault {fault!r}; known faults: {', '.join(NODE_FAULTS)}.")


def eligible_nodes(model: onnx.ModelProto, fault: str) -> list[str]:
    """Names of the top-level nodes ``fault`` applies to, in graph order (unnamed nodes are
    left out: they cannot be named to :func:`inject_node_fault`).

    Raises :class:`InputError` for an unknown fault name.
    """
    _check_fault(fault)
    gr = _Graph(model)
    return [n.name for n in model.graph.node if n.name and _why_not(gr, n, fault) is None]


def inject_node_fault(model: onnx.ModelProto, node: str, fault: str,
                      magnitude: float | None = None) -> onnx.ModelProto:
    """Return a copy of ``model`` with ``fault`` (a key of :data:`NODE_FAULTS`) injected
    into the top-level node named ``node``; ``model`` itself is left unchanged.

    ``magnitude`` is the factor of ``conv_weight_scale`` (default 1.5) and ``int8_scale``
    (default 2.0); the other faults ignore it. Raises :class:`InputError` when the fault
    name is unknown, the node does not exist, the fault does not apply to it, or the
    magnitude is not a finite number.
    """
    _check_fault(fault)
    try:
        factor = DEFAULT_MAGNITUDE.get(fault, 1.0) if magnitude is None else float(magnitude)
    except (TypeError, ValueError):
        factor = math.nan
    if not math.isfinite(factor):
        raise InputError(f"the magnitude of {fault!r} must be a finite number, not {magnitude!r}.")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    gr = _Graph(out)
    target = gr.node(node)
    reason = _why_not(gr, target, fault)
    if reason is not None:
        raise InputError(f"fault {fault!r} does not apply to node {node!r}: {reason}.")
    _apply(gr, target, fault, factor)
    return out
