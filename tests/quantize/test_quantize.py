"""Dtype conversions (scrfd_ref.quantize.convert): fp16, int8 QDQ, head exclusion, the cache, bad input.

Tolerances (real image, insightface profile, ORT CPU):

- fp16 vs fp32 raw outputs: scores within 5e-3 (observed <= 1.6e-3), box / landmark
  distances within 0.15 stride units (observed <= 0.08); detections: same count,
  IoU >= 0.98.
- int8 vs fp32 detections: same face count, IoU >= 0.8 (observed >= 0.95), score
  within 0.1 (observed <= 0.03).

int8 tests calibrate on 8 WIDER val images to keep the suite fast; the one slow test
times the real 50-image calibration.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from scrfd_ref.backends import get_backend
from scrfd_ref.core.errors import DataMissingError, InputError
from scrfd_ref.core.preprocess import preprocess
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.detector import Detector
from scrfd_ref.quantize import convert as quantize
from scrfd_ref.quantize.convert import (
    DTYPES,
    QuantRecipe,
    cache_key,
    conversion_record,
    conversion_settings,
    convert_model,
    default_cache_dir,
    default_calibration_images,
    head_conv_names,
)

NUM_TEST_CALIBRATION = 8
FP16_SCORE_ATOL = 5e-3
FP16_DIST_ATOL = 0.15
INT8_MIN_IOU = 0.8
INT8_SCORE_ATOL = 0.1


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One conversion cache for the whole test session."""
    return tmp_path_factory.mktemp("scrfd-cache")


@pytest.fixture(scope="session")
def calibration(data_root: Path, need) -> list[Path]:
    """The first few WIDER val images (the test calibration set)."""
    need(data_root / "widerface" / "WIDER_val" / "images", "WIDER val images")
    return default_calibration_images(data_root, NUM_TEST_CALIBRATION)


@pytest.fixture(scope="session")
def model_500m(data_root: Path, need) -> Path:
    """The static 640x640 scrfd_500m_bnkps export."""
    return need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")


@pytest.fixture(scope="session")
def model_1g(data_root: Path, need) -> Path:
    """scrfd_1g: dynamic input, a learned Mul scale behind every box head conv."""
    return need(data_root / "models" / "scrfd_1g.onnx", "model file")


@pytest.fixture(scope="session")
def face_image(data_root: Path, need) -> np.ndarray:
    """One frontal face, 1280x720."""
    path = need(data_root / "images" / "one_face_1280x720.jpg", "sample image")
    return cv2.imread(str(path))


#: the default recipe without the mixed-precision search (every weighted node int8): the
#: tests of the int8 file format; the search has its own test
ALL_INT8 = QuantRecipe(mixed_precision=False)


def _int8(src: Path, cache_dir: Path, calibration: list[Path], **kw) -> Path:
    kw.setdefault("recipe", ALL_INT8)
    return convert_model(src, "int8", cache_dir=cache_dir, calibration_images=calibration, **kw)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Plain IoU of two x1 y1 x2 y2 boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / area)


def _detect(model: Path, image: np.ndarray):
    det = Detector(model, profile="insightface")
    try:
        return det.detect(image)
    finally:
        det.close()


