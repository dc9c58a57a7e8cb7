"""Level 2: the device's final detections match the reference's, image by image.

Matching is one-to-one by IoU (Hungarian, "+1" IoU >= iou_match). Recall and precision are
pooled over all images (matched / counted) at the gate's score floor, with a margin on
either side so boxes whose score sits on the floor may cross it (compare.py). Mean IoU of
matches, max score delta and landmark error (pixels, max over matches) are gated too.
"""
from __future__ import annotations

import numpy as np

from scrfd_ref.compare import compare_detections, count_above


def _detection_level(device_spec, device_run, reference_run, gates):
    g = lambda name: gates.value(device_spec.dtype, "detections", name)  # noqa: E731
    floor, margin, iou_match = g("score_floor"), g("score_margin"), g("iou_match")
    per_image = [compare_detections(k, reference_run.detections[k], d, iou_match=iou_match,
                                    floor=floor, margin=margin)
                 for k, d in device_run.detections.items()]
    ref_n = sum(m.ref_count for m in per_image)
    dev_n = sum(m.dev_count for m in per_image)
    found = sum(m.ref_count - len(m.missed) for m in per_image)
    matched_pairs = sum(m.matched for m in per_image)
    precision_hits = sum(m.precision * m.dev_count for m in per_image)
    pooled = {
        "recall": found / ref_n if ref_n else 1.0,
        "precision": precision_hits / dev_n if dev_n else 1.0,
        "mean_iou": (sum(m.mean_iou * m.matched for m in per_image) / matched_pairs
                     if matched_pairs else 1.0),
        "max_score_delta": max((m.max_score_delta for m in per_image), default=0.0),
        "landmark_err_px": max((m.landmark_err_px for m in per_image), default=0.0),
    }
    return per_image, pooled, ref_n, dev_n


def _worst(per_image, key):
    return max(per_image, key=key).image if per_image else "-"


def test_detections_match_reference(device_spec, device_run, reference_run, gates,
                                    conformance_report, request):
    per_image, pooled, ref_n, dev_n = _detection_level(device_spec, device_run, reference_run, gates)
    worst = {
        "recall": _worst(per_image, lambda m: (1 - m.recall) * m.ref_count),
        "precision": _worst(per_image, lambda m: (1 - m.precision) * m.dev_count),
        "mean_iou": _worst(per_image, lambda m: -m.mean_iou),
        "max_score_delta": _worst(per_image, lambda m: m.max_score_delta),
        "landmark_err_px": _worst(per_image, lambda m: m.landmark_err_px),
    }
    rows = []
    for metric, value in pooled.items():
        rows += gates.check(device_spec.dtype, "detections",
                            f"{len(per_image)} images (worst: {worst[metric]})", {metric: value})
    worst_images = sorted(per_image, key=lambda m: (m.recall, m.precision, m.mean_iou,
                                                    -m.max_score_delta))[:5]
    conformance_report.record(
        device_spec.id, "detections", rows,
        {**pooled, "images": len(per_image), "reference_faces": ref_n, "device_faces": dev_n,
         "worst_images": [m.to_dict() for m in worst_images]}, test=request.node.nodeid)
    failed = [r.message for r in rows if not r.passed]
    assert not failed, f"{device_spec.id}: detection gates failed:\n" + "\n".join(failed)


def test_no_score_collapse(device_spec, device_run, reference_run, gates, conformance_report,
                           request):
    """The known int8 failure: every face's score falls under the threshold."""
    floor = gates.value(device_spec.dtype, "detections", "score_floor")
    keys = list(device_run.detections)
    ref_n = count_above([reference_run.detections[k] for k in keys], floor)
    dev_n = count_above([device_run.detections[k] for k in keys], floor)
    top = max((float(d.scores.max(initial=0.0)) for d in device_run.detections.values()), default=0.0)
    ratio = dev_n / ref_n if ref_n else 1.0
    rows = gates.check(device_spec.dtype, "detections",
                       f"faces >= {floor}: device {dev_n} vs reference {ref_n}, top device "
                       f"score {top:.3f}", {"collapse_ratio": ratio})
    conformance_report.record(device_spec.id, "collapse", rows,
                              {"device_faces": dev_n, "reference_faces": ref_n, "ratio": ratio,
                               "top_device_score": top}, test=request.node.nodeid)
    assert np.isfinite(ratio)
    failed = [r.message for r in rows if not r.passed]
    assert not failed, f"{device_spec.id}: score collapse:\n" + "\n".join(failed)
