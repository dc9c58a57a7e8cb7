"""Comparators that do not average a fault away (scrfd_ref.conformance.buckets), on
hand-made detections and heads whose expected metrics are computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from scrfd_ref.conformance.buckets import BUCKETS, bucket_index, compare_anchors, compare_buckets
from scrfd_ref.core.detections import Detections
from scrfd_ref.core.heads import Heads


def square(cx: float, cy: float, side: float) -> list[float]:
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


def faces(boxes, scores, landmarks=None) -> Detections:
    lm = None if landmarks is None else np.asarray(landmarks, np.float32)
    return Detections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), lm)


#: one face per bucket: 20 px (stride 8), 100 px (stride 16), 300 px (stride 32)
REF_BOXES = [square(100, 100, 20), square(300, 300, 100), square(800, 800, 300)]


def landmarks_of(boxes, shift=0.0):
    out = []
    for x1, y1, x2, y2 in boxes:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        out.append([[cx + shift, cy]] * 5)
    return out


def test_bucket_edges_are_the_geometric_midpoints_of_the_anchor_sizes():
    assert [b[0] for b in BUCKETS] == ["s8", "s16", "s32"]
    assert BUCKETS[0][2] == pytest.approx(math.sqrt(32 * 64))       # 45.25 px
    assert BUCKETS[1][2] == pytest.approx(math.sqrt(128 * 256))     # 181.0 px
    assert bucket_index(np.array([20, 45.0, 46, 180, 182, 900])).tolist() == [0, 0, 1, 1, 2, 2]


def test_one_stride_scaled_shows_in_its_bucket_only():
    ref = faces(REF_BOXES, [0.9, 0.9, 0.9], landmarks_of(REF_BOXES))
    scaled = [REF_BOXES[0], REF_BOXES[1], square(800, 800, 300 * 1.15)]
    dev = faces(scaled, [0.9, 0.9, 0.9], landmarks_of(scaled))
    s8, s16, s32 = (s.measured() for s in compare_buckets([(ref, dev, 1.0)]))
    assert s8["bucket_log_scale_mean"] == s16["bucket_log_scale_mean"] == 0.0
    assert s32["bucket_log_scale_mean"] == pytest.approx(math.log(1.15), rel=1e-6)
    # nested squares, IoU in the +1 pixel convention of the matcher (insightface / WIDER)
    assert s32["bucket_mean_iou"] == pytest.approx((301 / 346) ** 2, rel=1e-6)
    assert s8["bucket_mean_iou"] == 1.0 and s32["bucket_recall"] == 1.0
    assert s32["bucket_log_scale_std"] == 0.0                         # one face: no spread


def test_a_missed_face_landmark_error_and_the_letterbox_scale():
    ref = faces(REF_BOXES, [0.9, 0.9, 0.9], landmarks_of(REF_BOXES))
    # the 100 px face missed; the 20 px face's landmarks 2 px off
    dev = faces([REF_BOXES[0], REF_BOXES[2]], [0.9, 0.9],
                [landmarks_of(REF_BOXES[:1], 2.0)[0], landmarks_of(REF_BOXES[2:])[0]])
    s8, s16, s32 = compare_buckets([(ref, dev, 1.0)])
    assert s16.measured()["bucket_recall"] == 0.0 and "bucket_mean_iou" not in s16.measured()
    # NME: 2 px over the 20 px box diagonal, in %
    assert s8.measured()["bucket_nme_pct"] == pytest.approx(100 * 2 / (20 * math.sqrt(2)),
                                                            rel=1e-5)
    # at letterbox scale 0.1 every face is under 45 px at the network input: all in s8
    small = compare_buckets([(ref, ref, 0.1)])
    assert [s.ref_faces for s in small] == [3, 0, 0]


def test_faces_under_the_floor_do_not_count():
    ref = faces(REF_BOXES, [0.9, 0.2, 0.9])
    stats = compare_buckets([(ref, faces(REF_BOXES[:1], [0.9]), 1.0)], floor=0.5)
    assert [s.ref_faces for s in stats] == [1, 0, 1]
    assert stats[2].measured()["bucket_recall"] == 0.0


def _heads(scores8, boxes8, kps8=None) -> Heads:
    """Heads of a 64x64 input (2 anchors a cell: 128, 32, 8 anchors per stride)."""
    rng = np.random.RandomState(1)
    n = {8: 128, 16: 32, 32: 8}
    scores = (scores8[None], *(np.full((1, n[s]), 0.01, np.float32) for s in (16, 32)))
    boxes = (boxes8[None], *(rng.rand(1, n[s], 4).astype(np.float32) for s in (16, 32)))
    kps = None if kps8 is None else (kps8[None], *(np.zeros((1, n[s], 10), np.float32)
                                                  for s in (16, 32)))
    return Heads("standard", (64, 64), scores, boxes, kps)


def test_foreground_anchors_apart_from_the_background():
    rng = np.random.RandomState(0)
    scores = np.full(128, 0.01, np.float32)
    scores[[3, 40, 90]] = [0.9, 0.5, 0.3]                           # three foreground anchors
    boxes = rng.rand(128, 4).astype(np.float32) + 0.5
    ref = _heads(scores, boxes)
    dev_boxes = boxes.copy()
    dev_boxes[[3, 40, 90]] *= 2.0                                    # faces' boxes doubled
    dev_boxes[np.setdiff1d(np.arange(128), [3, 40, 90])] = 7.0       # background: anything
    dev_scores = scores.copy()
    dev_scores[scores < 0.3] = 0.05                                  # background scores up
    dev = _heads(dev_scores, dev_boxes)
    stats = {s.name: s for s in compare_anchors([(ref, dev)], fg_floor=0.3)}
    b8 = stats["bbox_8"].measured()
    assert stats["bbox_8"].fg_anchors == 3
    # err = ref on the foreground rows: SNR = 10 log10(sum ref^2 / sum ref^2) = 0 dB
    assert b8["fg_snr_db"] == pytest.approx(0.0, abs=1e-9)
    assert b8["fg_cosine"] == pytest.approx(1.0, abs=1e-9)
    s8 = stats["score_8"].measured()
    assert s8["fg_cosine"] == pytest.approx(1.0) and math.isinf(s8["fg_snr_db"])
    assert s8["bg_score_p99_delta"] == pytest.approx(0.04, abs=1e-7)
    # stride 16 / 32 have no foreground anchor: nothing measured on their faces
    assert stats["bbox_16"].fg_anchors == 0 and "fg_cosine" not in stats["bbox_16"].measured()
