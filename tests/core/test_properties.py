"""Properties of NMS and preprocessing, checked against independent definitions.

(Anchor and decode properties are fuzzed in conformance/test_fuzz_decode.py.)

Every expected value here comes from a definition written in this file (a per-anchor
loop, a plain-Python greedy NMS, a reshape written element by element, hand arithmetic),
never from the package itself. The definitions are those of seed-flow.md sections 1-3:

- anchor centre of anchor ``a`` at cell ``(row, col)`` of stride ``s`` is
  ``(col * s, row * s)``; flat index ``(row * W + col) * 2 + a``;
- ``x1 = cx - l*s, y1 = cy - t*s, x2 = cx + r*s, y2 = cy + b*s``, landmark
  ``(cx + dx*s, cy + dy*s)``;
- device layout: ``(B, 2C, H, W)`` NCHW, channel block ``a*C:(a+1)*C`` is anchor ``a``,
  scores are logits;
- greedy NMS in descending score order with the "+1" convention, a box is kept when
  IoU ``<=`` thr with every kept box, float32 arithmetic in insightface's order.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scrfd_ref.core.nms import HAVE_KERNEL, nms
from scrfd_ref.core.preprocess import letterbox_geometry, preprocess
from scrfd_ref.core.profiles import LETTERBOX_KINDS, get_profile

STRIDES = (8, 16, 32)
F32 = np.float32
EPS32 = float(np.finfo(np.float32).eps)  # 2**-23

KERNEL_MODES = [pytest.param(False, id="numpy"),
                pytest.param(True, id="kernel",
                             marks=pytest.mark.skipif(not HAVE_KERNEL,
                                                      reason="Cython NMS kernel not built"))]

CHEAP = settings(max_examples=100, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
MEDIUM = settings(max_examples=80, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def iou_plus1(a, b) -> np.float32:
    """IoU of two boxes with the "+1" convention, in float32 scalars, insightface's order:
    ``inter / (area_a + area_b - inter)``."""
    one, zero = F32(1), F32(0)
    a = [F32(v) for v in a]
    b = [F32(v) for v in b]
    area_a = (a[2] - a[0] + one) * (a[3] - a[1] + one)
    area_b = (b[2] - b[0] + one) * (b[3] - b[1] + one)
    w = max(zero, min(a[2], b[2]) - max(a[0], b[0]) + one)
    h = max(zero, min(a[3], b[3]) - max(a[1], b[1]) + one)
    inter = w * h
    with np.errstate(all="ignore"):
        return inter / (area_a + area_b - inter)


def greedy_nms_py(boxes, scores, thr: float) -> list[int]:
    """Plain-Python greedy NMS: visit in descending score order (ties: input order),
    keep a box unless some kept box has ``not (IoU <= thr)`` with it."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    thr32 = F32(thr)
    kept: list[int] = []
    for i in order:
        if all(iou_plus1(boxes[k], boxes[i]) <= thr32 for k in kept):
            kept.append(i)
    return kept


# --------------------------------------------------------------------------------------
# NMS
# --------------------------------------------------------------------------------------

@st.composite
def int_boxes(draw, max_n: int = 40, degenerate: bool = False, span: int = 120):
    """Integer-valued ``(n, 4)`` boxes; ``degenerate`` allows zero and negative areas."""
    n = draw(st.integers(0, max_n))
    lo = -4 if degenerate else 1
    rows = []
    for _ in range(n):
        x1 = draw(st.integers(0, span))
        y1 = draw(st.integers(0, span))
        w = draw(st.integers(lo, 60))
        h = draw(st.integers(lo, 60))
        rows.append((x1, y1, x1 + w - 1, y1 + h - 1))  # +1 convention: width (x2 - x1 + 1) = w
    return np.array(rows, dtype=np.float32).reshape(-1, 4)


def distinct_scores(n: int):
    return st.lists(st.floats(0.0, 1.0, width=32), min_size=n, max_size=n, unique=True).map(
        lambda v: np.array(v, dtype=np.float32))


