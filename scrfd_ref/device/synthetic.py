"""Tiny SCRFD-shaped ONNX models with random weights, for tests without real weights.

The network is a stride-8 patch stem and two stride-2 convs (feature maps at strides 8,
16 and 32), then per stride three 1x1 head convs with 2, 8 and 20 channels (two anchors
x score / box / landmarks); box maps pass through a learned-scale ``Mul`` like the real
``1g``/``2.5g`` exports. ``layout="standard"`` ends each head exactly as the insightface
export does (seed-flow.md section 2)::

    unbatched: Transpose(2, 3, 0, 1) -> Reshape(-1, C)    [-> Sigmoid for scores]
    batched:   Transpose(0, 2, 3, 1) -> Reshape(1, -1, C) [-> Sigmoid for scores]

``layout="device"`` outputs the raw NCHW maps ``(B, 2*C, H/s, W/s)`` (score logits).
Weights are deterministic in ``seed`` and scaled so that, on an image-like input, scores
spread over (0, 1) with a fair share above 0.5, box distances are positive (about 0.5 to
4 stride units: positive biases, non-negative weights on ReLU features) and landmark
offsets are a few stride units, so decoded detections overlap and NMS has work to do.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from scrfd_ref.core.errors import InputError
from scrfd_ref.device.onnx_tools import KIND_MAP_CHANNELS, STRIDES, save_model

OPSET = 11
IR_VERSION = 6  # what the real exports use (pytorch 1.6-1.8)
INPUT_NAME = "input.1"
FEATURES = 8  # channels of the synthetic feature maps
NUM_ANCHORS = 2
_LAYOUTS = ("standard", "device")
# Weight scales (std of normal weights relative to 1/sqrt(fan_in)); tuned so that head
# outputs on natural images have the spread described in the module docstring.
STEM_GAIN = 3.0
DOWN_GAIN = 1.5
SCORE_GAIN = 4.0
SCORE_BIAS = -0.7


class _GraphBuilder:
    """Collects nodes and initializers of one graph (local to a single build)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, name: str, value: np.ndarray) -> str:
        """Add an initializer; returns its name."""
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        """Add a one-output node; returns the output name."""
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{op}_{len(self.nodes)}",
                                           **attrs))
        return output

    def conv(self, x: str, out: str, weight: np.ndarray, bias: np.ndarray, *,
             stride: int = 1, pad: int = 0) -> str:
        """Add a square-kernel Conv with its weight and bias initializers."""
        k = weight.shape[-1]
        w = self.constant(f"{out}.weight", weight.astype(np.float32))
        b = self.constant(f"{out}.bias", bias.astype(np.float32))
        return self.node("Conv", [x, w, b], out, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad] * 4, dilations=[1, 1], group=1)

    def normal(self, *shape: int, scale: float) -> np.ndarray:
        """Zero-mean normal draws of ``shape`` (the builder's seeded generator)."""
        return self.rng.normal(0.0, scale, size=shape)

    def uniform(self, low: float, high: float, *shape: int) -> np.ndarray:
        """Uniform draws in ``[low, high)`` of ``shape``."""
        return self.rng.uniform(low, high, size=shape)


def output_name(kind: str, stride: int, named: bool) -> str:
    """Output name of a head: ``score_8`` style, or a number like the dynamic exports'.

    Numbers follow the real files' pattern (not sorted by output order):
    ``400 + 25 * stride index + 3 * kind index``.
    """
    if named:
        return f"{kind}_{stride}"
    kinds = list(KIND_MAP_CHANNELS)
    return str(400 + 25 * STRIDES.index(stride) + 3 * kinds.index(kind))


def _backbone(g: _GraphBuilder, x: str) -> list[str]:
    """Stride-8 patch stem and two stride-2 convs; ReLU features per stride."""
    f = FEATURES
    stem = g.conv(x, "stem", g.normal(f, 3, 8, 8, scale=STEM_GAIN / np.sqrt(3 * 64)),
                  g.normal(f, scale=0.1), stride=8)
    feats = [g.node("Relu", [stem], "feat_8")]
    for stride in STRIDES[1:]:
        w = g.normal(f, f, 3, 3, scale=DOWN_GAIN / np.sqrt(f * 9))
        conv = g.conv(feats[-1], f"down_{stride}", w, g.uniform(0.0, 0.2, f), stride=2, pad=1)
        feats.append(g.node("Relu", [conv], f"feat_{stride}"))
    return feats


def _head_map(g: _GraphBuilder, feat: str, kind: str, name: str) -> str:
    """Raw NCHW map of one head (1x1 conv; box maps times a learned scale)."""
    c, f = KIND_MAP_CHANNELS[kind], FEATURES
    if kind == "score":
        w = g.normal(c, f, 1, 1, scale=SCORE_GAIN / np.sqrt(f))
        w -= w.mean(axis=1, keepdims=True)  # zero-sum: scores follow image content, not brightness
        b = g.normal(c, scale=0.3) + SCORE_BIAS
    elif kind == "bbox":
        w, b = g.uniform(0.0, 0.5 / f, c, f, 1, 1), g.uniform(0.6, 2.5, c)
    else:
        w, b = g.normal(c, f, 1, 1, scale=0.5 / np.sqrt(f)), g.normal(c, scale=1.0)
    if kind != "bbox":
        return g.conv(feat, name, w, b)
    conv = g.conv(feat, f"{name}.conv", w, b)
    scale = g.constant(f"{name}.scale", np.float32(g.uniform(0.8, 1.2)))
    return g.node("Mul", [conv, scale], name)


