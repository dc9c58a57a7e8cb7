"""Where int8 loses accuracy: per-node quantization error and the work each node does.

:func:`node_sensitivity` runs the fp32 model and its QDQ int8 model on the same
calibration images with every intermediate tensor exposed (onnxruntime's
``quantization.qdq_loss_debug`` tools) and reports, per weighted node (``Conv``):

- ``out_sqnr_db``: SQNR of the node's output in the int8 model against the fp32 model's
  (``10 log10(sum ref^2 / sum err^2)``; accumulated error of everything up to here);
- ``in_sqnr_db``: the same for its input, and ``lost_db = in - out``: the error this node
  adds (its own weights and output grid), the ranking key;
- ``weight_sqnr_db``: SQNR of its int8 weights against the float ones;
- ``macs`` and ``macs_share``: multiply-accumulates at the calibration input size, and
  whether the node runs in int8 (its weight is int8).

The QDQ model is evaluated as the ONNX spec defines it (basic graph optimisation: no
fused int8 kernels), so the numbers describe the quantization, not a CPU's kernels.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scrfd_ref.device.model_summary import conv_macs, int8_nodes, weighted_nodes


@dataclass(frozen=True)
class NodeSensitivity:
    """One weighted node's quantization error (see the module docstring)."""

    name: str
    op_type: str
    output: str
    in_sqnr_db: float | None
    out_sqnr_db: float | None
    lost_db: float | None
    weight_sqnr_db: float | None
    macs: int
    macs_share: float
    int8: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers as strings)."""
        return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def _after_relu(model: Any, tensor: str) -> str:
    """The Relu output when ``tensor`` feeds only a Relu (ORT's QDQ folds that Relu into
    the quantization grid, so the int8 model names the node's output after it)."""
    consumers = [n for n in model.graph.node if tensor in n.input]
    if len(consumers) == 1 and consumers[0].op_type == "Relu":
        return consumers[0].output[0]
    return tensor


def node_sensitivity(fp32_model: Any, qdq_path: str | Path, reader_factory,
                     blob: np.ndarray) -> list[NodeSensitivity]:
    """Per weighted node of ``fp32_model`` (an ``onnx.ModelProto``, opset as quantized):
    the errors of the QDQ model at ``qdq_path``, ranked by ``lost_db`` (largest first).

    Args:
        reader_factory: returns a fresh ORT ``CalibrationDataReader`` over the images to
            compare on (called twice: fp32 run, int8 run).
        blob: one input blob, for the MAC count.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        compute_weight_error,
        create_activation_matching,
        create_weight_matching,
        modify_model_output_intermediate_tensors,
    )

    input_name = fp32_model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="scrfd-sens.") as tmp:
        t = Path(tmp)
        onnx.save(fp32_model, str(t / "fp32.onnx"))
        modify_model_output_intermediate_tensors(str(t / "fp32.onnx"), str(t / "fp32_aug.onnx"))
        modify_model_output_intermediate_tensors(str(qdq_path), str(t / "q_aug.onnx"))
        basic = ort.SessionOptions()
        basic.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        basic.log_severity_level = 3
        quiet = ort.SessionOptions()
        quiet.log_severity_level = 3
        float_acts = collect_activations(str(t / "fp32_aug.onnx"), reader_factory(),
                                         session_options=quiet)
        q_acts = collect_activations(str(t / "q_aug.onnx"), reader_factory(),
                                     session_options=basic)
        errors = compute_activation_error(create_activation_matching(q_acts, float_acts))
        weights = _weight_errors(t / "fp32.onnx", qdq_path, create_weight_matching,
                                 compute_weight_error)
    macs = conv_macs(fp32_model, input_name, blob)
    total = sum(macs.values()) or 1
    quantized = int8_nodes(onnx.load(str(qdq_path)))
    rows = []
    for n in weighted_nodes(fp32_model):
        out = _after_relu(fp32_model, n.output[0])
        o = errors.get(out, {}).get("xmodel_err")
        i = errors.get(n.input[0], {}).get("xmodel_err")
        rows.append(NodeSensitivity(
            n.name, n.op_type, out, _num(i), _num(o),
            _num(i - o) if i is not None and o is not None else None,
            _num(weights.get(n.input[1])), macs.get(n.name, 0),
            macs.get(n.name, 0) / total, n.name in quantized))
    return sorted(rows, key=lambda r: -(r.lost_db if r.lost_db is not None else -math.inf))


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _weight_errors(fp32_path: Path, qdq_path: str | Path, match, compute) -> dict[str, float]:
    """SQNR of every int8 weight (ORT logs and skips biases it folded; quiet here)."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        return compute(match(str(fp32_path), str(qdq_path)))
    finally:
        root.setLevel(level)


def int8_mac_share(rows: Sequence[NodeSensitivity]) -> float:
    """Share of the MACs that run in int8."""
    total = sum(r.macs for r in rows)
    return sum(r.macs for r in rows if r.int8) / total if total else 0.0
