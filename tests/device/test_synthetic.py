"""Specification of ``scrfd_ref.device.synthetic``: tiny SCRFD-shaped models for tests.

A synthetic model must look like a real insightface export to every consumer (same
input, output shapes, order, head tails) and produce values that make detection
plausible: scores on both sides of 0.5, positive modest box distances, modest
landmark offsets, overlapping candidates for NMS to suppress.
"""
from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from scrfd_ref.core.errors import InputError
from scrfd_ref.device.export import export_device_layout
from scrfd_ref.device.onnx_tools import load_model
from scrfd_ref.device.synthetic import make_synthetic_model, write_synthetic_model

STRIDES = (8, 16, 32)
CHANNELS = {"score": 1, "bbox": 4, "kps": 10}
SIZES = [(64, 64), (160, 96), (96, 224)]  # (W, H), multiples of 32, non-square


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input.1": x})


def image_like(w: int, h: int, seed: int = 1) -> np.ndarray:
    """A normalised NCHW input with image statistics: gradients, flat blobs, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([120 + 80 * xx / w, 100 + 60 * yy / h, 140 - 50 * xx * yy / (w * h)], -1)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(8, min(w, h) / 3)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255)
    return ((img.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None].copy()


def expected_shapes(layout: str, batched: bool, landmarks: bool, size: tuple[int, int]):
    w, h = size
    kinds = ["score", "bbox"] + (["kps"] if landmarks else [])
    shapes = []
    for kind, s in itertools.product(kinds, STRIDES):
        c = CHANNELS[kind]
        if layout == "device":
            shapes.append((1, 2 * c, h // s, w // s))
        else:
            n = (h // s) * (w // s) * 2
            shapes.append((1, n, c) if batched else (n, c))
    return shapes


def flatten_device(maps: list[np.ndarray]) -> list[np.ndarray]:
    """NCHW -> NHWC -> (B, H*W*2, C); sigmoid on the three score maps."""
    out = []
    for i, m in enumerate(maps):
        b, c2, h, w = m.shape
        f = m.transpose(0, 2, 3, 1).reshape(b, h * w * 2, c2 // 2).astype(np.float64)
        out.append(1 / (1 + np.exp(-f)) if i < 3 else f)
    return out


VARIANTS = list(itertools.product(["standard", "device"], [False, True], [True, False],
                                  [False, True]))


@pytest.mark.parametrize("layout,batched,landmarks,named", VARIANTS,
                         ids=["-".join(map(str, v)) for v in VARIANTS])
def test_outputs_have_the_shapes_of_the_real_layouts(layout, batched, landmarks, named):
    model = make_synthetic_model(layout=layout, batched=batched, landmarks=landmarks,
                                 named_outputs=named)
    names = [o.name for o in model.graph.output]
    assert len(names) == (9 if landmarks else 6) == len(set(names))
    if named:
        kinds = ["score", "bbox"] + (["kps"] if landmarks else [])
        assert names == [f"{k}_{s}" for k, s in itertools.product(kinds, STRIDES)]
    else:
        assert all(n.isdigit() for n in names) and names != sorted(names)
    for size in SIZES:
        outs = run(model, image_like(*size))
        assert [o.shape for o in outs] == expected_shapes(layout, batched, landmarks, size)
        assert all(o.dtype == np.float32 for o in outs)


def dims(v: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]


def test_input_is_input_1_nchw_with_dynamic_or_fixed_size():
    dynamic = make_synthetic_model()
    fixed = make_synthetic_model(input_size=(160, 96), batched=True)
    assert [i.name for i in dynamic.graph.input] == ["input.1"]
    assert dims(dynamic.graph.input[0]) == [1, 3, "height", "width"]
    assert dims(fixed.graph.input[0]) == [1, 3, 96, 160]
    declared = [tuple(dims(o)) for o in fixed.graph.output]
    assert declared == expected_shapes("standard", True, True, (160, 96))
    assert declared == [o.shape for o in run(fixed, image_like(160, 96))]


@pytest.mark.parametrize("layout", ["standard", "device"])
def test_model_is_small_valid_opset_11_and_deterministic(layout):
    model = make_synthetic_model(layout=layout)
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 11)]
    data = model.SerializeToString()
    assert len(data) < 100_000
    assert make_synthetic_model(layout=layout).SerializeToString() == data
    assert make_synthetic_model(layout=layout, seed=1).SerializeToString() != data


def test_standard_heads_end_like_the_insightface_export():
    """Transpose(2,3,0,1)+Reshape(-1,C) unbatched, (0,2,3,1)+(1,-1,C) batched, Sigmoid last."""
    for batched, perm in ((False, [2, 3, 0, 1]), (True, [0, 2, 3, 1])):
        model = make_synthetic_model(batched=batched, named_outputs=True)
        producers = {o: n for n in model.graph.node for o in n.output}
        score = producers["score_8"]
        reshape = producers[score.input[0]]
        transpose = producers[reshape.input[0]]
        assert (score.op_type, reshape.op_type, transpose.op_type) == (
            "Sigmoid", "Reshape", "Transpose")
        assert list(transpose.attribute[0].ints) == perm
        assert producers["bbox_8"].op_type == "Reshape"


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("landmarks", [True, False])
def test_device_export_of_the_standard_model_is_the_device_model(batched, landmarks):
    """Same seed -> same weights: cutting the standard model gives the device model, and
    flattening the device maps (+ sigmoid on scores) gives the standard outputs.
    Tolerance atol 1e-6: only the sigmoid moves (onnxruntime float32 vs numpy float64)."""
    kw = dict(landmarks=landmarks, seed=11, named_outputs=True)
    standard = make_synthetic_model(batched=batched, **kw)
    device = make_synthetic_model(layout="device", **kw)
    x = image_like(160, 96)
    exported = run(export_device_layout(standard), x)
    maps = run(device, x)
    for a, b in zip(exported, maps):
        np.testing.assert_array_equal(a, b)
    for got, want in zip(flatten_device(maps), run(standard, x)):
        np.testing.assert_allclose(got, want.reshape(got.shape), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def heads() -> dict[str, list[np.ndarray]]:
    """Flattened per-stride outputs of the default synthetic model on an image-like input."""
    model = make_synthetic_model(layout="device")
    flat = flatten_device(run(model, image_like(320, 256)))
    return {"score": flat[0:3], "bbox": flat[3:6], "kps": flat[6:9]}


def test_scores_spread_on_both_sides_of_one_half(heads):
    scores = np.concatenate([s.ravel() for s in heads["score"]])
    assert 0.1 < np.mean(scores > 0.5) < 0.7
    assert scores.min() < 0.1 and scores.max() > 0.9
    assert all(0 < np.mean(s > 0.5) < 1 for s in heads["score"]), "each stride has both"


def test_box_distances_are_positive_and_modest(heads):
    boxes = np.concatenate([b.ravel() for b in heads["bbox"]])
    assert boxes.min() > 0
    lo, hi = np.quantile(boxes, [0.05, 0.95])
    assert 0.5 <= lo and hi <= 4.0


def test_landmark_offsets_are_modest(heads):
    kps = np.concatenate([k.ravel() for k in heads["kps"]])
    assert np.quantile(np.abs(kps), 0.95) < 4.0 and np.abs(kps).max() < 10.0


def test_decoded_detections_give_nms_something_to_do(heads):
    """Decode (anchor centres col*s, row*s, two per location), keep scores > 0.5, greedy
    NMS at IoU 0.4 (+1 convention): some boxes survive, many are suppressed."""
    boxes, scores = [], []
    for s, sc, bb in zip(STRIDES, heads["score"], heads["bbox"]):
        rows, cols = 256 // s, 320 // s
        cy, cx = np.mgrid[0:rows, 0:cols] * s
        centres = np.repeat(np.stack([cx.ravel(), cy.ravel()], 1), 2, axis=0)
        d = bb[0] * s
        xyxy = np.concatenate([centres - d[:, :2], centres + d[:, 2:]], 1)
        keep = sc[0, :, 0] > 0.5
        boxes.append(xyxy[keep])
        scores.append(sc[0, keep, 0])
    boxes, scores = np.concatenate(boxes), np.concatenate(scores)
    order, kept = np.argsort(-scores, kind="stable"), []
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    for i in order:
        k = np.array(kept, dtype=int)
        lo, hi = np.maximum(boxes[i, :2], boxes[k, :2]), np.minimum(boxes[i, 2:], boxes[k, 2:])
        inter = np.prod(np.maximum(0, hi - lo + 1), axis=1)
        if not np.any(inter / (area[i] + area[k] - inter) > 0.4):
            kept.append(i)
    assert 5 <= len(kept) < 0.8 * len(boxes)


def test_write_synthetic_model_saves_a_loadable_file(tmp_path):
    path = write_synthetic_model(tmp_path / "sub" / "synthetic.onnx", landmarks=False, seed=2)
    assert path == tmp_path / "sub" / "synthetic.onnx" and path.stat().st_size < 100_000
    assert load_model(path).SerializeToString() == make_synthetic_model(
        landmarks=False, seed=2).SerializeToString()


@pytest.mark.parametrize("kwargs", [dict(layout="nhwc"), dict(input_size=(100, 96)),
                                    dict(input_size=(96,))])
def test_bad_arguments_are_input_errors(kwargs):
    with pytest.raises(InputError, match="synthetic model"):
        make_synthetic_model(**kwargs)
