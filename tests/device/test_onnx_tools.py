"""Specification of ``scrfd_ref.device.onnx_tools``: loading, describing and re-exporting SCRFD ONNX.

The central promise (seed-flow.md section 2): the device-layout export of a standard
insightface file computes the same numbers as the file itself, only earlier in the head.
Permuting each raw map ``(B, 2C, H, W)`` to ``(B, H, W, 2C)``, reshaping to
``(B, H*W*2, C)`` and applying a sigmoid to the scores must give the standard outputs.
The flattening below is written out independently of the package.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from scrfd_ref.core.errors import InputError, LayoutError
from scrfd_ref.device.export import drop_landmark_outputs, export_device_layout, fix_input_size
from scrfd_ref.device.onnx_tools import describe_model, find_heads, load_model, save_model
from scrfd_ref.device.synthetic import make_synthetic_model

STRIDES = (8, 16, 32)
CHANNELS = {"score": 1, "bbox": 4, "kps": 10}  # C per anchor; raw maps have 2*C channels


@dataclass(frozen=True)
class RealSpec:
    """What the shared data README says about each real file."""

    landmarks: bool
    batched: bool  # standard outputs (1, N, C) instead of (N, C)
    static: bool  # input fixed at 1x3x640x640


REAL = {
    "scrfd_500m_bnkps.onnx": RealSpec(landmarks=True, batched=True, static=True),
    "scrfd_500m_bnkps_dynamic.onnx": RealSpec(landmarks=True, batched=False, static=False),
    "scrfd_2.5g_bnkps_dynamic.onnx": RealSpec(landmarks=True, batched=False, static=False),
    "scrfd_1g.onnx": RealSpec(landmarks=False, batched=False, static=False),
    "scrfd_2.5g.onnx": RealSpec(landmarks=False, batched=False, static=False),
}
BNKPS = [name for name, spec in REAL.items() if spec.landmarks]
# every model at 640x640; the dynamic ones also at a non-square size
CASES = [(name, (640, 640)) for name in REAL] + [
    (name, (640, 480)) for name, spec in REAL.items() if not spec.static]


def device_names(landmarks: bool) -> list[str]:
    kinds = ["score", "bbox"] + (["kps"] if landmarks else [])
    return [f"{k}_{s}" for k in kinds for s in STRIDES]


def expected_map_shape(name: str, size: tuple[int, int]) -> tuple[int, int, int, int]:
    kind, stride = name.split("_")
    w, h = size
    return (1, 2 * CHANNELS[kind], h // int(stride), w // int(stride))


def ort_run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the dynamic files declare 640x640 output shapes: silence
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def preprocess(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Plain resize to (W, H), RGB, (x - 127.5) / 128, NCHW float32."""
    rgb = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)[:, :, ::-1].astype(np.float32)
    return np.ascontiguousarray(((rgb - 127.5) / 128.0).transpose(2, 0, 1)[None])


