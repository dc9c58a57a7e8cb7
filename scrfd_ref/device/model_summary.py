"""What a conversion did to a model: how many compute nodes run quantized or in float16.

Used by ``scrfd-ref quantize`` for its summary. Compute nodes are the ops that carry
weights (:data:`WEIGHTED_OPS`). In a QDQ int8 model a node counts as quantized when its
weight input comes from a ``DequantizeLinear`` (the weight is stored as int8); in an
fp16 model when its weight initializer is stored as float16. :func:`conv_macs` counts the
multiply-accumulates of each of them (the compute a variant's name states).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnx import TensorProto

#: ops whose second input is a weight tensor
WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass(frozen=True)
class ConversionSummary:
    """Counts of a converted model.

    Attributes:
        nodes: every node of the graph.
        compute_nodes: nodes of :data:`WEIGHTED_OPS`.
        converted: compute nodes whose weights are int8 (QDQ) or float16.
        float_kept: compute nodes left in float32.
        qdq_pairs: ``QuantizeLinear`` nodes (activations quantized), 0 for fp16.
    """

    nodes: int
    compute_nodes: int
    converted: int
    float_kept: int
    qdq_pairs: int

    def describe(self, dtype: str) -> str:
        """``31 of 33 conv/matmul nodes int8 (2 kept float), 95 quantize nodes``."""
        what = "with int8 weights" if dtype == "int8" else "in float16"
        text = (f"{self.converted} of {self.compute_nodes} weighted nodes {what}"
                f" ({self.float_kept} kept float32)")
        if dtype == "int8":
            text += f", {self.qdq_pairs} activation QuantizeLinear nodes"
        return text + f", {self.nodes} nodes in all"


def int8_nodes(model) -> set[str]:
    """Names of the weighted nodes of a QDQ ``onnx.ModelProto`` whose weight is int8 (fed
    by a ``DequantizeLinear``)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    return {n.name for n in model.graph.node
            if n.op_type in WEIGHTED_OPS and len(n.input) > 1
            and getattr(producers.get(n.input[1]), "op_type", None) == "DequantizeLinear"}


def conversion_summary(path: str | os.PathLike) -> ConversionSummary:
    """Count the converted compute nodes of an ONNX file (see the module docstring)."""
    from scrfd_ref.device.onnx_tools import load_model

    graph = load_model(path).graph
    producers = {o: n for n in graph.node for o in n.output}
    fp16 = {i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT16}
    compute = [n for n in graph.node if n.op_type in WEIGHTED_OPS and len(n.input) > 1]

    def converted(node) -> bool:
        weight = node.input[1]
        src = producers.get(weight)
        if src is not None and src.op_type == "DequantizeLinear":
            return True
        if src is not None and src.op_type == "Cast":
            weight = src.input[0]
        return weight in fp16

    n_conv = sum(converted(n) for n in compute)
    return ConversionSummary(
        nodes=len(graph.node), compute_nodes=len(compute), converted=n_conv,
        float_kept=len(compute) - n_conv,
        qdq_pairs=sum(n.op_type == "QuantizeLinear" for n in graph.node))


def weighted_nodes(model: Any) -> list[Any]:
    """The nodes of :data:`WEIGHTED_OPS` that have a weight input."""
    return [n for n in model.graph.node if n.op_type in WEIGHTED_OPS and len(n.input) > 1]


def conv_macs(model: Any, input_name: str, blob: np.ndarray) -> dict[str, int]:
    """Multiply-accumulates of each weighted node for one input ``blob`` (run once with
    every node output exposed): ``prod(output shape) * prod(weight shape[1:])``."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    weighted = weighted_nodes(m)
    known = {o.name for o in m.graph.output}
    for n in weighted:
        if n.output[0] not in known:
            m.graph.output.append(onnx.ValueInfoProto(name=n.output[0]))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [n.output[0] for n in weighted]
    shapes = dict(zip(names, (a.shape for a in sess.run(names, {input_name: blob}))))
    inits = {i.name: tuple(i.dims) for i in m.graph.initializer}
    per_output = {n.name: int(np.prod(inits.get(n.input[1], (1, 1))[1:])) for n in weighted}
    return {n.name: int(np.prod(shapes[n.output[0]])) * per_output[n.name] for n in weighted}
