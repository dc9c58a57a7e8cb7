"""Level 2: the device's final detections match the reference's, image by image.

Matching is one-to-one by IoU (Hungarian, "+1" IoU >= iou_match). Recall and precision are
pooled over all images (matched / counted) at the gate's score floor, with a margin on
either side so boxes whose score sits on the floor may cross it (compare.py). Mean IoU of
matches, max score delta and landmark error (pixels, max over matches) are gated too. A
rate that cannot be measured (no reference face, no match, a device without the landmark
heads the reference has) fails its gate; see scrfd_ref/checks.py.
"""
from __future__ import annotations

from scrfd_ref.conformance.checks import check_buckets, check_collapse, check_detections


def test_detections_match_reference(device_spec, device_run, reference_run, gates,
                                    landmark_free, judge):
    result = check_detections(reference_run, device_run, gates, device_spec.dtype,
                              landmark_free=landmark_free)
    assert result.metrics["images"] > 0, f"{device_spec.id}: no image was compared"
    judge(result)


def test_no_score_collapse(device_spec, device_run, reference_run, gates, judge):
    """The known int8 failure: every face's score falls under the threshold."""
    judge(check_collapse(reference_run, device_run, gates, device_spec.dtype))


def test_each_face_size_matches_reference(device_spec, device_run, reference_run, gates,
                                         landmark_free, judge):
    """Per size bucket (the stride whose anchors fit the face): one wrong stride fails even
    when it holds few faces."""
    judge(check_buckets(reference_run, device_run, gates, device_spec.dtype,
                        landmark_free=landmark_free))