THRESHOLDS = st.one_of(st.sampled_from([0.0, 0.3, 0.4, 0.45, 0.5, 1.0]), st.floats(0.0, 1.0))


@pytest.mark.parametrize("use_kernel", KERNEL_MODES)
@CHEAP
@given(data=st.data(), boxes=int_boxes(), thr=THRESHOLDS)
def test_nms_greedy_invariants(use_kernel, data, boxes, thr):
    """Kept indices are a subset in descending score order; kept boxes pairwise have IoU
    ``<= thr``; every dropped box has IoU ``> thr`` with a kept box of higher score;
    NMS of the kept boxes keeps them all; the result equals a plain-Python greedy NMS."""
    n = len(boxes)
    scores = data.draw(distinct_scores(n), label="scores")
    keep = nms(boxes, scores, thr, use_kernel=use_kernel)
    assert keep.dtype.kind == "i"
    assert len(set(keep.tolist())) == len(keep) and all(0 <= k < n for k in keep)
    assert np.all(np.diff(scores[keep]) < 0), "kept boxes come in descending score order"
    thr32 = F32(thr)
    for p, i in enumerate(keep):
        for j in keep[p + 1:]:
            assert iou_plus1(boxes[i], boxes[j]) <= thr32
    kept = set(keep.tolist())
    for j in set(range(n)) - kept:
        assert any(scores[i] > scores[j] and iou_plus1(boxes[i], boxes[j]) > thr32 for i in kept), \
            f"box {j} was dropped without a higher-scoring kept box overlapping it"
    again = nms(boxes[keep], scores[keep], thr, use_kernel=use_kernel)
    np.testing.assert_array_equal(again, np.arange(len(keep)))
    assert keep.tolist() == greedy_nms_py(boxes, scores, thr)


@pytest.mark.parametrize("use_kernel", KERNEL_MODES)
@CHEAP
@given(data=st.data(), boxes=int_boxes(degenerate=True), thr=THRESHOLDS)
def test_nms_is_invariant_to_input_order_and_integer_translation(use_kernel, data, boxes, thr):
    """With distinct scores the kept set does not depend on the input order; shifting all
    integer-valued boxes by an integer offset (exact in float32) keeps the same boxes."""
    n = len(boxes)
    scores = data.draw(distinct_scores(n), label="scores")
    perm = np.array(data.draw(st.permutations(range(n)), label="perm"), dtype=np.int64)
    dx = data.draw(st.integers(-5000, 5000), label="dx")
    dy = data.draw(st.integers(-5000, 5000), label="dy")
    shifted = boxes + np.array([dx, dy, dx, dy], dtype=np.float32)
    with np.errstate(invalid="ignore"):  # two zero-area boxes: IoU 0/0 = NaN suppresses
        keep = nms(boxes, scores, thr, use_kernel=use_kernel)
        keep_perm = nms(boxes[perm], scores[perm], thr, use_kernel=use_kernel)
        keep_shifted = nms(shifted, scores, thr, use_kernel=use_kernel)
    assert perm[keep_perm].tolist() == keep.tolist()
    assert keep_shifted.tolist() == keep.tolist()


@CHEAP
@given(data=st.data(), boxes=int_boxes(max_n=30, degenerate=True), thr=THRESHOLDS,
       tie_levels=st.integers(1, 4))
def test_nms_kernel_numpy_and_python_agree_on_degenerate_boxes_and_ties(data, boxes, thr,
                                                                        tie_levels):
    """Zero-area and negative-area boxes and tied scores: the Cython kernel, the numpy
    path and the plain-Python greedy NMS (ties keep input order; an IoU that is NaN,
    0/0, does not satisfy ``<= thr`` and so suppresses) all agree."""
    n = len(boxes)
    levels = [0.9, 0.6, 0.5, 0.2][:tie_levels]
    scores = np.array(data.draw(st.lists(st.sampled_from(levels), min_size=n, max_size=n),
                                label="scores"), dtype=np.float32)
    want = greedy_nms_py(boxes, scores, thr)
    with np.errstate(all="ignore"):
        got_np = nms(boxes, scores, thr, use_kernel=False)
    assert got_np.tolist() == want
    if HAVE_KERNEL:
        assert nms(boxes, scores, thr, use_kernel=True).tolist() == want


