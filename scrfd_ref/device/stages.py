"""The stages of an SCRFD graph, read from the ONNX graph itself (for localize).

A stage is a set of data nodes with one role: the **stem** and each **backbone** stage
(one per feature stride, in graph order until the resolution first goes back up), each
**neck** level (the FPN / PAFPN nodes after the backbone, grouped by the stride they
write), each stride's **tower** (the chain of single-input nodes shared by that stride's
heads, the same length for every stride) and the **heads** (each output's own chain: the
last convs and the flattening tail). Nothing is matched by name: the heads come from
:func:`~scrfd_ref.device.onnx_tools.find_heads`, strides from the tensor sizes of one
run at the fixed input size, roles from the graph's structure. This works for every
variant's export (plain MobileNet-style backbones, residual ones with group-norm towers,
the synthetic models, static or dynamic input, standard or device layout).

Before stages are read, the graph is made static: the input size is fixed and every node
that computes only shapes or constants (``Shape``, ``Gather`` of a shape, ``Concat`` of
shape pieces, ...) is folded into an initializer, so each stage is made of the nodes a
device compiles and every stage boundary is a float feature map. Node names are kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from scrfd_ref.core.errors import InputError, LayoutError
from scrfd_ref.device.export import fix_input_size
from scrfd_ref.device.onnx_tools import ModelOrPath, _resolve, find_heads, replace_field

#: Ops whose output depends only on shapes, not on the values of their input.
SHAPE_OPS = frozenset({"Shape", "Size", "Constant", "ConstantOfShape"})
#: Stage kinds, in the order a network runs them.
STAGE_KINDS = ("stem", "backbone", "neck", "tower", "heads")


@dataclass(frozen=True)
class Stage:
    """One stage of the graph.

    Attributes:
        name: e.g. ``stem``, ``backbone s16``, ``neck s8``, ``tower s32``, ``heads``.
        kind: one of :data:`STAGE_KINDS`.
        stride: the feature stride the stage writes (0 for ``heads``, which write all).
        nodes: ONNX node names, graph order.
        op_types: the op type of each node (same order).
        inputs: float tensors the stage reads from other stages or the image input.
        outputs: float tensors it writes that other stages read, or graph outputs.
    """

    name: str
    kind: str
    stride: int
    nodes: tuple[str, ...]
    op_types: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class StageGraph:
    """A static, shape-folded model and its stages.

    Attributes:
        model: the model with a fixed input size and no shape-only nodes.
        input_name: the image input.
        input_size: ``(W, H)`` it was fixed at.
        stages: stages in run order (every data node in exactly one).
        shapes: shape of every float tensor at ``input_size``.
    """

    model: onnx.ModelProto
    input_name: str
    input_size: tuple[int, int]
    stages: tuple[Stage, ...]
    shapes: dict[str, tuple[int, ...]]


def _all_tensors(model: onnx.ModelProto, label: str) -> dict[str, np.ndarray]:
    """Every node output of ``model`` on a zero input (one onnxruntime run)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    types = {v.name: v.type for v in [*probe.graph.value_info, *probe.graph.output]}
    known = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in known and name in types:
                probe.graph.output.append(onnx.ValueInfoProto(name=name, type=types[name]))
                known.add(name)
    inp = probe.graph.input[0]
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(probe.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        arrays = sess.run(None, {inp.name: np.zeros(shape, np.float32)})
    except Exception as e:  # onnxruntime raises several unrelated exception types
        detail = (str(e).strip().splitlines() or [repr(e)])[0]
        raise InputError(f"{label}: onnxruntime cannot run the model with every tensor as an "
                         f"output: {detail}") from e
    return {o.name: a for o, a in zip(sess.get_outputs(), arrays)}


def fold_shape_nodes(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """Copy of a static ``model`` whose shape-only and constant nodes are initializers.

    A node is folded when its op is in :data:`SHAPE_OPS` or every input it has is an
    initializer or the output of a folded node; ``values`` holds the tensors of one run
    (their values do not depend on the image for such nodes).
    """
    g = model.graph
    const = {t.name for t in g.initializer}
    folded: list[onnx.NodeProto] = []
    for node in g.node:
        if node.op_type in SHAPE_OPS or all(i in const for i in node.input if i):
            folded.append(node)
            const.update(o for o in node.output if o)
    gone = {id(n) for n in folded}
    kept = [n for n in g.node if id(n) not in gone]
    used = {i for n in kept for i in n.input} | {o.name for o in g.output}
    new_inits = [numpy_helper.from_array(np.asarray(values[o]), o)
                 for n in folded for o in n.output if o in used]
    out = onnx.ModelProto()
    out.CopyFrom(model)
    replace_field(out.graph.node, kept)
    out.graph.initializer.extend(new_inits)
    live = {i for n in kept for i in n.input}
    replace_field(out.graph.initializer, [t for t in out.graph.initializer if t.name in live])
    return out


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed (or twice-named) node a unique name ``<op>_<index>``, in place."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
            while node.name in seen:
                node.name += "_"
        seen.add(node.name)


def _stride(shape: Sequence[int], input_h: int) -> int:
    """Feature stride of an NCHW tensor (0 when it is not a 4-D map)."""
    return int(round(input_h / shape[2])) if len(shape) == 4 and shape[2] else 0


class _Graph:
    """Producer / consumer maps of a static graph's data nodes."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.nodes = list(model.graph.node)
        self.index = {n.name: i for i, n in enumerate(self.nodes)}
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.inputs = {i.name for i in model.graph.input} - {t.name for t in model.graph.initializer}
        self.consumers: dict[str, list[str]] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n.name)
        self.graph_outputs = [o.name for o in model.graph.output]

    def data_inputs(self, node: onnx.NodeProto) -> list[str]:
        """Inputs of ``node`` written by another node or the image input."""
        return [i for i in node.input if i in self.producer or i in self.inputs]

    def chain(self, tensor: str, region: set[str], *, single_reader: bool = False) -> list[str]:
        """Nodes walked back from ``tensor`` while each has one data input and its output is
        read only inside ``region`` (which grows with the walk), and with
        ``single_reader`` by at most one node."""
        walked: list[str] = []
        while True:
            node = self.producer.get(tensor)
            if node is None or len(self.data_inputs(node)) != 1:
                break
            readers = set(self.consumers.get(tensor, []))
            if not readers <= region or (single_reader and len(readers) > 1):
                break
            walked.append(node.name)
            region.add(node.name)
            tensor = self.data_inputs(node)[0]
        return walked


def _boundary(g: _Graph, names: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(inputs, outputs)`` of the node set ``names``: float tensors crossing its edge."""
    inside = set(names)
    produced = [o for n in names for o in g.nodes[g.index[n]].output if o]
    made = set(produced)
    ins = [i for n in names for i in g.data_inputs(g.nodes[g.index[n]]) if i not in made]
    outs = [o for o in produced
            if o in g.graph_outputs or any(c not in inside for c in g.consumers.get(o, []))]
    return tuple(dict.fromkeys(ins)), tuple(outs)


def _stage(g: _Graph, name: str, kind: str, stride: int, names: Sequence[str]) -> Stage:
    ordered = sorted(names, key=g.index.__getitem__)
    ins, outs = _boundary(g, ordered)
    return Stage(name, kind, stride, tuple(ordered),
                 tuple(g.nodes[g.index[n]].op_type for n in ordered), ins, outs)


def _head_regions(g: _Graph, model: onnx.ModelProto) -> tuple[set[str], dict[int, list[str]]]:
    """The output chains (all heads) and each stride's tower (equal length for all)."""
    heads = find_heads(model)
    region: set[str] = set()
    tops: dict[int, set[str]] = {}
    for h in heads:
        walked = g.chain(h.output_name, region, single_reader=True)
        if not walked:
            continue
        first = g.nodes[g.index[walked[-1]]]
        tops.setdefault(h.stride, set()).add(g.data_inputs(first)[0])
    chains: dict[int, list[str]] = {}
    for stride, top in sorted(tops.items()):
        chains[stride] = g.chain(next(iter(top)), set(region)) if len(top) == 1 else []
    depth = min((len(c) for c in chains.values()), default=0)
    return region, {s: c[:depth] for s, c in chains.items() if depth}


def find_stages(model_or_path: ModelOrPath, input_size: tuple[int, int]) -> StageGraph:
    """Fix the input at ``(W, H)``, fold shape nodes and split the graph into stages.

    Raises:
        InputError: the model cannot run at that size, or its graph has a node no stage
            rule places (named).
        LayoutError: its outputs are not SCRFD heads.
    """
    model, label = _resolve(model_or_path)
    static = fix_input_size(model, input_size)
    values = _all_tensors(static, label)
    static = fold_shape_nodes(static, values)
    _name_nodes(static)
    g = _Graph(static)
    h = static.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    shapes = {k: tuple(v.shape) for k, v in values.items() if v.dtype.kind == "f"}
    shapes[static.graph.input[0].name] = (1, 3, input_size[1], input_size[0])
    heads, towers = _head_regions(g, static)
    taken = heads | {n for c in towers.values() for n in c}
    trunk = [n.name for n in g.nodes if n.name not in taken]
    stages: list[Stage] = []
    groups: dict[tuple[str, int], list[str]] = {}
    deepest, in_backbone = 0, True
    for name in trunk:
        node = g.nodes[g.index[name]]
        stride = _stride(shapes.get(node.output[0], ()), h)
        if not stride:
            raise InputError(f"{label}: node {name} ({node.op_type}) writes "
                             f"{list(shapes.get(node.output[0], ()))}, not a feature map; "
                             "localize cuts only between feature maps")
        in_backbone = in_backbone and stride >= deepest
        deepest = max(deepest, stride)
        groups.setdefault(("backbone" if in_backbone else "neck", stride), []).append(name)
    first = min((s for k, s in groups if k == "backbone"), default=0)
    for (kind, stride), names in groups.items():
        is_stem = kind == "backbone" and stride == first
        stages.append(_stage(g, "stem" if is_stem else f"{kind} s{stride}",
                             "stem" if is_stem else kind, stride, names))
    stages.sort(key=lambda s: (STAGE_KINDS.index(s.kind), s.stride))
    for stride, names in sorted(towers.items()):
        stages.append(_stage(g, f"tower s{stride}", "tower", stride, names))
    if heads:
        stages.append(_stage(g, "heads", "heads", 0, sorted(heads)))
    if not stages:
        raise LayoutError(f"{label}: no stages found")
    return StageGraph(static, static.graph.input[0].name, tuple(input_size),
                      tuple(stages), shapes)


def stage_of_node(graph: StageGraph, node: str) -> Stage:
    """The stage holding ONNX node ``node`` (InputError when no stage holds it: a folded
    shape node or a name not in the graph)."""
    for s in graph.stages:
        if node in s.nodes:
            return s
    raise InputError(f"node {node!r} is in no stage (a shape-only node folded away, or not "
                     "a node of this model)")


__all__ = ["SHAPE_OPS", "STAGE_KINDS", "Stage", "StageGraph", "find_stages", "fold_shape_nodes",
           "stage_of_node"]