def flatten_device(maps: list[np.ndarray], n_scores: int = 3) -> list[np.ndarray]:
    """Device maps -> standard layout: NCHW -> NHWC -> (B, H*W*2, C); sigmoid on scores."""
    flat = []
    for i, m in enumerate(maps):
        b, c2, h, w = m.shape
        f = m.transpose(0, 2, 3, 1).reshape(b, h * w * 2, c2 // 2).astype(np.float64)
        flat.append(1.0 / (1.0 + np.exp(-f)) if i < n_scores else f)
    return flat


@pytest.fixture(scope="module")
def real_model(data_root: Path, need):
    """``real_model(name)``: the loaded file (cached for the module)."""
    @lru_cache(maxsize=None)
    def get(name: str) -> onnx.ModelProto:
        return load_model(need(data_root / "models" / name, f"SCRFD model {name}"))
    return get


@pytest.fixture(scope="module")
def real_path(data_root: Path, need):
    return lambda name: need(data_root / "models" / name, f"SCRFD model {name}")


@pytest.fixture(scope="module")
def face_bgr(data_root: Path, need) -> np.ndarray:
    path = need(data_root / "images" / "one_face_1280x720.jpg", "test image")
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


# --------------------------------------------------------------------------- device export

@pytest.mark.data
@pytest.mark.parametrize("name,size", CASES, ids=[f"{n}-{w}x{h}" for n, (w, h) in CASES])
def test_device_export_computes_the_standard_outputs(real_model, face_bgr, name, size):
    """Flattened device maps + sigmoid == the standard file's outputs on a real image.

    Tolerance: atol 1e-6, rtol 1e-5. Both graphs run the same convs on the same weights;
    what moves is the sigmoid (onnxruntime float32 inside the standard file, numpy
    float64 here), a difference of about 1e-7 (measured max 1.2e-7 on all five files).
    """
    spec = REAL[name]
    model = real_model(name)
    device = export_device_layout(model)
    x = preprocess(face_bgr, size)

    standard = ort_run(model, x)
    maps = ort_run(device, x)

    names = device_names(spec.landmarks)
    assert [o.name for o in device.graph.output] == names
    assert [m.shape for m in maps] == [expected_map_shape(n, size) for n in names]
    assert max(float(s.max()) for s in standard[:3]) > 0.3, "face image should score somewhere"
    for got, want, n in zip(flatten_device(maps), standard, names):
        want = want.reshape(1, -1, want.shape[-1])  # (N, C) -> (1, N, C) for unbatched files
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{name} {n}")


@pytest.mark.data
@pytest.mark.parametrize("name", list(REAL))
def test_heads_are_cut_before_transpose_reshape_and_sigmoid(real_model, name):
    """Every real file ends each head in Transpose -> Reshape (-> Sigmoid for scores)."""
    heads = find_heads(real_model(name))
    assert [h.device_name for h in heads] == device_names(REAL[name].landmarks)
    for h in heads:
        flatten = ("Reshape", "Transpose")
        assert h.tail_ops == (("Sigmoid", *flatten) if h.kind == "score" else flatten)
        assert h.channels == 2 * CHANNELS[h.kind]


@pytest.mark.data
@pytest.mark.parametrize("name", list(REAL))
def test_device_export_keeps_the_input_as_it_was(real_model, name):
    """Without input_size a dynamic input stays dynamic and outputs get dynamic H, W."""
    spec = REAL[name]
    info = describe_model(export_device_layout(real_model(name)))
    assert info.layout == "device" and info.landmarks == spec.landmarks
    assert info.input_name == "input.1" and info.opset == 11
    if spec.static:
        assert info.input_shape == (1, 3, 640, 640)
        assert info.output_shapes == tuple(expected_map_shape(n, (640, 640))
                                           for n in info.output_names)
    else:
        assert info.input_shape[:2] == (1, 3) and not any(isinstance(d, int)
                                                          for d in info.input_shape[2:])
        assert all(s[:2] == (1, 2 * CHANNELS[n.split("_")[0]]) and s[2:] == (None, None)
                   for n, s in zip(info.output_names, info.output_shapes))


@pytest.mark.data
@pytest.mark.parametrize("name", list(REAL))
def test_fixed_input_size_gives_static_shapes_and_a_valid_model(real_model, real_path, name):
    size = (640, 640) if REAL[name].static else (640, 480)
    device = export_device_layout(real_path(name), input_size=size)  # from the path, too
    onnx.checker.check_model(device, full_check=True)
    info = describe_model(device)
    assert info.input_shape == (1, 3, size[1], size[0])
    assert info.output_shapes == tuple(expected_map_shape(n, size) for n in info.output_names)
    maps = ort_run(device, np.zeros((1, 3, size[1], size[0]), np.float32))
    assert tuple(m.shape for m in maps) == info.output_shapes


@pytest.mark.data
@pytest.mark.parametrize("name", BNKPS)
def test_drop_landmarks_gives_six_maps_and_prunes_the_landmark_convs(real_model, face_bgr, name):
    model = real_model(name)
    full, six = export_device_layout(model), export_device_layout(model, drop_landmarks=True)
    onnx.checker.check_model(six, full_check=True)
    assert [o.name for o in six.graph.output] == device_names(False)
    assert not [t.name for t in six.graph.initializer if "kps" in t.name]
    assert len(six.graph.node) == len(full.graph.node) - 3  # the three landmark convs
    x = preprocess(face_bgr, (640, 640))
    for a, b in zip(ort_run(six, x), ort_run(full, x)[:6]):
        np.testing.assert_array_equal(a, b)  # same subgraph, same kernels: bit-identical


@pytest.mark.data
@pytest.mark.parametrize("name", BNKPS)
def test_drop_landmark_outputs_makes_a_six_output_standard_model(real_model, face_bgr, name):
    model = real_model(name)
    six = drop_landmark_outputs(model)
    onnx.checker.check_model(six, full_check=True)
    before, after = describe_model(model), describe_model(six)
    assert after.layout == "standard" and not after.landmarks and after.num_outputs == 6
    assert after.output_names == before.output_names[:6]
    assert after.output_shapes == before.output_shapes[:6]
    x = preprocess(face_bgr, (640, 640))
    for a, b in zip(ort_run(six, x), ort_run(model, x)[:6]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.data
def test_fix_input_size_gives_a_standard_model_static_output_shapes(real_model):
    fixed = fix_input_size(real_model("scrfd_2.5g_bnkps_dynamic.onnx"), (640, 480))
    onnx.checker.check_model(fixed, full_check=True)
    info = describe_model(fixed)
    n = [80 * 60 * 2, 40 * 30 * 2, 20 * 15 * 2]
    assert info.input_shape == (1, 3, 480, 640)
    assert info.output_shapes == tuple((k, c) for c in (1, 4, 10) for k in n)
    outs = ort_run(fixed, np.zeros((1, 3, 480, 640), np.float32))
    assert tuple(o.shape for o in outs) == info.output_shapes


@pytest.mark.data
def test_a_static_export_cannot_be_resized(real_model):
    """The static 500m file has the FPN resize sizes baked in: a clear error, not garbage."""
    with pytest.raises(InputError, match=r"640x480.*fixed at 640x640"):
        fix_input_size(real_model("scrfd_500m_bnkps.onnx"), (640, 480))


@pytest.mark.parametrize("size", [(640, 500), (0, 640), (320,)])
def test_input_size_must_be_a_multiple_of_32(size):
    with pytest.raises(InputError, match="input_size|multiple of 32"):
        fix_input_size(make_synthetic_model(), size)


# --------------------------------------------------------------------------- describe

@pytest.mark.data
@pytest.mark.parametrize("name", list(REAL))
def test_describe_model_reports_what_the_file_declares(real_path, name):
    spec = REAL[name]
    info = describe_model(real_path(name))
    assert info.source == str(real_path(name))
    assert info.layout == "standard" and info.landmarks == spec.landmarks
    assert info.num_outputs == (9 if spec.landmarks else 6) == len(info.output_shapes)
    assert info.input_name == "input.1" and info.opset == 11
    assert info.input_shape == ((1, 3, 640, 640) if spec.static else (1, 3, "?", "?"))
    assert all(len(s) == (3 if spec.batched else 2) for s in info.output_shapes)
    if spec.static:
        assert info.output_names == tuple(device_names(True))


def test_describe_model_of_synthetic_layouts():
    std = describe_model(make_synthetic_model(landmarks=False, batched=True))
    dev = describe_model(make_synthetic_model(layout="device", input_size=(96, 64)))
    assert (std.layout, std.landmarks, std.num_outputs) == ("standard", False, 6)
    assert std.input_shape == (1, 3, "height", "width")
    assert (dev.layout, dev.landmarks, dev.num_outputs) == ("device", True, 9)
    assert dev.output_shapes[0] == (1, 2, 8, 12)


# --------------------------------------------------------------------------- synthetic models

def shuffled_and_renamed(model: onnx.ModelProto, names: list[str] | None = None
                         ) -> onnx.ModelProto:
    """Same graph, outputs in reverse order and renamed (to ``names`` in the new order,
    default meaningless ``out0``, ``out1``, ...)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    reordered = list(reversed(model.graph.output))
    names = names or [f"out{i}" for i in range(len(reordered))]
    mapping = {o.name: n for o, n in zip(reordered, names)}
    for node in out.graph.node:
        node.output[:] = [mapping.get(t, t) for t in node.output]
    outputs = [onnx.ValueInfoProto.FromString(o.SerializeToString())
               for o in reversed(out.graph.output)]
    for o in outputs:
        o.name = mapping[o.name]
    del out.graph.output[:]
    out.graph.output.extend(outputs)
    return out


@pytest.mark.parametrize("batched", [False, True])
def test_heads_are_found_by_shape_not_by_output_name_or_order(batched):
    model = make_synthetic_model(batched=batched, seed=3)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 96, 128)).astype(np.float32)
    a = export_device_layout(model)
    b = export_device_layout(shuffled_and_renamed(model))
    assert [o.name for o in b.graph.output] == device_names(True)
    for m, n in zip(ort_run(a, x), ort_run(b, x)):
        np.testing.assert_array_equal(m, n)


def test_misleading_device_names_are_corrected():
    """A device model whose outputs carry the wrong canonical names (stride 32 scores
    called score_8, ...) comes out with every name on the right map."""
    model = make_synthetic_model(layout="device", seed=4, named_outputs=True)
    mislabelled = shuffled_and_renamed(model, device_names(True))
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 64, 128)).astype(np.float32)
    fixed = export_device_layout(mislabelled)
    onnx.checker.check_model(fixed, full_check=True)
    assert [o.name for o in fixed.graph.output] == device_names(True)
    for m, n in zip(ort_run(model, x), ort_run(fixed, x)):
        np.testing.assert_array_equal(m, n)


def test_exporting_a_device_model_only_renames_its_outputs():
    model = make_synthetic_model(layout="device", seed=5)  # numbered outputs
    again = export_device_layout(model)
    assert [o.name for o in again.graph.output] == device_names(True)
    assert len(again.graph.node) == len(model.graph.node)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 64, 96)).astype(np.float32)
    for m, n in zip(ort_run(model, x), ort_run(again, x)):
        np.testing.assert_array_equal(m, n)


# --------------------------------------------------------------------------- bad input

def test_missing_file_and_folder_are_input_errors(tmp_path):
    with pytest.raises(InputError, match=r"nope\.onnx.*not found"):
        load_model(tmp_path / "nope.onnx")
    with pytest.raises(InputError, match="not a file"):
        load_model(tmp_path)


def test_a_text_file_renamed_onnx_is_an_input_error(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("these are not the weights you are looking for\n")
    for fn in (load_model, export_device_layout, describe_model):
        with pytest.raises(InputError, match=r"notes\.onnx.*not a readable ONNX model"):
            fn(path)


@pytest.mark.data
def test_a_truncated_model_is_an_input_error(real_path, tmp_path):
    data = real_path("scrfd_1g.onnx").read_bytes()
    path = tmp_path / "scrfd_1g_truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"scrfd_1g_truncated\.onnx.*(truncated|corrupt)"):
        load_model(path)


def test_a_truncated_synthetic_model_is_an_input_error(tmp_path):
    """The same check without data files: cut inside the initializers."""
    data = make_synthetic_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) - 5000])
    with pytest.raises(InputError, match=r"cut\.onnx"):
        load_model(path)


def conv_model(n_outputs: int, channels: int, size: int = 64) -> onnx.ModelProto:
    """``n_outputs`` 3x3 convs of ``channels`` channels on a [1, 3, size, size] input."""
    nodes, inits, outs = [], [], []
    for i in range(n_outputs):
        w = np.full((channels, 3, 3, 3), 0.01 * (i + 1), np.float32)
        inits.append(onnx.numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", ["image", f"w{i}"], [f"features_{i}"],
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        outs.append(helper.make_tensor_value_info(f"features_{i}", TensorProto.FLOAT,
                                                  [1, channels, size, size]))
    graph = helper.make_graph(nodes, "not_scrfd", [helper.make_tensor_value_info(
        "image", TensorProto.FLOAT, [1, 3, size, size])], outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    return model


def test_a_graph_with_one_output_is_a_layout_error(tmp_path):
    path = save_model(conv_model(1, 4), tmp_path / "classifier.onnx")
    with pytest.raises(LayoutError) as err:
        export_device_layout(path)
    msg = str(err.value)
    assert "classifier.onnx" in msg and "1 output" in msg
    assert "features_0 [1, 4, 64, 64]" in msg


def test_six_outputs_that_are_not_heads_are_a_layout_error(tmp_path):
    path = save_model(conv_model(6, 3), tmp_path / "six.onnx")
    shapes = r"\[1, 3, 64, 64\].*features_5 \[1, 3, 64, 64\]"
    with pytest.raises(LayoutError, match=r"six\.onnx.*" + shapes):
        export_device_layout(path)


def test_a_sigmoid_on_a_box_head_is_a_layout_error():
    model = make_synthetic_model(named_outputs=True)
    bbox = next(o for o in model.graph.output if o.name == "bbox_8")
    model.graph.node.append(helper.make_node("Sigmoid", ["bbox_8"], ["bbox_8_sig"]))
    bbox.name = "bbox_8_sig"
    with pytest.raises(LayoutError, match="bbox head, stride 8.*Sigmoid"):
        export_device_layout(model)


def test_layout_errors_are_input_errors_for_the_cli():
    assert issubclass(LayoutError, InputError)


# --------------------------------------------------------------------------- save

def test_save_model_creates_folders_and_leaves_no_temp_files(tmp_path):
    model = make_synthetic_model(seed=7)
    path = save_model(model, tmp_path / "a" / "b" / "m.onnx")
    assert path == tmp_path / "a" / "b" / "m.onnx"
    assert [p.name for p in path.parent.iterdir()] == ["m.onnx"]
    assert load_model(path).SerializeToString() == model.SerializeToString()
    save_model(make_synthetic_model(seed=8), path)  # overwrite in place
    assert load_model(path).SerializeToString() == make_synthetic_model(seed=8).SerializeToString()