def crowded_scene(seed: int, n: int, crowd: float, degenerate: bool, ties: bool,
                  integer: bool, giants: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``n`` boxes in a ``crowd`` x ``crowd`` area (degenerate ones with negative sides,
    integer coordinates, tied scores when asked; with ``giants`` the area is centred on
    the origin and one box in ten is up to 700 pixels tall or wide, so boxes span many
    of the kernel's 32-pixel bands and band edges): ``(boxes float32, scores float32)``."""
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, crowd, n) - (crowd / 2 if giants else 0)
    y1 = rng.uniform(0, crowd, n) - (crowd / 2 if giants else 0)
    w = rng.uniform(-4 if degenerate else 0.5, 50, n)
    h = rng.uniform(-4 if degenerate else 0.5, 50, n)
    if giants:
        big = rng.random(n) < 0.1
        w[big] = rng.uniform(0.5, 700, big.sum())
        h[big] = rng.uniform(0.5, 700, big.sum())
    boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=1)
    boxes = (np.round(boxes) if integer else boxes).astype(np.float32)
    scores = (rng.integers(0, 5, n) / 5.0 if ties else rng.uniform(0, 1, n)).astype(np.float32)
    return boxes, scores


@pytest.mark.skipif(not HAVE_KERNEL, reason="Cython NMS kernel not built")
@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 500), thr=THRESHOLDS,
       crowd=st.sampled_from([20.0, 60.0, 400.0, 2000.0]), degenerate=st.booleans(),
       ties=st.booleans(), integer=st.booleans(), giants=st.booleans(),
       convention=st.sampled_from(["insightface", "mmcv"]))
def test_nms_kernel_equals_numpy_bit_for_bit(seed, n, thr, crowd, degenerate, ties, integer,
                                             giants, convention):
    """Crowded scenes (hundreds of boxes in a small area, the widerface-eval regime),
    float or integer coordinates, degenerate boxes, tied scores, boxes spanning many
    bands and negative coordinates, both conventions: the kernel's pruned band sweep
    keeps exactly the boxes the numpy loop keeps, in the same order."""
    boxes, scores = crowded_scene(seed, n, crowd, degenerate, ties, integer, giants)
    with np.errstate(all="ignore"):
        want = nms(boxes, scores, thr, use_kernel=False, convention=convention)
        got = nms(boxes, scores, thr, use_kernel=True, convention=convention)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("use_kernel", KERNEL_MODES)
def test_nms_plus_one_convention_by_hand(use_kernel):
    """(0,0,9,9) and (5,0,14,9): widths 10, overlap 9 - 5 + 1 = 5 columns x 10 rows = 50,
    IoU = 50 / (100 + 100 - 50) = 1/3. (0,0,9,9) and (9,0,18,9) touch in one column:
    IoU = 10 / 190. (0,0,9,9) and (10,0,19,9) do not overlap: IoU 0."""
    a, b = [0, 0, 9, 9], [5, 0, 14, 9]
    boxes = np.array([a, b], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, 0.33, use_kernel=use_kernel).tolist() == [0]
    assert nms(boxes, scores, 0.34, use_kernel=use_kernel).tolist() == [0, 1]
    assert nms(boxes, scores, float(F32(1) / F32(3)), use_kernel=use_kernel).tolist() == [0, 1]
    touching = np.array([a, [9, 0, 18, 9]], np.float32)
    assert nms(touching, scores, 0.0, use_kernel=use_kernel).tolist() == [0]
    assert nms(touching, scores, 10 / 190 + 1e-6, use_kernel=use_kernel).tolist() == [0, 1]
    apart = np.array([a, [10, 0, 19, 9]], np.float32)
    assert nms(apart, scores, 0.0, use_kernel=use_kernel).tolist() == [0, 1]
    same = np.array([a, a], np.float32)
    assert nms(same, scores, 1.0, use_kernel=use_kernel).tolist() == [0, 1], "IoU 1 <= 1 keeps"
    # lower score first in the input: the output still starts with the best box
    assert nms(boxes, scores[::-1].copy(), 0.3, use_kernel=use_kernel).tolist() == [1]


