"""Bad input fails early with a clear, specific error.

Every error is one of :mod:`scrfd_ref.core.errors` (so the CLI prints one line) and its
message names the problem: the output, head and stride, the file, the field.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from scrfd_ref.backends import Backend
from scrfd_ref.core.errors import (
    DataMissingError,
    InputError,
    LayoutError,
    ScrfdRefError,
    UsageError,
)
from scrfd_ref.core.heads import normalize_heads
from scrfd_ref.core.preprocess import check_image, letterbox_geometry, preprocess
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.detector import Detector, detect_from_outputs
from scrfd_ref.formats.images import read_image

STRIDES = (8, 16, 32)
SIZE = (64, 96)  # (W, H): stride 8 -> 12x8 cells, 16 -> 6x4, 32 -> 3x2


def standard(batch: int | None = 1, landmarks: bool = True, size=SIZE) -> list[np.ndarray]:
    """Valid standard-layout outputs: scores 8/16/32, boxes 8/16/32 (, landmarks)."""
    w, h = size
    out = []
    for c in (1, 4, 10) if landmarks else (1, 4):
        for s in STRIDES:
            n = (h // s) * (w // s) * 2
            shape = (n, c) if batch is None else (batch, n, c)
            out.append(np.full(shape, 0.25, np.float32))
    return out


def device(batch: int = 1, landmarks: bool = True, size=SIZE, dtype=np.float16) -> list[np.ndarray]:
    """Valid device-layout outputs ``(B, 2C, H/s, W/s)``."""
    w, h = size
    return [np.zeros((batch, 2 * c, h // s, w // s), dtype)
            for c in ((1, 4, 10) if landmarks else (1, 4)) for s in STRIDES]


def test_the_valid_fixtures_are_valid():
    assert normalize_heads(standard(), SIZE).layout == "standard"
    assert normalize_heads(standard(None, False), SIZE).batch == 1
    assert normalize_heads(device()).input_size == SIZE
    assert normalize_heads(device(landmarks=False), SIZE).has_landmarks is False


def test_error_hierarchy():
    """All user errors share one base; layout errors are input errors; missing files are
    also FileNotFoundError."""
    assert issubclass(LayoutError, InputError) and issubclass(InputError, ScrfdRefError)
    assert issubclass(InputError, ValueError)
    assert issubclass(DataMissingError, FileNotFoundError)
    assert issubclass(DataMissingError, ScrfdRefError)


# ---- model outputs ---------------------------------------------------------------------

@pytest.mark.parametrize("count", [5, 7])
def test_wrong_number_of_outputs(count):
    outs = (standard() + standard())[:count]
    with pytest.raises(LayoutError, match=rf"wrong number of outputs; got {count} outputs"):
        normalize_heads(outs, SIZE)
    with pytest.raises(LayoutError, match="SCRFD has 6 or 9 outputs"):
        normalize_heads(outs, SIZE)


def test_no_outputs():
    with pytest.raises(LayoutError, match="wrong number of outputs; got 0"):
        normalize_heads([], SIZE)


def test_channel_count_that_is_no_head():
    outs = standard()
    outs[3] = np.zeros((1, outs[3].shape[1], 3), np.float32)  # C=3 where boxes have C=4
    with pytest.raises(LayoutError, match=re.escape(f"output 3 (1, {outs[3].shape[1]}, 3) "
                                                    "fits no head for input 64x96")):
        normalize_heads(outs, SIZE)


def test_device_channel_count_that_is_no_head():
    outs = device()
    outs[4] = np.zeros((1, 6, 6, 4), np.float16)  # 2C = 6 -> C = 3
    with pytest.raises(LayoutError, match=re.escape("output 4 (1, 6, 6, 4) fits no head")):
        normalize_heads(outs)


def test_anchor_count_not_matching_the_input_size():
    """Outputs of a 64x96 model read as if the input were 64x64: N fits no stride."""
    with pytest.raises(LayoutError, match=r"output 0 \(1, 192, 1\) fits no head for input 64x64"):
        normalize_heads(standard(), (64, 64))


def test_device_maps_not_matching_the_given_input_size():
    with pytest.raises(LayoutError, match=r"fits no head for input 128x96"):
        normalize_heads(device(), (128, 96))


def test_mixed_ranks():
    outs = standard()
    outs[2] = outs[2][0]  # (N, C) among (B, N, C)
    with pytest.raises(LayoutError, match=r"outputs must all be rank 2, 3 \(standard\) or 4"):
        normalize_heads(outs, SIZE)
    outs = standard()
    outs[0] = device()[0].astype(np.float32)  # one NCHW map among standard outputs
    with pytest.raises(LayoutError, match=r"must all be rank"):
        normalize_heads(outs, SIZE)


def test_rank_one_outputs():
    outs = [a.reshape(-1) for a in standard()]
    with pytest.raises(LayoutError, match=r"must all be rank 2, 3"):
        normalize_heads(outs, SIZE)


def test_standard_layout_needs_the_input_size():
    with pytest.raises(LayoutError, match="need the network input size"):
        normalize_heads(standard())


def test_duplicated_head():
    outs = standard(landmarks=False)
    outs[1] = outs[0].copy()  # two score@8, no score@16
    with pytest.raises(LayoutError, match=r"heads missing or duplicated \(score@16\)"):
        normalize_heads(outs, SIZE)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.bool_])
def test_non_float_dtype(dtype):
    outs = standard()
    outs[2] = outs[2].astype(dtype)
    with pytest.raises(LayoutError, match=rf"output 2 has dtype {np.dtype(dtype)}; SCRFD heads "
                                          "are float16 or float32"):
        normalize_heads(outs, SIZE)


def test_nan_in_a_head_names_the_head_and_stride():
    outs = standard()
    outs[1][0, 5, 0] = np.nan  # score, stride 16
    with pytest.raises(LayoutError, match=r"output 1 \(score head, stride 16, shape \(1, 48, 1\)\) "
                                          r"holds 1 NaN/Inf values"):
        normalize_heads(outs, SIZE)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_inf_in_a_head_names_the_head_and_stride(value):
    outs = device(dtype=np.float16)
    outs[5][0, 3, 1, 1] = value  # bbox, stride 32
    outs[7][0, 0, 0, 0] = value  # kps, stride 16 (later: the first bad output is reported)
    with pytest.raises(LayoutError, match=r"output 5 \(bbox head, stride 32, shape \(1, 8, 3, 2\)\) "
                                          r"holds 1 NaN/Inf values"):
        normalize_heads(outs)


def test_fp16_overflow_to_inf_is_caught():
    """A logit of 70000 overflows fp16 to inf: the device output is invalid, not a score 1."""
    outs = device(dtype=np.float16)
    with np.errstate(over="ignore"):
        outs[0][0, 1, 0, 0] = np.float16(70000.0)
    with pytest.raises(LayoutError, match=r"score head, stride 8.*NaN/Inf"):
        normalize_heads(outs)


@pytest.mark.parametrize("value", [1.5, -0.25])
def test_standard_scores_outside_unit_interval(value):
    outs = standard()
    outs[2][0, 1, 0] = value  # score, stride 32
    with pytest.raises(LayoutError, match=r"standard-layout scores of stride 32 leave \[0, 1\].*"
                                          r"post-sigmoid"):
        normalize_heads(outs, SIZE)


def test_device_maps_with_an_inconsistent_stride():
    outs = device()
    outs[5] = np.zeros((1, 8, 3, 3), np.float16)  # bbox@32 should be 3x2 (H x W)
    with pytest.raises(LayoutError, match=r"expected 3 feature map sizes, found 4"):
        normalize_heads(outs)
    outs = device()
    outs[3] = np.zeros((1, 8, 6, 4), np.float16)  # bbox@8 given at the stride-16 size
    with pytest.raises(LayoutError, match=r"heads missing or duplicated \(bbox@8\)"):
        normalize_heads(outs)


def test_batch_sizes_that_disagree():
    outs = standard(batch=2)
    outs[4] = outs[4][:1]
    with pytest.raises(LayoutError, match=r"outputs disagree on batch size"):
        normalize_heads(outs, SIZE)
    outs = device(batch=3)
    outs[0] = outs[0][:2]
    with pytest.raises(LayoutError, match=r"outputs disagree on batch size"):
        normalize_heads(outs)


def test_heads_and_transforms_that_disagree_on_batch():
    class Fake(Backend):
        name = "fake"

        def run(self, blob):  # pragma: no cover - not called
            raise AssertionError

        def info(self) -> dict[str, Any]:
            return {}

    det = Detector(Fake(), input_size=SIZE)
    heads = normalize_heads(standard(batch=2), SIZE)
    t = letterbox_geometry((64, 96), SIZE, "insightface")
    with pytest.raises(InputError, match=r"heads hold 2 images but 1 transforms"):
        det.detections_from_heads(heads, [t])


def test_detect_from_outputs_reports_the_layout_problem():
    outs = standard()[:5]
    with pytest.raises(LayoutError, match="wrong number of outputs"):
        detect_from_outputs(outs, [], input_size=SIZE)


# ---- images ----------------------------------------------------------------------------

def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "not_an_image.jpg"
    p.write_text("this is not a JPEG\n")
    with pytest.raises(InputError, match=re.escape(f"{p}: file does not decode as an image")):
        read_image(p)


def test_truncated_jpeg_header(tmp_path):
    p = tmp_path / "truncated.jpg"
    p.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    with pytest.raises(InputError, match="does not decode as an image"):
        read_image(p)


def test_empty_image_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(InputError, match=re.escape(f"{p}: image file is empty")):
        read_image(p)


def test_missing_image_file(tmp_path):
    p = tmp_path / "nowhere" / "face.jpg"
    with pytest.raises(DataMissingError, match=re.escape(f"image not found: {p}")):
        read_image(p)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(InputError, match="is a folder, not an image"):
        read_image(tmp_path)
    with pytest.raises(DataMissingError, match="image not found"):
        read_image(tmp_path / "none.jpg")


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 10, 3), (10, 0), (0,)])
def test_empty_image_array(shape):
    with pytest.raises(InputError, match=r"image is empty"):
        check_image(np.zeros(shape, np.uint8))
    with pytest.raises(InputError, match=r"image is empty"):
        preprocess([np.zeros(shape, np.uint8)], get_profile("insightface"))


@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.int64])
def test_wrong_image_dtype(dtype):
    with pytest.raises(InputError, match=rf"expected uint8 pixels, got {np.dtype(dtype)}"):
        preprocess(np.zeros((20, 30, 3), dtype), get_profile("insightface"))


@pytest.mark.parametrize("shape", [(20, 30, 2), (20, 30, 5), (1, 20, 30, 3), (20,)])
def test_wrong_image_shape(shape):
    with pytest.raises(InputError, match=re.escape(f"expected an (h, w, 3) BGR image, got shape {shape}")):
        check_image(np.zeros(shape, np.uint8))


def test_image_that_is_not_an_array():
    with pytest.raises(InputError, match="expected a numpy array, got list"):
        check_image([[0, 0, 0]])


def test_grey_and_bgra_images_are_accepted():
    assert check_image(np.zeros((5, 7), np.uint8)).shape == (5, 7, 3)
    assert check_image(np.zeros((5, 7, 4), np.uint8)).shape == (5, 7, 3)


def test_no_images():
    with pytest.raises(InputError, match="no images to preprocess"):
        preprocess([], get_profile("insightface"))


def test_unknown_letterbox_kind_and_empty_size():
    with pytest.raises(InputError, match="unknown letterbox kind 'squash'"):
        letterbox_geometry((10, 10), (32, 32), "squash")
    with pytest.raises(InputError, match="image size 0x10 is empty"):
        letterbox_geometry((0, 10), (32, 32), "wider")


# ---- profiles --------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(630, 640), (640, 650), (0, 640), (-32, 640), (16, 32)])
def test_input_size_not_a_multiple_of_32(size):
    with pytest.raises(InputError, match=rf"input size {size[0]}x{size[1]} is not a positive "
                                         r"multiple of 32"):
        get_profile("insightface", input_size=size)


class _DynamicBackend(Backend):
    """A backend without a fixed input size (never run)."""

    name = "dynamic"

    def __init__(self, fixed: tuple[int, int] | None = None) -> None:
        self._fixed = fixed

    @property
    def input_size(self):
        return self._fixed

    def run(self, blob):  # pragma: no cover - not called
        raise AssertionError

    def info(self) -> dict[str, Any]:
        return {}


def test_detector_rejects_an_input_size_not_a_multiple_of_32():
    with pytest.raises(InputError, match=r"input size 100x96 is not a positive multiple of 32"):
        Detector(_DynamicBackend(), input_size=(100, 96))


def test_detector_rejects_a_size_other_than_the_models_fixed_one():
    with pytest.raises(UsageError, match=r"--input-size 320,320: the model input is fixed at "
                                         r"640x640"):
        Detector(_DynamicBackend((640, 640)), input_size=(320, 320))


def test_unknown_profile_name():
    with pytest.raises(InputError, match=r"unknown profile 'insightfaces'; known: insightface, "
                                         r"widerface-eval, device-flow"):
        get_profile("insightfaces")
    with pytest.raises(InputError, match=r"unknown profile 'nope'"):
        Detector(_DynamicBackend(), profile="nope")


def test_unknown_profile_field_override():
    with pytest.raises(InputError, match=r"unknown profile field\(s\): score_threshold"):
        get_profile("insightface", score_threshold=0.3)
    with pytest.raises(InputError, match=r"unknown profile field\(s\): bogus, nms"):
        Detector(_DynamicBackend(), nms=0.5, bogus=1)


@pytest.mark.parametrize("field, value, message", [
    ("score_thr", 1.5, r"score threshold 1.5 is outside \[0, 1\]"),
    ("score_thr", -0.1, r"score threshold -0.1 is outside \[0, 1\]"),
    ("nms_thr", 2.0, r"NMS IoU threshold 2.0 is outside \[0, 1\]"),
    ("letterbox", "squash", r"letterbox 'squash' is not one of"),
    ("box_mode", "round", r"box_mode 'round' is not one of"),
    ("max_num", -1, r"max_num -1 is negative"),
    ("max_num_metric", "area", r"max_num_metric 'area' is not one of"),
])
def test_invalid_profile_values(field, value, message):
    with pytest.raises(InputError, match=message):
        get_profile("widerface-eval", **{field: value})
