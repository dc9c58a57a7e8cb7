"""The detection mismatch behind ``scrfd-ref diagnose --predictions`` on hand-made WIDER rows:
its value on cases worked out by hand, its greedy matching against the Hungarian matching
of the detection checks, the sort-based pair search against the full IoU matrix, and the
facts read off a device's files, the detection jitter of the precision hypothesis. (Real devices and injected faults: the acceptance tests
in conformance/test_diagnose_predictions.py.)"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrfd_ref.conformance.compare import match_detections
from scrfd_ref.conformance.detection_agreement import (
    _overlapping_pairs,
    _xyxy,
    agreement_db,
    detection_mismatch,
    jitter_levels,
    matched_ious,
    score_decimals,
)
from scrfd_ref.core.detections import Detections
from scrfd_ref.core.nms import box_iou
from scrfd_ref.core.preprocess import letterbox_geometry
from scrfd_ref.diagnose.predictions import device_facts, rows_in_input

FACE = np.array([[10.0, 20.0, 19.0, 19.0, 0.9]])     # x y w h: 20 x 20 px with the "+1" convention


def test_identical_sets_have_no_mismatch():
    rows = {("e", "a"): FACE, ("e", "b"): np.zeros((0, 5))}
    assert detection_mismatch(rows, rows) == 0.0
    assert agreement_db(0.0) == 40.0


def test_disjoint_sets_mismatch_fully():
    far = FACE + [500.0, 0, 0, 0, 0]
    assert detection_mismatch({("e", "a"): FACE}, {("e", "a"): far}) == 1.0
    assert detection_mismatch({("e", "a"): FACE}, {}) == 1.0
    assert agreement_db(1.0) == 0.0


def test_a_shifted_box_costs_twice_its_iou_shortfall():
    # shifted right by 2 px: intersection 18 x 20 = 360, union 2 * 400 - 360 = 440
    shifted = FACE + [2.0, 0, 0, 0, 0]
    iou = 360 / 440
    m = detection_mismatch({("e", "a"): FACE}, {("e", "a"): shifted})
    assert m == pytest.approx((2 * (1 - iou)) / 2, rel=1e-6)


def test_an_extra_device_box_counts_once_over_all_boxes():
    extra = np.vstack([FACE, FACE + [300.0, 0, 0, 0, -0.5]])
    assert detection_mismatch({("e", "a"): FACE}, {("e", "a"): extra}) == pytest.approx(1 / 3)


def test_the_memo_gives_the_same_value():
    rng = np.random.default_rng(1)
    ref = {("e", str(i)): _rows(rng, 20) for i in range(4)}
    dev = {k: v + rng.normal(0, 0.5, v.shape) * [1, 1, 1, 1, 0] for k, v in ref.items()}
    memo: dict = {}
    first = detection_mismatch(ref, dev, memo=memo)
    assert len(memo) == 4
    assert detection_mismatch(ref, dev, memo=memo) == first == detection_mismatch(ref, dev)


def _rows(rng, n):
    xy = rng.uniform(0, 300, (n, 2))
    wh = rng.uniform(4, 80, (n, 2))
    return np.c_[xy, wh, rng.uniform(0.02, 1, n)]


boxes = st.lists(st.tuples(st.floats(0, 300), st.floats(0, 300), st.floats(0, 80),
                           st.floats(0, 80)), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(boxes, boxes)
def test_the_pair_search_finds_every_overlapping_pair(a, b):
    ra = np.array([[*r, 0.5] for r in a])
    rb = np.array([[*r, 0.5] for r in b])
    xa, xb = _xyxy(ra), _xyxy(rb)
    need = set(zip(*np.nonzero(box_iou(xa, xb) > 0)))
    r, c = _overlapping_pairs(xa, xb)
    assert need <= set(zip(r.tolist(), c.tolist()))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 40), st.floats(0.0, 3.0))
def test_greedy_matching_agrees_with_hungarian_on_a_jittered_copy(seed, n, jitter):
    rng = np.random.default_rng(seed)
    ref = _rows(rng, n)
    dev = ref + np.c_[rng.normal(0, jitter, (n, 4)), np.zeros(n)]
    greedy = matched_ious(ref, dev, 0.5)

    def dets(rows):
        return Detections(_xyxy(rows), rows[:, 4].astype(np.float32), None)

    _, _, hungarian = match_detections(dets(ref), dets(dev), iou_match=0.5)
    candidates = box_iou(_xyxy(ref), _xyxy(dev)) >= 0.5
    if candidates.sum(0).max(initial=0) <= 1 and candidates.sum(1).max(initial=0) <= 1:
        # no box has two candidates: the matching is unique, both must find it
        assert greedy.size == hungarian.size
        assert greedy.sum() == pytest.approx(float(hungarian.astype(np.float64).sum()),
                                             abs=1e-3)
    else:  # crowded boxes: greedy is a maximal matching, at least half the maximum
        assert hungarian.size / 2 <= greedy.size <= hungarian.size


def test_device_facts_read_threshold_and_rounding():
    rows = {("e", "a"): np.array([[1.0, 2.0, 30.0, 40.0, 0.73], [5.0, 6.0, 7.0, 8.0, 0.51]]),
            ("e", "b"): np.zeros((0, 5))}
    facts = device_facts(rows)
    assert facts == {"boxes": 2, "lowest_score": 0.51, "integer_share": 1.0}
    rows[("e", "a")][0, 0] = 1.5
    assert device_facts(rows)["integer_share"] == 7 / 8


def test_rows_in_input_undo_the_mapping_back():
    t = letterbox_geometry((1000, 500), (640, 640), "centered")
    original = np.array([[100.0, 50.0, 200.0, 100.0, 0.8]])
    inp = rows_in_input(original, t)
    x1y1 = t.points_to_original(inp[:, :2])
    np.testing.assert_allclose(x1y1, original[:, :2], rtol=1e-6)
    np.testing.assert_allclose(inp[:, 2:4], original[:, 2:4] * 0.64)
    assert inp[0, 4] == 0.8


def test_jitter_levels_of_matched_detections():
    """Two faces; the device scores both 0.01 higher and shifts the first box 2 px right
    (IoU 360 / 440, the case worked out above): score jitter -20 log10(0.01) = 40 dB, box
    jitter -20 log10 of the RMS of 1 - IoU over the two pairs."""
    ref = {("e", "a"): np.vstack([FACE, FACE + [200.0, 0, 0, 0, -0.1]])}
    dev = {("e", "a"): ref[("e", "a")] + [[2.0, 0, 0, 0, 0.01], [0, 0, 0, 0, 0.01]]}
    levels = jitter_levels(ref, dev, iou_match=0.5, floor=0.3, min_matched=2)
    assert levels["score jitter"] == pytest.approx(40.0, abs=1e-6)
    gap = 1 - 360 / 440
    assert levels["box jitter"] == pytest.approx(-20 * np.log10(np.sqrt(gap ** 2 / 2)))
    # fewer matched pairs than asked for: the detections do not allow a level
    assert jitter_levels(ref, dev, iou_match=0.5, floor=0.3, min_matched=3) == {}
    # a floor above the second face leaves one pair
    one = jitter_levels(ref, dev, iou_match=0.5, floor=0.85, min_matched=1)
    assert one["box jitter"] == pytest.approx(-20 * np.log10(gap))
    # identical detections: both levels at the cap
    assert jitter_levels(ref, ref, iou_match=0.5, floor=0.3, min_matched=1) == {
        "score jitter": 80.0, "box jitter": 80.0}


def test_scores_written_with_few_decimals_are_compared_at_that_precision():
    three = {("e", "a"): np.array([[1.0, 2.0, 30.0, 40.0, 0.731], [5.0, 6.0, 7.0, 8.0, 0.5]])}
    assert score_decimals(three) == 3
    assert score_decimals({("e", "a"): np.array([[1.0, 2.0, 3.0, 4.0, 0.73125431]])}) is None
    ref = {("e", "a"): np.array([[1.0, 2.0, 30.0, 40.0, 0.73149]])}
    # 0.73149 and 0.731 agree to 3 decimals: no score jitter left to measure
    assert jitter_levels(ref, three, iou_match=0.5, floor=0.3, min_matched=1,
                         decimals=3)["score jitter"] == 80.0