def _inits(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {i.name: i for i in model.graph.initializer}


def _nodes_by_name(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {n.name: n for n in model.graph.node}


# ----------------------------------------------------------------------------- fp32 / fp16

def test_dtypes_are_the_declared_list():
    from scrfd_ref.core import dtypes

    assert DTYPES is dtypes.DTYPES


def test_fp32_is_the_source_file(model_500m: Path, tmp_path: Path):
    assert convert_model(model_500m, "fp32", cache_dir=tmp_path) == model_500m
    assert not any(tmp_path.iterdir()), "fp32 must not write anything"


def test_fp16_keeps_fp32_io_and_matches_fp32(shared_model: Path, cache_dir: Path,
                                             face_image: np.ndarray):
    path = convert_model(shared_model, "fp16", cache_dir=cache_dir)
    model = onnx.load(str(path))
    assert {i.type.tensor_type.elem_type for i in model.graph.input} == {TensorProto.FLOAT}
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {TensorProto.FLOAT}
    conv_weights = [_inits(model)[n.input[1]] for n in model.graph.node
                    if n.op_type == "Conv" and n.input[1] in _inits(model)]
    assert conv_weights and all(w.data_type == TensorProto.FLOAT16 for w in conv_weights)

    blob, _ = preprocess(face_image, get_profile("insightface"))
    ref = get_backend("ort", shared_model).run(blob)
    half = get_backend("ort", path, dtype="fp16").run(blob)
    assert [o.dtype for o in half] == [np.float32] * len(ref)
    n_scores = 3
    for i, (r, h) in enumerate(zip(ref, half)):
        atol = FP16_SCORE_ATOL if i < n_scores else FP16_DIST_ATOL
        np.testing.assert_allclose(h, r, rtol=0, atol=atol, err_msg=f"output {i}")

    want, got = _detect(shared_model, face_image), _detect(path, face_image)
    assert len(got) == len(want) >= 1
    assert all(_iou(a, b) >= 0.98 for a, b in zip(want.boxes, got.boxes))


# ----------------------------------------------------------------------------- int8

@pytest.mark.acceptance  # int8 conversions of real models: minutes on 2 cores
def test_int8_is_qdq_per_channel_opset13(shared_model: Path, cache_dir: Path,
                                         calibration: list[Path]):
    model = onnx.load(str(_int8(shared_model, cache_dir, calibration)))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    inits, producers = _inits(model), {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs
    for conv in convs:
        dq = producers.get(conv.input[1])
        assert dq is not None and dq.op_type == "DequantizeLinear", f"{conv.name} weight not QDQ"
        weight = inits[dq.input[0]]
        scale = numpy_helper.to_array(inits[dq.input[1]])
        out_channels = weight.dims[0]
        assert weight.data_type == TensorProto.INT8
        assert scale.size == out_channels > 1, f"{conv.name}: per-tensor weight scale"
        assert {a.name: a.i for a in dq.attribute}.get("axis", 1) == 0
    # the head convs hand their output over in float (no Q/DQ after them)
    consumers = {i: n for n in model.graph.node for i in n.input}
    for name in head_conv_names(onnx.load(str(shared_model))):
        conv = next(n for n in convs if n.name == name)
        nxt = consumers.get(conv.output[0])
        assert nxt is None or nxt.op_type != "QuantizeLinear", f"{name}: output re-quantized"
    # activations: uint8 (ACTIVATION_TYPE = QUInt8)
    q_types = {inits[n.input[2]].data_type for n in model.graph.node
               if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits}
    assert q_types == {TensorProto.UINT8}


@pytest.mark.acceptance  # int8 conversions of real models: minutes on 2 cores
def test_int8_still_finds_the_face(shared_model: Path, cache_dir: Path,
                                   calibration: list[Path], face_image: np.ndarray):
    want = _detect(shared_model, face_image)
    got = _detect(_int8(shared_model, cache_dir, calibration), face_image)
    assert len(want) == 1, "fp32 reference should find exactly the one face"
    assert len(got) == len(want)
    assert _iou(want.boxes[0], got.boxes[0]) >= INT8_MIN_IOU
    assert abs(float(got.scores[0]) - float(want.scores[0])) <= INT8_SCORE_ATOL


@pytest.mark.acceptance  # int8 conversions of real models: minutes on 2 cores
def test_int8_dynamic_model_keeps_dynamic_input(model_1g: Path, cache_dir: Path,
                                                calibration: list[Path]):
    path = _int8(model_1g, cache_dir, calibration)
    backend = get_backend("ort", path, dtype="int8")
    assert backend.input_size is None
    outs = backend.run(np.zeros((1, 3, 320, 480), np.float32))
    assert outs[0].shape == ((320 // 8) * (480 // 8) * 2, 1)


@pytest.mark.acceptance  # int8 conversions of real models: minutes on 2 cores
def test_the_default_recipe_searches_and_records_what_it_kept_float(
        model_500m: Path, cache_dir: Path, calibration: list[Path]):
    """The default recipe: percentile calibration, the mixed-precision search, a sidecar
    with the sensitivity ranking, the search steps, the int8 share and latencies; every
    node the search kept float has a float weight in the file, every other Conv int8."""
    path = convert_model(model_500m, "int8", cache_dir=cache_dir,
                         calibration_images=calibration)
    record = conversion_record(path)
    assert record is not None and record["settings"]["calibrate_method"] == "Percentile"
    lost = [r["lost_db"] for r in record["sensitivity"] if r["lost_db"] is not None]
    assert lost == sorted(lost, reverse=True) and len(lost) > 50
    search = record["search"]
    assert search["steps"][0]["float_nodes"] == []
    assert search["float_nodes"] == search["steps"][search["chosen"]]["float_nodes"]
    assert record["int8_mac_share"] >= QuantRecipe().min_int8_share
    assert set(record["latency_ms"]) == {"fp32", "all_int8", "chosen"}
    model = onnx.load(str(path))
    inits = _inits(model)
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        is_float = conv.input[1] in inits and inits[conv.input[1]].data_type == TensorProto.FLOAT
        assert is_float == (conv.name in search["float_nodes"]), conv.name


# ----------------------------------------------------------------------------- heads

@pytest.mark.parametrize("fixture", ["model_500m", "model_1g"])
def test_head_convs_are_one_conv_per_output(fixture: str, request: pytest.FixtureRequest):
    model = onnx.load(str(request.getfixturevalue(fixture)))
    heads = head_conv_names(model)
    nodes = _nodes_by_name(model)
    assert len(heads) == len(model.graph.output) == len(set(heads))
    assert all(nodes[h].op_type == "Conv" for h in heads)


@pytest.mark.acceptance  # int8 conversions of real models: minutes on 2 cores
@pytest.mark.parametrize("fixture", ["model_500m", "model_1g"])
def test_keep_heads_float_int8(fixture: str, request: pytest.FixtureRequest, cache_dir: Path,
                               calibration: list[Path], face_image: np.ndarray):
    src = request.getfixturevalue(fixture)
    heads = head_conv_names(onnx.load(str(src)))
    plain = _int8(src, cache_dir, calibration)
    kept = _int8(src, cache_dir, calibration, keep_heads_float=True)
    assert kept != plain
    model = onnx.load(str(kept))
    inits, nodes = _inits(model), _nodes_by_name(model)
    consumers = {i: n for n in model.graph.node for i in n.input}
    for name in heads:
        conv = nodes[name]
        assert conv.input[1] in inits, f"{name}: weight is not a plain initializer"
        assert inits[conv.input[1]].data_type == TensorProto.FLOAT, f"{name}: weight not float"
        assert consumers[conv.output[0]].op_type != "QuantizeLinear", f"{name}: output quantized"
    # the rest of the network is still int8
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) > 10
    got = _detect(kept, face_image)
    want = _detect(src, face_image)
    assert len(got) == len(want) == 1 and _iou(want.boxes[0], got.boxes[0]) >= INT8_MIN_IOU


def test_keep_heads_float_fp16(model_1g: Path, cache_dir: Path):
    path = convert_model(model_1g, "fp16", cache_dir=cache_dir, keep_heads_float=True)
    model = onnx.load(str(path))
    inits, nodes = _inits(model), _nodes_by_name(model)
    for name in head_conv_names(onnx.load(str(model_1g))):
        assert inits[nodes[name].input[1]].data_type == TensorProto.FLOAT
    body = [n for n in model.graph.node if n.op_type == "Conv" and n.name not in
            head_conv_names(onnx.load(str(model_1g)))]
    assert all(inits[n.input[1]].data_type == TensorProto.FLOAT16 for n in body)


# ----------------------------------------------------------------------------- cache

@pytest.mark.acceptance  # int8 conversions of real models: minutes on 2 cores
def test_second_call_is_a_cache_hit(model_500m: Path, cache_dir: Path, calibration: list[Path],
                                    monkeypatch: pytest.MonkeyPatch):
    first = _int8(model_500m, cache_dir, calibration)
    mtime = first.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("converted again although the result is cached")

    monkeypatch.setattr(quantize, "_convert_to", fail)
    assert _int8(model_500m, cache_dir, calibration) == first
    assert first.stat().st_mtime_ns == mtime
    assert not list(cache_dir.glob("*.tmp")) and not list(cache_dir.glob(".*.tmp")), \
        "temporary files left behind"


def test_settings_change_the_key(model_500m: Path, calibration: list[Path]):
    int8 = conversion_settings("int8")
    key = cache_key(model_500m, int8, calibration)
    assert key == cache_key(model_500m, conversion_settings("int8"), calibration)
    others = {
        cache_key(model_500m, conversion_settings("int8", keep_heads_float=True), calibration),
        cache_key(model_500m, conversion_settings("int8", input_size=(320, 320)), calibration),
        cache_key(model_500m, int8, calibration[:-1]),
        cache_key(model_500m, int8, calibration[1:] + calibration[:1]),
        cache_key(model_500m, conversion_settings("fp16"), ()),
    }
    assert key not in others and len(others) == 5


def test_changed_source_bytes_change_the_key(model_500m: Path, tmp_path: Path):
    copy = tmp_path / model_500m.name
    copy.write_bytes(model_500m.read_bytes())
    settings = conversion_settings("fp16")
    assert cache_key(copy, settings) == cache_key(model_500m, settings)
    copy.write_bytes(model_500m.read_bytes() + b"\0")
    assert cache_key(copy, settings) != cache_key(model_500m, settings)


@pytest.mark.acceptance  # int8 conversions of real models: minutes on 2 cores
def test_different_settings_give_different_files(model_500m: Path, cache_dir: Path,
                                                 calibration: list[Path]):
    paths = {
        _int8(model_500m, cache_dir, calibration),
        _int8(model_500m, cache_dir, calibration, num_calibration=4),
        convert_model(model_500m, "fp16", cache_dir=cache_dir),
    }
    assert len(paths) == 3 and all(p.parent == cache_dir for p in paths)


def test_parallel_callers_convert_once(model_1g: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch):
    calls = []
    real = quantize._convert_to

    def counted(*args, **kwargs):
        calls.append(1)
        time.sleep(0.2)  # widen the race window
        return real(*args, **kwargs)

    monkeypatch.setattr(quantize, "_convert_to", counted)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(
        convert_model(model_1g, "fp16", cache_dir=tmp_path))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(set(results)) == 1
    assert len(calls) == 1
    onnx.checker.check_model(onnx.load(str(results[0])))
    assert [p.name for p in tmp_path.glob("*.onnx")] == [results[0].name]


def test_default_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("SCRFD_CACHE", str(tmp_path / "cache"))
    assert default_cache_dir() == (tmp_path / "cache").resolve()
    monkeypatch.delenv("SCRFD_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == (tmp_path / "home" / ".cache" / "scrfd-ref").resolve()


def test_default_calibration_images_are_sorted_wider_val(data_root: Path, calibration: list[Path]):
    assert len(calibration) == NUM_TEST_CALIBRATION
    assert calibration == sorted(calibration, key=lambda p: (p.parent.name, p.name))
    assert all(p.parent.parent.name == "images" and p.suffix == ".jpg" for p in calibration)


# ----------------------------------------------------------------------------- bad input

def test_unknown_dtype(model_500m: Path, tmp_path: Path):
    with pytest.raises(InputError, match=r"unknown dtype 'int4'.*fp32, fp16, bf16, int8"):
        convert_model(model_500m, "int4", cache_dir=tmp_path)


@pytest.mark.parametrize("dtype", DTYPES)
def test_missing_model(dtype: str, tmp_path: Path):
    with pytest.raises(DataMissingError, match="model file not found"):
        convert_model(tmp_path / "nope.onnx", dtype, cache_dir=tmp_path, calibration_images=[])


@pytest.mark.parametrize("content", ["truncated", "text"])
@pytest.mark.parametrize("dtype", [d for d in DTYPES if d != "fp32"])
def test_corrupt_model(content: str, dtype: str, model_500m: Path, tmp_path: Path,
                       calibration: list[Path]):
    bad = tmp_path / "bad.onnx"
    data = model_500m.read_bytes()
    bad.write_bytes(data[: len(data) // 3] if content == "truncated" else b"not a model\n")
    with pytest.raises(InputError, match="bad.onnx"):
        convert_model(bad, dtype, cache_dir=tmp_path, calibration_images=calibration[:1])
    assert not list(tmp_path.glob("bad.*.onnx")), "nothing may be cached for a bad model"


def test_bad_calibration_settings(model_500m: Path, tmp_path: Path, calibration: list[Path]):
    with pytest.raises(InputError, match="num_calibration"):
        _int8(model_500m, tmp_path, calibration, num_calibration=0)
    with pytest.raises(InputError, match="empty"):
        _int8(model_500m, tmp_path, [])
    with pytest.raises(DataMissingError, match="calibration image not found"):
        _int8(model_500m, tmp_path, [tmp_path / "missing.jpg"])
    garbage = tmp_path / "event" / "garbage.jpg"
    garbage.parent.mkdir()
    garbage.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(InputError, match="garbage.jpg"):
        _int8(model_500m, tmp_path, [garbage])
    with pytest.raises(InputError, match="fixed at 640x640"):
        _int8(model_500m, tmp_path, calibration[:1], input_size=(320, 320))


def test_no_default_calibration_images(tmp_path: Path):
    with pytest.raises(DataMissingError, match="calibration image .* not found .*50 of the 50"):
        default_calibration_images(tmp_path)


def test_the_calibration_list_is_the_documented_choice(data_root: Path, need):
    """The committed list is every (N/50)th shared image sorted by event/name, and the
    conformance images are the others."""
    from scrfd_ref.quantize.calibration import calibration_keys, choose_calibration_images

    folder = need(data_root / "widerface" / "WIDER_val" / "images", "WIDER val images")
    everything = sorted(folder.glob("*/*.jpg"))
    chosen = choose_calibration_images(everything)
    assert [f"{p.parent.name}/{p.stem}" for p in chosen] == calibration_keys()
    assert len(set(calibration_keys())) == 50
    events = {p.parent.name for p in everything}
    assert {k.split("/")[0] for k in calibration_keys()} == events


# ----------------------------------------------------------------------------- slow

@pytest.mark.slow
@pytest.mark.acceptance
def test_quantize_50_images_timed(model_500m: Path, data_root: Path, need, tmp_path: Path,
                                  face_image: np.ndarray):
    """The real recipe: 50 WIDER val images; prints the time, asserts only correctness."""
    need(data_root / "widerface" / "WIDER_val" / "images", "WIDER val images")
    images = default_calibration_images(data_root, 50)
    assert len(images) == 50, f"only {len(images)} WIDER val images under {data_root}"
    start = time.perf_counter()
    path = convert_model(model_500m, "int8", cache_dir=tmp_path, calibration_images=images)
    took = time.perf_counter() - start
    print(f"\nint8 quantization of {model_500m.name} with 50 calibration images: {took:.1f} s")
    start = time.perf_counter()
    assert convert_model(model_500m, "int8", cache_dir=tmp_path, calibration_images=images) == path
    print(f"cached call: {time.perf_counter() - start:.3f} s")
    model = onnx.load(str(path))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
    want, got = _detect(model_500m, face_image), _detect(path, face_image)
    assert len(got) == len(want) == 1 and _iou(want.boxes[0], got.boxes[0]) >= INT8_MIN_IOU


def test_a_calibration_image_above_the_pixel_limit_is_refused_from_its_header(tmp_path):
    """Calibration images are read like every image (issue 33: ``quantize --calib-images``
    decoded a 100 MP PNG whatever --max-pixels said)."""
    import cv2

    from scrfd_ref.core.errors import InputError
    from scrfd_ref.core.profiles import get_profile
    from scrfd_ref.formats.images import set_max_pixels
    from scrfd_ref.quantize.calibration import _calibration_blob

    f = tmp_path / "big.png"
    cv2.imwrite(str(f), np.zeros((100, 120, 3), np.uint8))
    set_max_pixels(5000)
    try:
        with pytest.raises(InputError, match=r"calibration image .*big\.png: image is 120x100"):
            _calibration_blob(f, get_profile("insightface"))
    finally:
        set_max_pixels(None)
    assert _calibration_blob(f, get_profile("insightface")).shape[-3] == 3   # (1, 3, H, W)
