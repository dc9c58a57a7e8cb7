"""Post-processing by hand: box modes, landmark mapping, max_num selection, and the
inclusive score threshold (seed-flow.md section 3; scrfd_ref.core.profiles).

Expected values are computed by hand in the comments (power-of-two scales where exact
float32 results are claimed).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrfd_ref.core.decode import Candidates, decode
from scrfd_ref.core.heads import normalize_heads
from scrfd_ref.core.nms import select_max_num
from scrfd_ref.core.postprocess import finish_boxes, postprocess
from scrfd_ref.core.preprocess import Transform, letterbox_geometry
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.detector import detect_from_outputs

F32 = np.float32

# 128x64 image letterboxed centred into 64x64: scale 0.5, resized 64x32, offset (0, 16)
CENTRED = Transform(orig_w=128, orig_h=64, input_w=64, input_h=64, resized_w=64,
                    resized_h=32, scale_x=0.5, scale_y=0.5, offset_x=0, offset_y=16)
# 1024x683 into 640x640, widerface-eval: scales 0.625 and 427/683, no offset
WIDER = Transform(orig_w=1024, orig_h=683, input_w=640, input_h=640, resized_w=640,
                  resized_h=427, scale_x=0.625, scale_y=427 / 683)
IDENTITY = Transform(orig_w=101, orig_h=101, input_w=128, input_h=128, resized_w=101,
                     resized_h=101, scale_x=1.0, scale_y=1.0)


def boxes(*rows) -> np.ndarray:
    return np.array(rows, dtype=np.float32).reshape(-1, 4)


# ---- box modes -------------------------------------------------------------------------

def test_float_mode_maps_back_only():
    # x: (x - 0) / 0.5, y: (y - 16) / 0.5
    got = finish_boxes(boxes([10, 20, 30, 40], [-5, 10, 70, 50]), CENTRED, "float")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, boxes([20, 8, 60, 48], [-10, -12, 140, 68]))


def test_float_mode_with_per_axis_scales():
    # x / 0.625 is exact: 100 -> 160, 300 -> 480; y / (427/683) = y * 683/427 in float32
    got = finish_boxes(boxes([100, 61, 300, 427]), WIDER, "float")
    assert got[0, 0] == 160 and got[0, 2] == 480
    np.testing.assert_allclose(got[0, 1::2], [61 * 683 / 427, 683.0], rtol=2e-7)


def test_clamp_resized_clamps_to_the_resized_image_in_input_pixels_then_maps_back():
    # the resized image spans x in [0, 64], y in [16, 48] of the input:
    # (-5, 10, 70, 50) -> (0, 16, 64, 48) -> ((0-0)/0.5, (16-16)/0.5, 64/0.5, (48-16)/0.5)
    src = boxes([-5, 10, 70, 50], [10, 20, 30, 40])
    got = finish_boxes(src, CENTRED, "clamp_resized")
    np.testing.assert_array_equal(got, boxes([0, 0, 128, 64], [20, 8, 60, 48]))
    # the caller's array is not modified
    np.testing.assert_array_equal(src, boxes([-5, 10, 70, 50], [10, 20, 30, 40]))


def test_clamp_resized_uses_the_resized_extent_not_the_input_extent():
    # 1024x683 -> resized 640x427 inside 640x640: y clamps at 427 (-> 683), not at 640
    got = finish_boxes(boxes([600, 400, 700, 600]), WIDER, "clamp_resized")
    assert got[0, 2] == F32(640) / F32(0.625) == 1024
    assert got[0, 3] == pytest.approx(683.0, rel=2e-7)


def test_clip_round_clips_to_the_original_image_and_rounds_half_to_even():
    # mapped back: (-10, -12, 140, 68) -> clipped to [0, 128] x [0, 64] -> (0, 0, 128, 64)
    # (1.25, 17.25, 2.75, 18.75) -> (2.5, 2.5, 5.5, 5.5) -> rint half to even (2, 2, 6, 6)
    # (0.25, 16.75, 1.75, 17.75) -> (0.5, 1.5, 3.5, 3.5) -> (0, 2, 4, 4)
    # (10.2, 20.4, 30.3, 40.45) -> (20.4, 8.8, 60.6, 48.9) -> (20, 9, 61, 49)
    got = finish_boxes(boxes([-5, 10, 70, 50], [1.25, 17.25, 2.75, 18.75],
                             [0.25, 16.75, 1.75, 17.75], [10.2, 20.4, 30.3, 40.45]),
                       CENTRED, "clip_round")
    np.testing.assert_array_equal(got, boxes([0, 0, 128, 64], [2, 2, 6, 6], [0, 2, 4, 4],
                                             [20, 9, 61, 49]))


def test_box_mode_is_applied_before_nms():
    """A = (0, 0, 9.4, 9.4), B = (4.6, 0, 14.4, 9.4), identity transform, NMS 0.35.

    float: widths 10.4 and 10.8, overlap 9.4 - 4.6 + 1 = 5.8 columns x 10.4 rows = 60.32,
    IoU = 60.32 / (108.16 + 112.32 - 60.32) = 0.3766 > 0.35 -> B suppressed.
    clip_round: A -> (0, 0, 9, 9), B -> (5, 0, 14, 9), IoU = 50 / 150 = 1/3 <= 0.35 -> kept.
    """
    c = Candidates(boxes([0, 0, 9.4, 9.4], [4.6, 0, 14.4, 9.4]), np.array([0.9, 0.8], F32), None)
    t = Transform(100, 100, 128, 128, 100, 100, 1.0, 1.0)
    flt = postprocess(c, t, get_profile("insightface", nms_thr=0.35, input_size=(128, 128)))
    assert len(flt) == 1
    rnd = postprocess(c, t, get_profile("device-flow", nms_thr=0.35, input_size=(128, 128)))
    np.testing.assert_array_equal(rnd.boxes, boxes([0, 0, 9, 9], [5, 0, 14, 9]))
    np.testing.assert_array_equal(rnd.scores, np.array([0.9, 0.8], F32))


# ---- landmarks -------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["insightface", "widerface-eval", "device-flow"])
def test_landmarks_are_mapped_back_with_the_same_transform(profile):
    """Landmarks go through ``(p - offset) / scale`` in every profile, including
    device-flow (the vendor left them in input pixels; the reference does not), and are
    neither clipped nor rounded: (10, 20) -> (20, 8); (-2, 10) -> (-4, -12);
    (63.5, 47.25) -> (127, 62.5); (3, 17) -> (6, 2); (0.75, 16.25) -> (1.5, 0.5)."""
    kps = np.array([[[10, 20], [-2, 10], [63.5, 47.25], [3, 17], [0.75, 16.25]]], F32)
    c = Candidates(boxes([10, 20, 30, 40]), np.array([0.9], F32), kps)
    dets = postprocess(c, CENTRED, get_profile(profile, input_size=(64, 64)))
    assert dets.landmarks.dtype == np.float32
    np.testing.assert_array_equal(
        dets.landmarks, np.array([[[20, 8], [-4, -12], [127, 62.5], [6, 2], [1.5, 0.5]]], F32))
    np.testing.assert_array_equal(dets.boxes, boxes([20, 8, 60, 48]))


def test_landmarks_follow_their_boxes_through_nms():
    # two identical boxes: the second (lower score) is suppressed with its landmarks
    kps = np.arange(20, dtype=F32).reshape(2, 5, 2)
    c = Candidates(boxes([0, 16, 20, 36], [0, 16, 20, 36], [40, 16, 60, 36]),
                   np.array([0.9, 0.8, 0.7], F32),
                   np.concatenate([kps, kps[:1] + 100], axis=0))
    dets = postprocess(c, CENTRED, get_profile("insightface", input_size=(64, 64)))
    assert dets.scores.tolist() == [F32(0.9), F32(0.7)]
    np.testing.assert_array_equal(dets.landmarks[0], (kps[0] - [0, 16]) / 0.5)
    np.testing.assert_array_equal(dets.landmarks[1], (kps[0] + 100 - [0, 16]) / 0.5)


def test_no_candidates_give_empty_detections():
    empty = Candidates(np.empty((0, 4), F32), np.empty((0,), F32), np.empty((0, 5, 2), F32))
    dets = postprocess(empty, CENTRED, get_profile("insightface", input_size=(64, 64)))
    assert len(dets) == 0 and dets.boxes.shape == (0, 4) and dets.landmarks.shape == (0, 5, 2)


# ---- max_num ---------------------------------------------------------------------------

# image 101x101: centre (101 // 2, 101 // 2) = (50, 50) (integer division, not 50.5)
#      box                 area (no +1)  centre     2 * |offset|^2     default value
# A   (0, 0, 60, 60)       3600          (30, 30)   2 * 800  = 1600    2000
# B   (40, 40, 60, 60)      400          (50, 50)   0                  400
# C   (45, 45, 95, 95)     2500          (70, 70)   2 * 800  = 1600    900
# D   (0, 0, 10, 10)        100          (5, 5)     2 * 4050 = 8100    -8000
# E   (0, 0, 100, 30)      3000          (50, 15)   2 * 1225 = 2450    550
MAX_NUM_BOXES = boxes([0, 0, 60, 60], [40, 40, 60, 60], [45, 45, 95, 95], [0, 0, 10, 10],
                      [0, 0, 100, 30])
A, B, C, D, E = range(5)


def test_select_max_num_centre_weighted_ranking():
    # default ranking: A 2000 > C 900 > E 550 > B 400 > D -8000
    assert select_max_num(MAX_NUM_BOXES, 3, (101, 101)).tolist() == [A, C, E]
    assert select_max_num(MAX_NUM_BOXES, 1, (101, 101)).tolist() == [A]
    # "max": area alone: A 3600 > E 3000 > C 2500 > B 400 > D 100
    assert select_max_num(MAX_NUM_BOXES, 3, (101, 101), "max").tolist() == [A, E, C]
    assert select_max_num(MAX_NUM_BOXES, 4, (101, 101), "max").tolist() == [A, E, C, B]


def test_select_max_num_off_centre_image():
    # image 200x60: centre (100, 30). E (0,0,100,30): centre (50, 15), offset (-50, -15),
    # 2 * (2500 + 225) = 5450 -> 3000 - 5450 = -2450; C: centre (70, 70), offset (-30, 40),
    # 2 * 2500 = 5000 -> -2500; B: (50, 50) offset (-50, 20) -> 400 - 5800 = -5400;
    # A: (30, 30) offset (-70, 0) -> 3600 - 9800 = -6200; D: (5, 5) -> 100 - 2*(9025+625) = -19200
    assert select_max_num(MAX_NUM_BOXES, 2, (200, 60)).tolist() == [E, C]


def test_select_max_num_keeps_everything_when_not_limiting():
    assert select_max_num(MAX_NUM_BOXES, 0, (101, 101)).tolist() == [0, 1, 2, 3, 4]
    assert select_max_num(MAX_NUM_BOXES, 5, (101, 101)).tolist() == [0, 1, 2, 3, 4]
    assert select_max_num(MAX_NUM_BOXES, 9, (101, 101)).tolist() == [0, 1, 2, 3, 4]


def test_postprocess_max_num_returns_the_selected_set_in_score_order():
    """Scores D .95 > E .9 > B .85 > C .8 > A .7; all pairs have IoU < 0.5 so NMS keeps all
    (largest: A/E, inter 61 * 31 = 1891, IoU 1891 / (3721 + 3131 - 1891) = 0.381).
    max_num 3 selects {A, C, E} (ranked A, C, E) and returns them in descending score:
    E, C, A; "max" with max_num 2 selects {A, E} (ranked A, E), returned E, A."""
    order = [D, E, B, C, A]
    c = Candidates(MAX_NUM_BOXES[order], np.array([0.95, 0.9, 0.85, 0.8, 0.7], F32), None)
    prof = get_profile("insightface", nms_thr=0.5, max_num=3, input_size=(128, 128))
    dets = postprocess(c, IDENTITY, prof)
    np.testing.assert_array_equal(dets.boxes, MAX_NUM_BOXES[[E, C, A]])
    assert dets.scores.tolist() == [F32(0.9), F32(0.8), F32(0.7)]
    dets = postprocess(c, IDENTITY, prof.replace(max_num=2, max_num_metric="max"))
    np.testing.assert_array_equal(dets.boxes, MAX_NUM_BOXES[[E, A]])
    assert dets.scores.tolist() == [F32(0.9), F32(0.7)]
    assert len(postprocess(c, IDENTITY, prof.replace(max_num=0))) == 5


# ---- score threshold (inclusive, float32) ------------------------------------------------

SIZE = (32, 32)  # stride 8: 4x4 cells (32 anchors), 16: 2x2 (8), 32: 1x1 (2)


def standard_outputs(values: dict[tuple[int, int], float]) -> list[np.ndarray]:
    """Standard outputs with all scores 0 except ``{(level, anchor): score}``; zero
    distances, so each candidate is the point box at its anchor centre."""
    scores = [np.zeros((1, n, 1), F32) for n in (32, 8, 2)]
    for (level, idx), v in values.items():
        scores[level][0, idx, 0] = v
    return scores + [np.zeros((1, n, 4), F32) for n in (32, 8, 2)]


def device_outputs(logits: dict[tuple[int, int, int, int], float], dtype) -> list[np.ndarray]:
    """Device outputs with all logits -20 except ``{(level, anchor, row, col): logit}``."""
    scores = [np.full((1, 2, n, n), -20, dtype) for n in (4, 2, 1)]
    for (level, a, row, col), v in logits.items():
        scores[level][0, a, row, col] = v
    return scores + [np.zeros((1, 8, n, n), dtype) for n in (4, 2, 1)]


@pytest.mark.parametrize("as_type", [float, np.float64], ids=["float", "np.float64"])
@pytest.mark.parametrize("thr", [0.5, 0.02, 0.3, 0.45, 1e-3, 0.999, 1.0])
def test_standard_score_exactly_at_threshold_is_kept_one_ulp_below_dropped(thr, as_type):
    """``score >= thr`` compared in float32 (as insightface's ``scores >= threshold`` on a
    float32 array): a score equal to ``float32(thr)`` is kept, the next float32 below it
    is dropped. For 0.02, ``float32(0.02) = 0.0199999996 < 0.02`` in real numbers, yet
    it is kept: the threshold is rounded to float32 too, also when given as a float64
    numpy scalar (which NumPy would otherwise compare in float64)."""
    at = F32(thr)
    below = np.nextafter(at, F32(0))
    # stride 16, anchor 3 = cell 1 (row 0, col 1), anchor 1 -> centre (16, 0);
    # stride 8, anchor 10 = cell 5 (row 1, col 1), anchor 0 -> centre (8, 8)
    heads = normalize_heads(standard_outputs({(1, 3): at, (0, 10): below}), SIZE)
    (c,) = decode(heads, as_type(thr))
    assert c.scores.tolist() == [at]
    np.testing.assert_array_equal(c.boxes, boxes([16, 0, 16, 0]))


def test_threshold_of_the_widerface_profile_end_to_end():
    """widerface-eval keeps ``score > 0.02`` (mmdet's multiclass_nms): a score equal to
    float32(0.02) is dropped, the next float32 above it kept."""
    at, below = F32(0.02), np.nextafter(F32(0.02), F32(0))
    above = np.nextafter(at, F32(1))
    assert float(at) < 0.02
    t = letterbox_geometry(SIZE, SIZE, "wider")
    (dets,) = detect_from_outputs(standard_outputs({(1, 3): at, (0, 10): below, (2, 0): 0.9,
                                                    (1, 5): above}),
                                  [t], "widerface-eval", input_size=SIZE)
    assert dets.scores.tolist() == [F32(0.9), above]
    (dets,) = detect_from_outputs(standard_outputs({(1, 3): at, (0, 10): below, (2, 0): 0.9}),
                                  [t], "device-flow", input_size=SIZE, score_thr=0.02)
    assert dets.scores.tolist() == [F32(0.9), at], "the inclusive profiles keep it"


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_device_logit_whose_sigmoid_equals_threshold_is_kept(dtype):
    """Device scores are ``sigmoid(logit)`` in float32, and the threshold applies to that
    score. Logit 0 gives exactly 0.5: kept at thr 0.5. Logit -2**-24 still gives 0.5
    (``exp(2**-24)`` rounds to 1 or 1 + 2**-23 and ``1 + that`` rounds to 2): kept.
    Logit -2**-22 gives ``1 / (2 + 2**-22)`` < 0.5: dropped. (The float32 just below 0.5,
    0.49999997, is not a value this sigmoid produces; its largest value below 0.5 is
    0.49999994.) Both -2**-24 and -2**-22 are exact fp16 subnormals."""
    logits = {(0, 0, 0, 0): 0.0, (0, 1, 2, 3): -2.0 ** -24, (1, 0, 1, 1): -2.0 ** -22,
              (2, 1, 0, 0): -1e-3}
    heads = normalize_heads(device_outputs(logits, dtype))
    (c,) = decode(heads, 0.5)
    assert c.scores.tolist() == [0.5, 0.5]
    # stable order among ties: stride 8 cell (0, 0) anchor 0 first, then cell (2, 3) anchor 1
    np.testing.assert_array_equal(c.boxes, boxes([0, 0, 0, 0], [24, 16, 24, 16]))


def sigmoid32(x: np.ndarray) -> np.ndarray:
    """The score definition of the device layout: ``1 / (1 + exp(-x))`` in float32."""
    x = np.asarray(x, dtype=F32)
    return F32(1) / (F32(1) + np.exp(-x))


def _key(v: float, dtype) -> int:
    """Order-preserving integer of a float of ``dtype`` (its bits, negatives mirrored)."""
    bits = np.array([v], dtype).view(np.int16 if dtype == np.float16 else np.int32)[0]
    lo = -(2 ** 15) if dtype == np.float16 else -(2 ** 31)
    return int(bits) if bits >= 0 else lo - int(bits)


def _value(k: int, dtype) -> float:
    lo = -(2 ** 15) if dtype == np.float16 else -(2 ** 31)
    itype = np.int16 if dtype == np.float16 else np.int32
    return float(np.array([k if k >= 0 else lo - k], itype).view(dtype)[0])


def largest_value_below(pred, start: float, dtype) -> float:
    """Largest value ``v < start`` of ``dtype`` with ``pred(v)`` true, for ``pred``
    monotone (true for all small enough values, false at ``start``): bisection over the
    ordered representable values."""
    lo, hi = _key(-30.0, dtype), _key(start, dtype)
    assert pred(_value(lo, dtype)) and not pred(_value(hi, dtype))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pred(_value(mid, dtype)):
            lo = mid
        else:
            hi = mid
    return _value(lo, dtype)


@settings(max_examples=200, deadline=None)
@given(logit=st.floats(-9.0, 9.0, width=16), dtype=st.sampled_from([np.float16, np.float32]),
       profile=st.sampled_from(["insightface", "widerface-eval", "device-flow"]))
def test_device_threshold_is_inclusive_at_any_score(logit, dtype, profile):
    """Take a logit, set the threshold to exactly its float32 score: it is kept (dropped by
    widerface-eval, whose threshold is strict), and the highest representable logit (same
    dtype) whose score falls below is dropped. Checked end to end through
    ``detect_from_outputs`` with each profile."""
    one = np.array([logit], dtype)
    s = sigmoid32(one.astype(F32))[0]
    lower = largest_value_below(lambda v: sigmoid32(np.array([v], dtype).astype(F32))[0] < s,
                                float(one[0]), dtype)
    assert sigmoid32(np.array([lower], dtype).astype(F32))[0] < s
    assert sigmoid32(np.array([np.nextafter(dtype(lower), dtype(np.inf))], dtype).astype(F32))[0] >= s
    outs = device_outputs({(0, 1, 3, 2): one[0], (1, 0, 0, 1): lower}, dtype)
    t = letterbox_geometry(SIZE, SIZE, get_profile(profile).letterbox)
    (dets,) = detect_from_outputs(outs, [t], profile, input_size=SIZE, score_thr=float(s))
    if get_profile(profile).score_strict:
        assert dets.scores.tolist() == []
        return
    assert dets.scores.tolist() == [s]
    # stride 8, cell (row 3, col 2) -> centre (16, 24): a point box
    np.testing.assert_array_equal(dets.boxes, boxes([16, 24, 16, 24]))
