"""The vdsp params file (seed-flow.md section 7): every field value, mapped onto a profile,
and the preprocessing it implies, checked against formulas written out here.

The zoo-like files live in ``tests/configs/vdsp`` (one per SCRFD variant: the 500m one
says 640, the other seven 256 as in the zoo; plus an ImageNet-style DIV255 one, a plain
DIV255 one and a BGR888 + BGR2RGB one with Padding).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from scrfd_ref.core.errors import DataMissingError, UsageError
from scrfd_ref.core.preprocess import preprocess
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.formats.vdsp import apply_vdsp, parse_vdsp, read_vdsp_params

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "vdsp"
VARIANTS = ["500m", "500m_bnkps", "1g", "2.5g", "2.5g_bnkps", "10g", "10g_bnkps", "34g"]
ZOO_CONFIG = {"IimageFormat": "RGB_PLANAR", "IimageWidth": 640, "IimageHeight": 640,
              "IimageWidthPitch": 640, "IimageHeightPitch": 640, "OimageWidth": 640,
              "OimageHeight": 640, "Mean": [127.5, 127.5, 127.5], "Std": [128.0, 128.0, 128.0],
              "NormaType": "MINUSMEAN_DIVSTD", "ColorCvtCode": "NO_CHANGE",
              "ResizeType": "BILINEAR_CV"}
LETTERBOX = "FUSION_OP_RGB_LETTERBOX_CVTCOLOR_NORM_TENSOR"


def vdsp(op: str = LETTERBOX, **config):
    """A parsed vdsp document: the zoo's 640 file with ``config`` changes (None removes)."""
    cfg = {**ZOO_CONFIG, **config}
    cfg = {k: v for k, v in cfg.items() if v is not None}
    return parse_vdsp({"OpType": op, "OpConfig": cfg}, "test.json", json.dumps(cfg))


def profile_of(**config):
    return apply_vdsp(get_profile("device-flow"), vdsp(**config))


