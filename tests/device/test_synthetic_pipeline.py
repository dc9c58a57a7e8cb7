"""The whole reference pipeline on the generated SCRFD-shaped model (no data needed).

The synthetic model has real head shapes and both layouts, so decode is exercised on
layouts no shipped file has (batched dynamic, device layout at non-square sizes) and the
suite means something without the shared data.
"""
from __future__ import annotations

import numpy as np
import pytest

from scrfd_ref.backends.ort import OrtBackend
from scrfd_ref.detector import Detector
from scrfd_ref.device.synthetic import make_synthetic_model


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [(480, 640), (720, 1280), (500, 333), (640, 640)]
    out = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        base = rng.integers(0, 255, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        out.append(np.ascontiguousarray(np.kron(base, np.ones((16, 16, 1), np.uint8))[:h, :w]))
    return out


def _backend(**kwargs) -> OrtBackend:
    return OrtBackend(make_synthetic_model(**kwargs).SerializeToString())


@pytest.mark.parametrize("landmarks", [True, False])
@pytest.mark.parametrize("input_size", [(640, 640), (640, 480), (320, 416)])
@pytest.mark.parametrize("profile", ["insightface", "widerface-eval", "device-flow"])
def test_standard_and_device_layouts_give_the_same_detections(landmarks, input_size, profile):
    """Same weights, two layouts: the same detections. Tolerant, not bit-exact: the
    standard graph applies ORT's sigmoid, the device path numpy's, which may differ by an
    ulp; where two overlapping candidates' scores differ by about that much, NMS may keep
    the other one, and near-equal scores may swap places. So: same count, sorted scores
    within 1e-6, and at least 99% of the boxes found bit-identical in the other result."""
    std = Detector(_backend(landmarks=landmarks, layout="standard", seed=3), profile=profile,
                   input_size=input_size)
    dev = Detector(_backend(landmarks=landmarks, layout="device", seed=3), profile=profile,
                   input_size=input_size)
    for image in _images(3, seed=1):
        a, b = std.detect(image), dev.detect(image)
        assert len(a) == len(b) and len(a) > 0
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-6)
        in_b = {tuple(r) for r in b.boxes.tolist()}
        same = np.array([tuple(r) in in_b for r in a.boxes.tolist()])
        assert same.mean() >= 0.99, f"{(~same).sum()} of {len(a)} boxes differ"
        if landmarks:
            assert a.landmarks.shape == b.landmarks.shape
        else:
            assert a.landmarks is None and b.landmarks is None


@pytest.mark.parametrize("batched", [True, False])
def test_batch_decode_returns_per_image_detections(batched):
    det = Detector(_backend(batched=batched, seed=5), profile="widerface-eval")
    images = _images(4, seed=2)
    together = det.detect_batch(images)
    for image, batch_result in zip(images, together):
        alone = det.detect(image)
        np.testing.assert_array_equal(batch_result.boxes, alone.boxes)
        np.testing.assert_array_equal(batch_result.scores, alone.scores)
        np.testing.assert_array_equal(batch_result.landmarks, alone.landmarks)


def test_named_and_numbered_outputs_decode_alike():
    a = Detector(_backend(named_outputs=True, seed=7)).detect(_images(1)[0])
    b = Detector(_backend(named_outputs=False, seed=7)).detect(_images(1)[0])
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_detections_lie_in_the_original_image_frame():
    det = Detector(_backend(seed=9), profile="device-flow", score_thr=0.3)
    for image in _images(4, seed=4):
        d = det.detect(image)
        h, w = image.shape[:2]
        assert len(d) > 0
        assert (d.boxes[:, 0::2] >= 0).all() and (d.boxes[:, 0::2] <= w).all()
        assert (d.boxes[:, 1::2] >= 0).all() and (d.boxes[:, 1::2] <= h).all()
        assert np.array_equal(d.boxes, np.rint(d.boxes)), "device-flow rounds boxes"
