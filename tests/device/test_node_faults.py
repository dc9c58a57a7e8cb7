"""Specification of ``scrfd_ref.device.node_faults``: one simulated compiler bug in one node.

Every fault, on every node it applies to, must give a model that passes the ONNX checker,
runs in onnxruntime with the original output shapes, computes different numbers, and
leaves the input model untouched. The small graph is built here by hand (opset 11):
Conv(bias) -> Relu -> Conv(bias) -> Add(residual) -> Relu -> Resize(nearest) -> Conv(no bias,
weight shared with the second Conv); its QDQ version comes from onnxruntime's
``quantize_static``; the real ``scrfd_500m_bnkps.onnx`` is used when the data is there.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from scrfd_ref.core.errors import InputError
from scrfd_ref.device.node_faults import NODE_FAULTS, eligible_nodes, inject_node_fault

REAL_MODEL = "scrfd_500m_bnkps.onnx"
SMALL_ELIGIBLE = {
    "conv_weight_scale": ["conv_a", "conv_b", "conv_c"],
    "conv_bias_drop": ["conv_a", "conv_b"],
    "relu_clip6": ["relu_a", "relu_b"],
    "relu_identity": ["relu_a", "relu_b"],
    "resize_mode": ["resize"],
    "add_drop": ["add"],
    "pad_shift": ["conv_a", "conv_b"],
    "int8_scale": [],
}


def small_model(opset: int = 11) -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def init(a, name):
        return numpy_helper.from_array(np.asarray(a, np.float32), name)

    inits = [init(rng.normal(0, .3, (8, 3, 3, 3)), "w1"), init(rng.normal(0, .5, 8), "b1"),
             init(rng.normal(0, .3, (8, 8, 3, 3)), "w2"), init(rng.normal(0, .5, 8), "b2"),
             init(np.zeros(0), "roi"), init([1, 1, 2, 2], "scales")]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["a"], "conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"], "relu_a"),
        helper.make_node("Conv", ["r", "w2", "b2"], ["b"], "conv_b", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["b", "r"], ["s"], "add"),
        helper.make_node("Relu", ["s"], ["t"], "relu_b"),
        helper.make_node("Resize", ["t", "roi", "scales"], ["u"], "resize", mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Conv", ["u", "w2"], ["y"], "conv_c"),  # shares w2, no bias, no pads
    ]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 14, 14])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


def check_fault(model: onnx.ModelProto, node: str, fault: str, feed, reference=None,
                magnitude: float | None = None) -> onnx.ModelProto:
    """Inject; assert checker, same shapes, changed outputs, untouched input; return the copy."""
    before = model.SerializeToString()
    reference = run(model, feed) if reference is None else reference
    faulty = inject_node_fault(model, node, fault, magnitude)
    assert model.SerializeToString() == before, "the input model was modified"
    onnx.checker.check_model(faulty)
    outputs = run(faulty, feed)
    assert [o.shape for o in outputs] == [r.shape for r in reference]
    assert any(not np.allclose(o, r, atol=1e-4) for o, r in zip(outputs, reference)), \
        f"{fault} on {node} did not change the output"
    return faulty


@pytest.fixture(scope="module")
def small() -> onnx.ModelProto:
    return small_model()


@pytest.fixture(scope="module")
def small_feed() -> dict[str, np.ndarray]:
    # std 4: conv_a alone already reaches well beyond 6, so relu_clip6 bites on both Relus
    return {"x": np.random.default_rng(1).normal(0, 4, (1, 3, 8, 8)).astype(np.float32)}


@pytest.fixture(scope="module")
def qdq(small, tmp_path_factory) -> onnx.ModelProto:
    quant = pytest.importorskip("onnxruntime.quantization")

    class Reader(quant.CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{"x": np.random.default_rng(i).normal(0, 4, (1, 3, 8, 8))
                                .astype(np.float32)} for i in range(2)])

        def get_next(self):
            return next(self.feeds, None)

    folder = tmp_path_factory.mktemp("qdq")
    onnx.save(small, folder / "float.onnx")
    quant.quantize_static(str(folder / "float.onnx"), str(folder / "qdq.onnx"), Reader(),
                          quant_format=quant.QuantFormat.QDQ)
    return onnx.load(folder / "qdq.onnx")


def small_cases():
    return [(f, n) for f, nodes in SMALL_ELIGIBLE.items() for n in nodes]


def test_fault_table_and_eligibility(small):
    assert set(NODE_FAULTS) == set(SMALL_ELIGIBLE)
    assert all(isinstance(v, str) and v for v in NODE_FAULTS.values())
    for fault, nodes in SMALL_ELIGIBLE.items():
        assert eligible_nodes(small, fault) == nodes, fault


@pytest.mark.parametrize("fault,node", small_cases())
def test_small_graph_faults(small, small_feed, fault, node):
    check_fault(small, node, fault, small_feed)


def test_fault_details(small):
    inits = lambda m: {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    nodes = lambda m: {n.name: n for n in m.graph.node}
    orig = inits(small)

    # shared weight w2: conv_b gets its own 1.5x copy, conv_c still reads the original
    m = inject_node_fault(small, "conv_b", "conv_weight_scale")
    w = nodes(m)["conv_b"].input[1]
    assert w != "w2" and nodes(m)["conv_c"].input[1] == "w2"
    np.testing.assert_allclose(inits(m)[w], 1.5 * orig["w2"], rtol=1e-6)
    np.testing.assert_array_equal(inits(m)["w2"], orig["w2"])
    m = inject_node_fault(small, "conv_a", "conv_weight_scale", magnitude=0.5)  # unshared
    np.testing.assert_allclose(inits(m)["w1"], 0.5 * orig["w1"], rtol=1e-6)

    m = inject_node_fault(small, "conv_a", "conv_bias_drop")
    assert list(nodes(m)["conv_a"].input) == ["x", "w1"] and "b1" not in inits(m)

    m = inject_node_fault(small, "relu_a", "relu_clip6")
    clip = nodes(m)["relu_a"]
    assert clip.op_type == "Clip" and list(clip.output) == ["r"]
    assert [float(inits(m)[i]) for i in clip.input[1:]] == [0.0, 6.0]

    m = inject_node_fault(small, "relu_b", "relu_identity")
    assert nodes(m)["relu_b"].op_type == "Identity" and list(nodes(m)["relu_b"].output) == ["t"]

    m = inject_node_fault(small, "resize", "resize_mode")
    attrs = {a.name: helper.get_attribute_value(a) for a in nodes(m)["resize"].attribute}
    assert attrs["mode"] == b"linear" and attrs["coordinate_transformation_mode"] == b"asymmetric"
    back = inject_node_fault(m, "resize", "resize_mode")
    assert helper.get_attribute_value(
        next(a for a in nodes(back)["resize"].attribute if a.name == "mode")) == b"nearest"

    m = inject_node_fault(small, "add", "add_drop")
    add = nodes(m)["add"]
    assert add.op_type == "Identity" and list(add.input) == ["b"] and list(add.output) == ["s"]

    m = inject_node_fault(small, "conv_b", "pad_shift")
    pads = next(a for a in nodes(m)["conv_b"].attribute if a.name == "pads")
    assert list(pads.ints) == [2, 2, 0, 0]


def test_relu_clip6_before_opset_11():
    relu = helper.make_node("Relu", ["x"], ["y"], "relu")
    graph = helper.make_graph([relu], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)])
    faulty = check_fault(model, "relu", "relu_clip6", {"x": np.array([-1, 3, 7, 9], np.float32)})
    assert {a.name: a.f for a in faulty.graph.node[0].attribute} == {"min": 0.0, "max": 6.0}
    np.testing.assert_array_equal(run(faulty, {"x": np.array([-1, 3, 7, 9], np.float32)})[0],
                                  [0, 3, 6, 6])


def test_int8_scale_on_qdq(small, qdq, small_feed):
    # the same node names in the float and the QDQ model (quantize_static fused the Relus)
    assert eligible_nodes(qdq, "int8_scale") == ["conv_a", "conv_b", "add", "resize", "conv_c"]
    assert eligible_nodes(qdq, "conv_weight_scale") == SMALL_ELIGIBLE["conv_weight_scale"]
    reference = run(qdq, small_feed)
    for node in eligible_nodes(qdq, "int8_scale"):
        check_fault(qdq, node, "int8_scale", small_feed, reference)

    # conv_b shares its input DequantizeLinear with the Add: conv_b gets a copy with 2x scale
    faulty = check_fault(qdq, "conv_b", "int8_scale", small_feed, reference)
    by_out = {o: n for n in faulty.graph.node for o in n.output}
    nodes = {n.name: n for n in faulty.graph.node}
    scales = {t.name: numpy_helper.to_array(t) for t in faulty.graph.initializer}
    orig_dq = by_out[nodes["add"].input[1]]
    new_dq = by_out[nodes["conv_b"].input[0]]
    assert new_dq.name != orig_dq.name and new_dq.op_type == "DequantizeLinear"
    np.testing.assert_allclose(scales[new_dq.input[1]], 2 * scales[orig_dq.input[1]], rtol=1e-6)

    # a QDQ weight: its dequantization scale, for this Conv only (w2 is shared with conv_c)
    check_fault(qdq, "conv_b", "conv_weight_scale", small_feed, reference, magnitude=3.0)
    with pytest.raises(InputError, match="not produced by a DequantizeLinear"):
        inject_node_fault(small, "conv_b", "int8_scale")


def test_errors(small):
    with pytest.raises(InputError, match="'nope' is not in the graph"):
        inject_node_fault(small, "nope", "relu_identity")
    with pytest.raises(InputError, match="not apply to node 'conv_a': it is a Conv, not a Relu"):
        inject_node_fault(small, "conv_a", "relu_clip6")
    with pytest.raises(InputError, match="it has no bias input"):
        inject_node_fault(small, "conv_c", "conv_bias_drop")
    with pytest.raises(InputError, match="pads"):
        inject_node_fault(small, "conv_c", "pad_shift")
    for call in (lambda: inject_node_fault(small, "conv_a", "bogus"),
                 lambda: eligible_nodes(small, "bogus")):
        with pytest.raises(InputError, match="unknown node fault 'bogus'; known faults: conv_"):
            call()
    with pytest.raises(InputError, match="finite number"):
        inject_node_fault(small, "conv_a", "conv_weight_scale", magnitude=float("nan"))


@pytest.fixture(scope="module")
def real(data_root, need):
    model = onnx.load(need(data_root / "models" / REAL_MODEL, "model file"))
    # std 1.5, beyond the [-1, 1] of a real image after (x - 127.5) / 128: on real images no
    # Relu of this model sees values above ~4 (relu_clip6 is a no-op there); with this
    # input Relu_3 reaches ~14
    feed = {model.graph.input[0].name:
            np.random.default_rng(2).normal(0, 1.5, (1, 3, 640, 640)).astype(np.float32)}
    return model, feed, run(model, feed)


def test_real_model_eligibility(real):
    model = real[0]
    assert eligible_nodes(model, "resize_mode") == ["Resize_79", "Resize_99"]
    assert eligible_nodes(model, "add_drop") == ["Add_80", "Add_100", "Add_105", "Add_107"]
    assert len(eligible_nodes(model, "conv_bias_drop")) == 60
    assert len(eligible_nodes(model, "pad_shift")) == 37
    assert len(eligible_nodes(model, "relu_clip6")) == 41
    assert eligible_nodes(model, "int8_scale") == []


@pytest.mark.parametrize("fault", [f for f in NODE_FAULTS if f != "int8_scale"])
def test_real_model_faults(real, fault):
    model, feed, reference = real
    node = "Relu_3" if fault == "relu_clip6" else eligible_nodes(model, fault)[0]
    check_fault(model, node, fault, feed, reference)