def greedy_nms_mmcv_py(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    """Plain-Python mmcv CUDA NMS (``devIoU`` with offset 0, float32): suppress when
    ``inter > thr * (area_a + area_b - inter)``; stable descending-score order."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    thr32 = F32(thr)
    kept: list[int] = []
    for j in order:
        b = boxes[j]
        suppressed = False
        for i in kept:
            a = boxes[i]
            w = max(F32(min(a[2], b[2]) - max(a[0], b[0])), F32(0))
            h = max(F32(min(a[3], b[3]) - max(a[1], b[1])), F32(0))
            inter = F32(w * h)
            sa = F32(F32(a[2] - a[0]) * F32(a[3] - a[1]))
            sb = F32(F32(b[2] - b[0]) * F32(b[3] - b[1]))
            if inter > F32(thr32 * F32(F32(sa + sb) - inter)):
                suppressed = True
                break
        if not suppressed:
            kept.append(j)
    return kept


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300), thr=THRESHOLDS,
       crowd=st.sampled_from([20.0, 60.0, 400.0]), degenerate=st.booleans(),
       ties=st.booleans(), integer=st.booleans())
def test_mmcv_nms_kernel_numpy_and_python_agree(seed, n, thr, crowd, degenerate, ties, integer):
    """The mmcv convention (widerface-eval): kernel (pruned sweep), numpy twin and a
    plain-Python transcription of mmcv's devIoU keep the same boxes in the same order."""
    boxes, scores = crowded_scene(seed, n, crowd, degenerate, ties, integer)
    want = greedy_nms_mmcv_py(boxes, scores, thr)
    assert nms(boxes, scores, thr, use_kernel=False, convention="mmcv").tolist() == want
    if HAVE_KERNEL:
        assert nms(boxes, scores, thr, use_kernel=True, convention="mmcv").tolist() == want


@pytest.mark.parametrize("use_kernel", KERNEL_MODES)
def test_mmcv_convention_by_hand(use_kernel):
    """(0,0,10,10) and (5,0,15,10) without "+1": inter 5 x 10 = 50, union 150, IoU 1/3;
    the "+1" convention sees (0,0,10,10) as 11 x 11 and gets 6 x 11 / (121 + 121 - 66)."""
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    # suppressed when 50 > thr * 150, i.e. thr < 1/3
    assert nms(boxes, scores, 0.33, use_kernel=use_kernel, convention="mmcv").tolist() == [0]
    assert nms(boxes, scores, 0.34, use_kernel=use_kernel, convention="mmcv").tolist() == [0, 1]
    # the +1 IoU is 66 / 176 = 0.375: at 0.35 "+1" suppresses, mmcv keeps
    assert nms(boxes, scores, 0.35, use_kernel=use_kernel).tolist() == [0]
    assert nms(boxes, scores, 0.35, use_kernel=use_kernel, convention="mmcv").tolist() == [0, 1]
    touching = np.array([[0, 0, 10, 10], [10, 0, 20, 10]], np.float32)  # no shared area
    assert nms(touching, scores, 0.0, use_kernel=use_kernel, convention="mmcv").tolist() == [0, 1]
    assert nms(touching, scores, 0.0, use_kernel=use_kernel).tolist() == [0]


# --------------------------------------------------------------------------------------
# preprocessing geometry
# --------------------------------------------------------------------------------------

@CHEAP
@given(w=st.integers(1, 4000), h=st.integers(1, 4000),
       in_w=st.integers(1, 40).map(lambda k: 32 * k), in_h=st.integers(1, 40).map(lambda k: 32 * k),
       kind=st.sampled_from(LETTERBOX_KINDS), data=st.data())
def test_points_round_trip_through_the_transform(w, h, in_w, in_h, kind, data):
    """``points_to_original(points_to_input(p)) == p`` up to float32 rounding.

    Honest tolerance: the input-space point is rounded to float32 (half an ulp of at
    most ``max(in_w, in_h)``) and divided by the float32 scale (relative error ~1e-7),
    so the error in original pixels is a few float32 eps times the original extent
    ``in / scale``; 4 eps of that bound, far below half a pixel.
    """
    t = letterbox_geometry((w, h), (in_w, in_h), kind)
    pts = np.array([[data.draw(st.floats(0.0, float(w)), label="x"),
                     data.draw(st.floats(0.0, float(h)), label="y")] for _ in range(4)]
                   + [[0.0, 0.0], [float(w), float(h)]])
    back = t.points_to_original(t.points_to_input(pts))
    assert back.dtype == np.float32
    tol_x = 4 * EPS32 * (in_w / t.scale_x + w)
    tol_y = 4 * EPS32 * (in_h / t.scale_y + h)
    assert tol_x < 0.5 and tol_y < 0.5
    assert np.all(np.abs(back[:, 0] - pts[:, 0]) <= tol_x)
    assert np.all(np.abs(back[:, 1] - pts[:, 1]) <= tol_y)


@settings(max_examples=80, deadline=None)
@given(in_w=st.integers(1, 8).map(lambda k: 32 * k), in_h=st.integers(1, 8).map(lambda k: 32 * k),
       kind=st.sampled_from(LETTERBOX_KINDS), data=st.data())
def test_a_bright_pixel_lands_where_the_transform_maps_it(in_w, in_h, kind, data):
    """Draw one white pixel at original ``(x, y)`` on black, letterbox it, and find the
    brightest input pixel(s). Its position is where the transform maps the pixel.

    Honest tolerance per axis, in input pixels (scale ``s`` = resized / original size,
    the factor ``cv2.resize`` actually applies):

    - 0.5: bilinear resampling peaks at the output sample nearest to the pixel's centre;
    - ``0.5 * |s - 1|``: the transform maps corner coordinates (``x -> x*s``, as boxes
      are mapped) while the pixel's centre ``x + 0.5`` lands at ``(x + 0.5)*s - 0.5``;
    - insightface only: its one ``det_scale = new_h / h`` is used for x too, while the
      image was resized by ``new_w / w`` (int truncation), off by
      ``(x + 0.5) * |det_scale - new_w / w|``;
    - 0.05 for 11-bit fixed-point weights and uint8 rounding (plateaus of equal values).

    Downscaling is limited to ``s > 0.5`` (bilinear skips source pixels below that) and
    the pixel stays off the border (edge replication makes a plateau).
    """
    w = data.draw(st.integers(3, int(1.9 * in_w)), label="w")
    h = data.draw(st.integers(3, int(1.9 * in_h)), label="h")
    profile = get_profile("insightface", letterbox=kind, input_size=(in_w, in_h), pad_value=0.0)
    t = letterbox_geometry((w, h), (in_w, in_h), kind)
    sx, sy = t.resized_w / w, t.resized_h / h  # what cv2.resize applies
    assume(sx > 0.52 and sy > 0.52)
    x = data.draw(st.integers(1, w - 2), label="x")
    y = data.draw(st.integers(1, h - 2), label="y")
    image = np.zeros((h, w, 3), np.uint8)
    image[y, x] = 255
    blob, (t2,) = preprocess(image, profile)
    assert t2 == t
    plane = blob[0, 0]
    ys, xs = np.nonzero(plane == plane.max())
    peak_x, peak_y = xs.mean(), ys.mean()

    mapped_x, mapped_y = t.points_to_input(np.array([x, y], dtype=np.float64))
    if kind != "insightface":
        assert (t.scale_x, t.scale_y) == (sx, sy)
    tol_x = 0.5 + 0.5 * abs(sx - 1) + (x + 0.5) * abs(t.scale_x - sx) + 0.05
    tol_y = 0.5 + 0.5 * abs(sy - 1) + (y + 0.5) * abs(t.scale_y - sy) + 0.05
    assert abs(peak_x - mapped_x) <= tol_x, (peak_x, mapped_x, tol_x)
    assert abs(peak_y - mapped_y) <= tol_y, (peak_y, mapped_y, tol_y)
    # with the pixel-centre convention made explicit only the sampling error remains
    centre_x = (x + 0.5) * sx - 0.5 + t.offset_x
    centre_y = (y + 0.5) * sy - 0.5 + t.offset_y
    assert abs(peak_x - centre_x) <= 0.55 and abs(peak_y - centre_y) <= 0.55


# --------------------------------------------------------------------------------------
# letterbox arithmetic by hand
# --------------------------------------------------------------------------------------

LETTERBOX_CASES = [
    # (orig w, h), input (W, H), kind -> resized (w, h), scale (x, y), offset (x, y)
    # 1280x720 -> 640x640 insightface: h/w = 0.5625 <= 1, new_w = 640,
    # new_h = int(640 * 0.5625) = 360, det_scale = 360 / 720 = 0.5 for both axes
    ((1280, 720), (640, 640), "insightface", (640, 360), (0.5, 0.5), (0, 0)),
    # wider: scale = min(640/1280, 640/720) = 0.5, new = int(640.5), int(360.5) = 640, 360
    ((1280, 720), (640, 640), "wider", (640, 360), (0.5, 0.5), (0, 0)),
    # centered: as wider, offsets ((640 - 640) // 2, (640 - 360) // 2) = (0, 140)
    ((1280, 720), (640, 640), "centered", (640, 360), (0.5, 0.5), (0, 140)),
    # stretch: plain resize, per-axis scales 640/1280 and 640/720, no offset
    ((1280, 720), (640, 640), "stretch", (640, 640), (0.5, 640 / 720), (0, 0)),
    # 1024x683 wider: scale = min(0.625, 0.937) = 0.625, 683 * 0.625 = 426.875,
    # int(426.875 + 0.5) = 427 (half up); scales 640/1024, 427/683
    ((1024, 683), (640, 640), "wider", (640, 427), (0.625, 427 / 683), (0, 0)),
    # insightface truncates: new_h = int(640 * 683/1024) = int(426.875) = 426,
    # det_scale = 426 / 683 on both axes
    ((1024, 683), (640, 640), "insightface", (640, 426), (426 / 683, 426 / 683), (0, 0)),
    # centered 1024x683: 640x427, offset y = (640 - 427) // 2 = 213 // 2 = 106
    ((1024, 683), (640, 640), "centered", (640, 427), (0.625, 427 / 683), (0, 106)),
    # 128x69 -> 64x64 wider: scale 0.5, 69 * 0.5 = 34.5, int(34.5 + 0.5) = 35 (half up,
    # not half to even, which would give 34); centered offset (64 - 35) // 2 = 14
    ((128, 69), (64, 64), "wider", (64, 35), (0.5, 35 / 69), (0, 0)),
    ((128, 69), (64, 64), "centered", (64, 35), (0.5, 35 / 69), (0, 14)),
    # insightface: new_h = int(64 * 69/128) = int(34.5) = 34, det_scale = 34 / 69
    ((128, 69), (64, 64), "insightface", (64, 34), (34 / 69, 34 / 69), (0, 0)),
    # portrait 261x720 insightface: h/w = 2.7586 > 1, new_h = 640,
    # new_w = int(640 / (720/261)) = int(231.99999999999997) = 231: float truncation,
    # although 640 * 261 / 720 = 232 exactly; det_scale = 640 / 720
    ((261, 720), (640, 640), "insightface", (231, 640), (640 / 720, 640 / 720), (0, 0)),
    # the same image, wider: scale = min(640/261, 640/720) = 0.8889,
    # 261 * 0.8889 + 0.5 = 232.5 -> 232; centered offset x = (640 - 232) // 2 = 204
    ((261, 720), (640, 640), "centered", (232, 640), (232 / 261, 640 / 720), (204, 0)),
    # non-square input 640x480 with 1920x1080: insightface model ratio 0.75,
    # image ratio 0.5625 <= 0.75 -> new_w = 640, new_h = int(360.0) = 360, det_scale 1/3
    ((1920, 1080), (640, 480), "insightface", (640, 360), (1 / 3, 1 / 3), (0, 0)),
    # centered: scale = min(1/3, 4/9) = 1/3, new 640x360, offset y = (480 - 360) // 2 = 60
    ((1920, 1080), (640, 480), "centered", (640, 360), (1 / 3, 1 / 3), (0, 60)),
    # upscaling 320x240 -> 640x640 wider: scale = min(2, 2.667) = 2, new 640x480
    ((320, 240), (640, 640), "wider", (640, 480), (2.0, 2.0), (0, 0)),
]


@pytest.mark.parametrize("orig, inp, kind, resized, scale, offset", LETTERBOX_CASES,
                         ids=[f"{o[0]}x{o[1]}-{i[0]}x{i[1]}-{k}" for o, i, k, *_ in LETTERBOX_CASES])
def test_letterbox_geometry_by_hand(orig, inp, kind, resized, scale, offset):
    t = letterbox_geometry(orig, inp, kind)
    assert (t.orig_w, t.orig_h) == orig and (t.input_w, t.input_h) == inp
    assert (t.resized_w, t.resized_h) == resized
    assert t.scale_x == pytest.approx(scale[0], rel=1e-12)
    assert t.scale_y == pytest.approx(scale[1], rel=1e-12)
    assert (t.offset_x, t.offset_y) == offset


def test_letterboxed_image_occupies_the_resized_region_and_pads_the_rest():
    """1280x720 grey image into 640x640, centered with pad pixel 114: rows 140..499 hold
    the image (value (128 - 127.5)/128), the rest the pad ((114 - 127.5)/128)."""
    profile = get_profile("device-flow")
    image = np.full((720, 1280, 3), 128, np.uint8)
    blob, (t,) = preprocess(image, profile)
    assert blob.shape == (1, 3, 640, 640) and blob.dtype == np.float32
    assert (t.offset_x, t.offset_y, t.resized_w, t.resized_h) == (0, 140, 640, 360)
    inside = blob[0, :, 140:500, :]
    np.testing.assert_array_equal(inside, np.float32((128 - 127.5) / 128))
    pad = np.float32((114 - 127.5) / 128)
    np.testing.assert_array_equal(blob[0, :, :140, :], pad)
    np.testing.assert_array_equal(blob[0, :, 500:, :], pad)


def test_preprocess_swaps_bgr_to_rgb_and_normalises():
    """A BGR pixel (b, g, r) = (0, 64, 255) at native size becomes RGB
    ((255 - 127.5)/128, (64 - 127.5)/128, (0 - 127.5)/128)."""
    image = np.zeros((32, 32, 3), np.uint8)
    image[...] = (0, 64, 255)
    blob, _ = preprocess(image, get_profile("insightface", input_size=(32, 32)))
    assert blob[0, :, 5, 5].tolist() == [np.float32(127.5 / 128), np.float32(-63.5 / 128),
                                         np.float32(-127.5 / 128)]
    # no resize when the image already has the input size: bright pixel stays put
    image = np.zeros((32, 32, 3), np.uint8)
    image[7, 21] = 255
    blob, _ = preprocess(image, get_profile("widerface-eval", input_size=(32, 32)))
    assert np.unravel_index(np.argmax(blob[0, 0]), (32, 32)) == (7, 21)