def _flatten_tail(g: _GraphBuilder, fmap: str, kind: str, batched: bool, out: str) -> str:
    """The insightface export's head tail: permute, reshape to (..., C), sigmoid on scores."""
    c = KIND_MAP_CHANNELS[kind] // NUM_ANCHORS
    perm = [0, 2, 3, 1] if batched else [2, 3, 0, 1]
    shape = np.array([1, -1, c] if batched else [-1, c], dtype=np.int64)
    t = g.node("Transpose", [fmap], f"{out}.nhwc", perm=perm)
    flat_name = f"{out}.logits" if kind == "score" else out
    flat = g.node("Reshape", [t, g.constant(f"{out}.shape", shape)], flat_name)
    return g.node("Sigmoid", [flat], out) if kind == "score" else flat


def _output_info(name: str, kind: str, layout: str, batched: bool,
                 input_size: tuple[int, int] | None, stride: int) -> onnx.ValueInfoProto:
    """Declared output shape: exact when the input size is fixed, else dynamic dims."""
    c2 = KIND_MAP_CHANNELS[kind]
    hw = None if input_size is None else (input_size[1] // stride, input_size[0] // stride)
    if layout == "device":
        shape: list[int | str | None] = [1, c2, *(hw or (None, None))]
    else:
        n = None if hw is None else hw[0] * hw[1] * NUM_ANCHORS
        shape = [1, n, c2 // NUM_ANCHORS] if batched else [n, c2 // NUM_ANCHORS]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _check_args(layout: str, input_size: tuple[int, int] | None) -> None:
    """Reject an unknown layout or an input size that is not (W, H) multiples of 32."""
    if layout not in _LAYOUTS:
        raise InputError(f"synthetic model: layout must be one of {_LAYOUTS}, got {layout!r}")
    if input_size is not None and (len(input_size) != 2 or any(
            int(v) != v or v <= 0 or v % 32 for v in input_size)):
        raise InputError(f"synthetic model: input_size must be (W, H), positive multiples of 32, "
                         f"got {input_size!r}")


def make_synthetic_model(*, landmarks: bool = True, layout: str = "standard",
                         batched: bool = False, input_size: tuple[int, int] | None = None,
                         named_outputs: bool = False, seed: int = 0) -> onnx.ModelProto:
    """Build a tiny SCRFD-shaped model with random weights (deterministic in ``seed``).

    Args:
        landmarks: 9 outputs (with ``kps`` heads) instead of 6.
        layout: ``standard`` (insightface export) or ``device`` (raw NCHW maps).
        batched: standard layout only: outputs ``(1, N, C)`` instead of ``(N, C)``.
        input_size: ``(W, H)`` to fix the input (multiples of 32); None leaves H and W
            dynamic (``height``, ``width``).
        named_outputs: ``score_8``-style output names instead of numbers.
        seed: weight seed; the same arguments give byte-identical models.

    Input ``input.1`` is ``[1, 3, H, W]``; outputs are in the order scores, boxes,
    landmarks, strides 8, 16, 32. Opset 11.

    Raises:
        InputError: unknown layout or an input size that is not a multiple of 32.
    """
    _check_args(layout, input_size)
    input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
    g = _GraphBuilder(np.random.default_rng(seed))
    feats = dict(zip(STRIDES, _backbone(g, INPUT_NAME)))
    kinds = [k for k in KIND_MAP_CHANNELS if landmarks or k != "kps"]
    heads = [(k, s) for k in kinds for s in STRIDES]
    outputs = []
    for kind, stride in heads:
        name = output_name(kind, stride, named_outputs)
        if layout == "device":
            _head_map(g, feats[stride], kind, name)
        else:
            fmap = _head_map(g, feats[stride], kind, f"head.{kind}_{stride}")
            _flatten_tail(g, fmap, kind, batched, name)
        outputs.append(_output_info(name, kind, layout, batched, input_size, stride))
    h, w = ("height", "width") if input_size is None else (input_size[1], input_size[0])
    graph = helper.make_graph(
        g.nodes, f"scrfd_synthetic_{layout}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, h, w])],
        outputs, initializer=g.initializers)
    model = helper.make_model(graph, producer_name="scrfd_ref.device.synthetic",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def write_synthetic_model(path: str | os.PathLike, **kwargs: Any) -> Path:
    """Build :func:`make_synthetic_model` ``(**kwargs)`` and save it atomically to ``path``."""
    return save_model(make_synthetic_model(**kwargs), path)