def image(h: int = 90, w: int = 160, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- the zoo files


@pytest.mark.parametrize("variant", VARIANTS)
def test_zoo_like_files_read_cleanly_with_their_size(variant):
    v = read_vdsp_params(CONFIGS / f"scrfd_{variant}.json")
    assert v.problems == ()
    size = 640 if variant == "500m" else 256
    profile = apply_vdsp(get_profile("device-flow"), v)
    assert profile.input_size == (size, size)


def test_the_640_file_is_exactly_the_device_flow_profile():
    profile = apply_vdsp(get_profile("device-flow"), read_vdsp_params(CONFIGS / "scrfd_500m.json"))
    assert profile == get_profile("device-flow")


def test_thresholds_and_rounding_stay_the_profiles():
    base = get_profile("widerface-eval")
    p = apply_vdsp(base, vdsp())
    for field in ("score_thr", "nms_thr", "box_mode", "nms_convention", "score_strict",
                  "max_num", "name"):
        assert getattr(p, field) == getattr(base, field)
    assert p.letterbox == "centered" and base.letterbox == "wider"


# ----------------------------------------------------------------------------- every value


def test_optype_letterbox_is_a_centred_letterbox():
    p = profile_of()
    img = image(90, 160)
    blob, (t,) = preprocess([img], p)
    # keep ratio: 160x90 -> 640x360, centred vertically: rows 140..499
    assert (t.resized_w, t.resized_h, t.offset_x, t.offset_y) == (640, 360, 0, 140)
    pad = np.float32((114 - 127.5) / 128)
    assert np.all(blob[0, :, :140] == pad) and np.all(blob[0, :, 500:] == pad)


def test_optype_resize_is_a_plain_resize():
    p = apply_vdsp(get_profile("device-flow"), vdsp("FUSION_OP_RGB_RESIZE_CVTCOLOR_NORM_TENSOR"))
    assert p.letterbox == "stretch"
    img = image(90, 160)
    blob, (t,) = preprocess([img], p)
    expected = cv2.resize(img, (640, 640), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    want = (expected.astype(np.float32) - 127.5) / 128
    np.testing.assert_array_equal(blob[0], want.transpose(2, 0, 1))


@pytest.mark.parametrize("op", [
    "FUSION_OP_RGB_CVTCOLOR_NORM_TENSOR", "FUSION_OP_RGB_LETTERBOX_CVTCOLOR_NORM_TENSOR_EXT",
    "FUSION_OP_YUV_NV12_LETTERBOX_CVTCOLOR_NORM_TENSOR",
    "FUSION_OP_YUV_NV12_RESIZE_CVTCOLOR_NORM_TENSOR", "FUSION_OP_YUV_NV12_CVTCOLOR_NORM_TENSOR"])
def test_other_optypes_are_refused_by_name(op):
    with pytest.raises(UsageError, match=f"OpType {op} is not supported: "):
        apply_vdsp(get_profile("device-flow"), vdsp(op))


def test_an_unknown_optype_names_the_closest():
    v = vdsp("FUSION_OP_RGB_LETTERBOX_CVTCOLOR_NORM_TENSR")
    assert any("did you mean FUSION_OP_RGB_LETTERBOX_CVTCOLOR_NORM_TENSOR?" in p
               for p in v.problems)


@pytest.mark.parametrize("fmt, code, order", [
    ("RGB_PLANAR", "NO_CHANGE", "rgb"), ("RGB888", "NO_CHANGE", "rgb"),
    ("BGR888", "NO_CHANGE", "bgr"), ("BGR888", "BGR2RGB", "rgb"),
    ("RGB_PLANAR", "RGB2BGR", "bgr"), ("RGB888", "BGR2RGB", "bgr")])
def test_image_format_and_colour_code_give_the_model_channel_order(fmt, code, order):
    p = profile_of(IimageFormat=fmt, ColorCvtCode=code)
    assert p.channel_order == order
    img = image()
    rgb_blob, _ = preprocess([img], get_profile("device-flow"))
    blob, _ = preprocess([img], p)
    np.testing.assert_array_equal(blob, rgb_blob if order == "rgb" else rgb_blob[:, ::-1])


@pytest.mark.parametrize("config", [{"IimageFormat": "YUV_NV12", "ColorCvtCode": "YUV2RGB_NV12"},
                                    {"ColorCvtCode": "YUV2RGB_NV12"}])
def test_yuv_input_is_refused(config):
    with pytest.raises(UsageError, match="YUV"):
        profile_of(**config)


def _formula(img_bgr: np.ndarray, order: str, norm: str, mean, std) -> np.ndarray:
    """The normalisation of seed-flow.md section 7, in float64, then float32."""
    x = img_bgr[:, :, ::-1] if order == "rgb" else img_bgr
    x = x.astype(np.float64)
    if norm == "DIV255":
        y = x / 255
    elif norm == "DIV255_MINUSMEAN_DIVSTD":
        y = (x / 255 - np.asarray(mean)) / np.asarray(std)
    else:
        y = (x - np.asarray(mean)) / np.asarray(std)
    return y.transpose(2, 0, 1).astype(np.float32)


@pytest.mark.parametrize("norm, mean, std", [
    ("MINUSMEAN_DIVSTD", [127.5, 127.5, 127.5], [128.0, 128.0, 128.0]),
    ("MINUSMEAN_DIVSTD", [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
    ("DIV255_MINUSMEAN_DIVSTD", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ("DIV255", [0, 0, 0], [1, 1, 1])])
@pytest.mark.parametrize("fmt, code", [("RGB_PLANAR", "NO_CHANGE"), ("BGR888", "NO_CHANGE")])
def test_normalisation_matches_the_formula(norm, mean, std, fmt, code):
    p = profile_of(NormaType=norm, Mean=mean, Std=std, IimageFormat=fmt, ColorCvtCode=code,
                   OimageWidth=160, OimageHeight=96)
    img = image(96, 160)  # the output size: no resize, no padding
    blob, _ = preprocess([img], p)
    want = _formula(img, p.channel_order, norm, mean, std)
    # float32 arithmetic in a different order than the float64 formula: a few ulp
    np.testing.assert_allclose(blob[0], want, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("resize, flag", [
    ("BILINEAR_CV", cv2.INTER_LINEAR), ("BILINEAR", cv2.INTER_LINEAR),
    ("NEAREST", cv2.INTER_NEAREST), ("BICUBIC", cv2.INTER_CUBIC),
    ("LANCZOS_CV", cv2.INTER_LANCZOS4), ("BILINEAR_PILLOW", Image.BILINEAR),
    ("BICUBIC_PILLOW", Image.BICUBIC)])
def test_every_resize_type_resizes_as_its_library(resize, flag):
    p = profile_of(ResizeType=resize, OimageWidth=320, OimageHeight=320)
    img = image(90, 160)
    blob, (t,) = preprocess([img], p)
    size = (t.resized_w, t.resized_h)
    if resize.endswith("_PILLOW"):
        resized = np.asarray(Image.fromarray(img).resize(size, flag))
    else:
        resized = cv2.resize(img, size, interpolation=flag)
    region = blob[0, :, t.offset_y:t.offset_y + t.resized_h, t.offset_x:t.offset_x + t.resized_w]
    want = (resized[:, :, ::-1].astype(np.float32) - 127.5) / 128
    np.testing.assert_array_equal(region, want.transpose(2, 0, 1))


def test_no_resize_is_refused():
    with pytest.raises(UsageError, match="ResizeType NO_RESIZE is not supported"):
        profile_of(ResizeType="NO_RESIZE")


def test_host_buffer_fields_do_not_change_the_geometry():
    base = profile_of()
    assert profile_of(IimageWidth=1920, IimageHeight=1080, IimageWidthPitch=2048,
                      IimageHeightPitch=1088) == base
    assert profile_of(IimageWidth=None, IimageHeight=None, IimageWidthPitch=None,
                      IimageHeightPitch=None) == base


@pytest.mark.parametrize("padding, value", [([0, 0, 0], 0.0), ([114, 114, 114], 114.0),
                                            (None, 114.0)])
def test_padding_sets_the_pad_value(padding, value):
    p = profile_of(Padding=padding)
    assert p.pad_value == value
    blob, (t,) = preprocess([image(90, 160)], p)
    assert np.all(blob[0, :, 0] == np.float32((value - 127.5) / 128))


def test_padding_per_channel_is_refused():
    with pytest.raises(UsageError, match="Padding .* differs per channel"):
        profile_of(Padding=[0, 114, 0])


def test_output_size_must_be_a_multiple_of_32():
    with pytest.raises(UsageError, match="not a multiple of 32"):
        profile_of(OimageWidth=250, OimageHeight=250)


@pytest.mark.parametrize("config, problem", [
    ({"Mean": [127.5, 127.5]}, "OpConfig.Mean: must be a list of 3 numbers"),
    ({"Std": "128"}, "OpConfig.Std: must be a list of 3 numbers"),
    ({"OimageWidth": -640}, "OpConfig.OimageWidth: must be a positive integer"),
    ({"OimageHeight": True}, "OpConfig.OimageHeight: must be a positive integer"),
    ({"NormaType": "MINUS_MEAN_DIVSTD"}, "did you mean MINUSMEAN_DIVSTD?"),
    ({"ResizeType": "BILINEAR_CVV"}, "did you mean BILINEAR_CV?"),
    ({"ColorCvtCode": "BGR2GRAY"}, "unknown value 'BGR2GRAY'"),
    ({"IimageFormat": "RGBA8888"}, "unknown value 'RGBA8888'"),
    ({"OimageWidht": 640}, "OpConfig.OimageWidht: unknown key; did you mean OimageWidth?"),
    ({"NormaType": None}, "OpConfig.NormaType: missing")])
def test_bad_fields_are_named(config, problem):
    v = vdsp(**config)
    assert any(problem in p for p in v.problems), v.problems
    with pytest.raises(UsageError, match="--vdsp-params test.json: "):
        apply_vdsp(get_profile("device-flow"), v)


def test_unreadable_files_are_usage_errors(tmp_path):
    with pytest.raises(DataMissingError, match="file not found"):
        read_vdsp_params(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(UsageError, match="not a readable JSON file"):
        read_vdsp_params(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(UsageError, match="a JSON object with OpType and OpConfig"):
        read_vdsp_params(tmp_path / "list.json")


def test_the_record_holds_the_content_and_its_hash():
    v = read_vdsp_params(CONFIGS / "bgr888_bgr2rgb.json")
    rec = v.to_record()
    assert rec["OpConfig"]["IimageFormat"] == "BGR888" and rec["file"] == "bgr888_bgr2rgb.json"
    import hashlib

    assert rec["sha256"] == hashlib.sha256((CONFIGS / "bgr888_bgr2rgb.json").read_bytes()).hexdigest()
