"""OpenCV DNN backend against ONNX Runtime, the GPU backend's clean skip, the registry.

Tolerances: OpenCV fp32 vs ORT fp32 raw outputs ``atol = rtol = 1e-4`` (observed max
abs difference 5e-5 over all outputs of the shared models); OpenCV vs ORT on the same
fp16 model ``atol 1e-2`` (the two libraries round fp16 differently; observed 4e-3).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from scrfd_ref.backends import builtin_backends, get_backend
from scrfd_ref.backends.opencv import OpenCVBackend, _match_by_shape, _to_rank, engine_ids
from scrfd_ref.core.errors import (
    BackendUnavailable,
    DataMissingError,
    InputError,
    LayoutError,
)
from scrfd_ref.core.preprocess import preprocess
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.detector import Detector
from scrfd_ref.quantize.convert import convert_model, default_calibration_images

FP32_TOL = 1e-4
FP16_ATOL = 1e-2


@pytest.fixture(scope="module")
def images(data_root: Path, need) -> list[np.ndarray]:
    """Two real images: the one-face sample and a crowded WIDER val image."""
    face = need(data_root / "images" / "one_face_1280x720.jpg", "sample image")
    event = need(data_root / "widerface" / "WIDER_val" / "images" / "0--Parade", "WIDER event")
    crowd = sorted(event.glob("*.jpg"))[0]
    return [cv2.imread(str(face)), cv2.imread(str(crowd))]


@pytest.fixture(scope="module")
def blob2(images: list[np.ndarray]) -> np.ndarray:
    """A (2, 3, 640, 640) blob of the two images."""
    return preprocess(images, get_profile("insightface"))[0]


@pytest.fixture(scope="module")
def model_500m(data_root: Path, need) -> Path:
    return need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")


@pytest.fixture(scope="module")
def model_dyn(data_root: Path, need) -> Path:
    return need(data_root / "models" / "scrfd_500m_bnkps_dynamic.onnx", "model file")


def _assert_same(got: list[np.ndarray], want: list[np.ndarray], atol: float, rtol: float = 0.0):
    assert [g.shape for g in got] == [w.shape for w in want], "output order or shapes differ"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, atol=atol, rtol=rtol, err_msg=f"output {i}")


# ----------------------------------------------------------------------------- fp32

@pytest.mark.parametrize("batch", [1, 2])
def test_opencv_equals_ort(shared_model: Path, blob2: np.ndarray, batch: int):
    blob = blob2[:batch]
    want = get_backend("ort", shared_model).run(blob)
    backend = OpenCVBackend(shared_model)
    _assert_same(backend.run(blob), want, FP32_TOL, FP32_TOL)


def test_classic_engine_reorders_outputs_back(model_500m: Path, blob2: np.ndarray):
    """The classic engine lists this model's outputs alphabetically; run() restores graph order.
    OpenCV 5.1 has no classic engine: asking for it is refused with the reason."""
    if "classic" not in engine_ids():
        with pytest.raises(BackendUnavailable, match="has no classic engine .*removed"):
            OpenCVBackend(model_500m, engine="classic")
        return
    backend = OpenCVBackend(model_500m, engine="classic")
    graph_order = [o.name for o in onnx.load(str(model_500m)).graph.output]
    assert list(backend.net.getUnconnectedOutLayersNames()) != graph_order
    assert backend.output_names == graph_order
    _assert_same(backend.run(blob2), get_backend("ort", model_500m).run(blob2), FP32_TOL, FP32_TOL)


def test_dynamic_model_at_another_size(model_dyn: Path, images: list[np.ndarray]):
    blob = preprocess(images[:1], get_profile("insightface", input_size=(480, 320)))[0]
    backend = OpenCVBackend(model_dyn)
    assert backend.input_size is None
    got = backend.run(blob)
    assert got[0].shape == ((320 // 8) * (480 // 8) * 2, 1)
    _assert_same(got, get_backend("ort", model_dyn).run(blob), FP32_TOL, FP32_TOL)


def test_input_size(model_500m: Path, model_dyn: Path):
    assert OpenCVBackend(model_500m).input_size == (640, 640)
    assert OpenCVBackend(model_dyn, input_size=(320, 320)).input_size == (320, 320)
    with pytest.raises(InputError, match="fixed at 640x640"):
        OpenCVBackend(model_500m, input_size=(320, 320))
    with pytest.raises(InputError, match="fixed at 640x640"):
        OpenCVBackend(model_500m).run(np.zeros((1, 3, 320, 320), np.float32))


def test_detector_with_opencv_backend(model_500m: Path, images: list[np.ndarray]):
    want = Detector(model_500m).detect(images[0])
    got = Detector(model_500m, backend="opencv").detect(images[0])
    assert len(got) == len(want) == 1
    np.testing.assert_allclose(got.boxes, want.boxes, atol=0.01)


def test_info(model_500m: Path):
    info = OpenCVBackend(model_500m, dtype="fp32").info()
    assert info["backend"] == "opencv" and info["version"] == cv2.__version__
    assert info["engine"] in ("new", "classic") and info["target"] == "cpu"
    assert info["dtype"] == "fp32" and info["model"] == str(model_500m)


# ----------------------------------------------------------------------------- fp16 / int8

def test_fp16_model(model_500m: Path, blob2: np.ndarray,
                    tmp_path_factory: pytest.TempPathFactory):
    path = convert_model(model_500m, "fp16", cache_dir=tmp_path_factory.mktemp("cv-cache"))
    backend = OpenCVBackend(path, dtype="fp16")
    assert backend.engine == "new", "the classic engine cannot run fp16 weights"
    _assert_same(backend.run(blob2), get_backend("ort", path).run(blob2), FP16_ATOL)


@pytest.mark.acceptance  # an int8 conversion
def test_int8_qdq_model_is_unavailable(model_500m: Path, data_root: Path, need,
                                       tmp_path_factory: pytest.TempPathFactory):
    need(data_root / "widerface" / "WIDER_val" / "images", "WIDER val images")
    path = convert_model(model_500m, "int8", cache_dir=tmp_path_factory.mktemp("cv-cache"),
                         calibration_images=default_calibration_images(data_root, 2))
    with pytest.raises(BackendUnavailable, match="int8 QDQ") as err:
        OpenCVBackend(path, dtype="int8")
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- bad input

def test_missing_model(tmp_path: Path):
    with pytest.raises(DataMissingError, match="model file not found"):
        OpenCVBackend(tmp_path / "nope.onnx")


def test_corrupt_model(model_500m: Path, tmp_path: Path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(model_500m.read_bytes()[:1000])
    with pytest.raises(InputError, match="bad.onnx"):
        OpenCVBackend(bad)


def test_model_opencv_cannot_load(tmp_path: Path):
    """A valid ONNX graph with an op OpenCV does not know: one-line BackendUnavailable."""
    node = helper.make_node("FancyOp", ["x"], ["y"], domain="com.example")
    shape = [1, 3, 64, 64]
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("com.example", 1)])
    path = tmp_path / "fancy.onnx"
    onnx.save(model, str(path))
    with pytest.raises(BackendUnavailable, match="cannot load/run .*fancy.onnx") as err:
        OpenCVBackend(path, engine="new")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("fixture", ["model_500m", "model_dyn"])
def test_outputs_matched_back_by_shape(fixture: str, request: pytest.FixtureRequest,
                                       blob2: np.ndarray):
    """The fallback when OpenCV names outputs by layer: shuffled outputs go back in graph order."""
    path = request.getfixturevalue(fixture)
    want = get_backend("ort", path).run(blob2[:1])
    dims = OpenCVBackend(path).output_dims
    shuffled = [want[i][None] if want[i].ndim == 2 else want[i] for i in (5, 0, 8, 3, 1, 7, 2, 6, 4)]
    got = [_to_rank(a, len(d)) for a, d in zip(_match_by_shape(shuffled, dims), dims)]
    assert all(g is w or np.array_equal(g, w) for g, w in zip(got, want))
    with pytest.raises(LayoutError, match="declares 9"):
        _match_by_shape(shuffled[:8], dims)


def test_unknown_engine(model_500m: Path):
    with pytest.raises(InputError, match="unknown OpenCV engine"):
        OpenCVBackend(model_500m, engine="turbo")


# ----------------------------------------------------------------------------- registry / gpu

def test_registry(model_500m: Path):
    assert {"ort", "opencv", "gpu"} <= set(builtin_backends())
    backend = get_backend("opencv", model_500m, dtype="fp32")
    assert isinstance(backend, OpenCVBackend) and backend.name == "opencv"


def test_gpu_unavailable_without_cuda(model_500m: Path):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime has a CUDA provider here; test_gpu_matches_cpu covers it")
    with pytest.raises(BackendUnavailable, match="no CUDA provider.*onnxruntime-gpu") as err:
        get_backend("gpu", model_500m)
    assert "\n" not in str(err.value)


def test_gpu_matches_cpu(model_500m: Path, blob2: np.ndarray):
    """Runs only where onnxruntime-gpu and a GPU are present; skips with the reason otherwise."""
    try:
        backend = get_backend("gpu", model_500m)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    assert backend.info()["device"] == "gpu"
    _assert_same(backend.run(blob2), get_backend("ort", model_500m).run(blob2), 1e-3, 1e-3)
