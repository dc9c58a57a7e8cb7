"""The conformance checks never pass by default (synthetic runs, no data needed).

A comparison over zero images, zero reference faces or zero matched pairs, a device that
lacks the landmark heads the reference has, and a reference AP of 0 leave metrics
unmeasured, and the gates that read them fail saying so. A device that declares itself
landmark-free, or a model without landmarks, gets an explicit "not applicable" row.
"""
from __future__ import annotations

import numpy as np

from scrfd_ref.conformance.checks import (
    check_ap,
    check_collapse,
    check_detections,
    check_heads,
    mismatch,
    worst_images,
)
from scrfd_ref.conformance.compare import compare_detections
from scrfd_ref.conformance.gates import Gates
from scrfd_ref.conformance.runs import Run
from scrfd_ref.core.detections import Detections
from scrfd_ref.core.heads import Heads
from scrfd_ref.formats.ground_truth import GroundTruth, make_image
from scrfd_ref.widerface.evaluate import evaluate

GATES = Gates.load()


def _dets(boxes, scores, landmarks=True) -> Detections:
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    lm = np.zeros((len(b), 5, 2), np.float32) + b[:, None, :2] if landmarks else None
    return Detections(b, np.asarray(scores, np.float32), lm)


def _run(dets: dict, heads: dict | None = None) -> Run:
    return Run("d", {}, {}, dets, heads or {})


FACE = [[10, 10, 60, 60]]


def test_zero_images_fail_every_detection_gate():
    rows = check_detections(_run({}), _run({}), GATES, "fp16").rows
    assert rows and not any(r.passed for r in rows if r.gate != "landmark_err_px_max")
    assert all("not measured" in r.note for r in rows if not r.passed)
    assert not check_collapse(_run({}), _run({}), GATES, "fp16").passed


def test_no_reference_face_above_the_floor_fails_recall():
    ref = _run({"e/a": _dets(FACE, [0.1])})
    dev = _run({"e/a": _dets(FACE, [0.1])})
    res = check_detections(ref, dev, GATES, "int8")
    failed = res.failed_gates
    assert {"recall_min", "precision_min", "mean_iou_min"} <= failed
    assert not check_collapse(ref, dev, GATES, "int8").passed


def test_a_device_without_the_reference_landmarks_fails():
    ref = _run({"e/a": _dets(FACE, [0.9])})
    dev = _run({"e/a": _dets(FACE, [0.9], landmarks=False)})
    res = check_detections(ref, dev, GATES, "fp16")
    assert res.failed_gates == {"landmark_err_px_max"}
    row = next(r for r in res.rows if r.gate == "landmark_err_px_max")
    assert "not measured" in row.message


def test_a_declared_landmark_free_device_gets_a_not_applicable_row():
    ref = _run({"e/a": _dets(FACE, [0.9])})
    dev = _run({"e/a": _dets(FACE, [0.9], landmarks=False)})
    res = check_detections(ref, dev, GATES, "fp16", landmark_free=True)
    assert res.passed
    row = next(r for r in res.rows if r.gate == "landmark_err_px_max")
    assert row.passed and "not applicable: the device declares itself landmark-free" in row.message


def test_a_model_without_landmarks_gets_a_not_applicable_row():
    ref = _run({"e/a": _dets(FACE, [0.9], landmarks=False)})
    dev = _run({"e/a": _dets(FACE, [0.9], landmarks=False)})
    res = check_detections(ref, dev, GATES, "fp32")
    assert res.passed and "the model has no landmark heads" in res.rows[-1].message


def test_an_honest_device_passes_and_a_shifted_one_fails():
    ref = _run({"e/a": _dets(FACE, [0.9]), "e/b": _dets([[100, 100, 140, 150]], [0.8])})
    assert check_detections(ref, ref, GATES, "fp32").passed
    shifted = _run({"e/a": _dets([[14, 10, 64, 60]], [0.9]), "e/b": ref.detections["e/b"]})
    assert "mean_iou_min" in check_detections(ref, shifted, GATES, "fp32").failed_gates


def test_no_head_image_in_common_fails_every_head_gate():
    res = check_heads(_run({}), _run({}), GATES, "fp32")
    assert res.rows and not any(r.passed for r in res.rows)


def test_a_missing_head_fails_shape_ok():
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    full = Heads("standard", (64, 64), (z(1, 128), z(1, 32), z(1, 8)),
                 (z(1, 128, 4), z(1, 32, 4), z(1, 8, 4)), (z(1, 128, 10), z(1, 32, 10), z(1, 8, 10)))
    no_kps = Heads("standard", (64, 64), full.scores, full.boxes, None)
    res = check_heads(_run({}, {"e/a": full}), _run({}, {"e/a": no_kps}), GATES, "fp32")
    bad = {r.subject.split()[0] for r in res.rows if not r.passed}
    assert bad == {"kps_8", "kps_16", "kps_32"}


def test_a_reference_ap_of_zero_leaves_the_ratio_unmeasured():
    gt = GroundTruth(("1--A",), (make_image("1--A", "a", [[0, 0, 10, 10]],
                                            {s: [0] for s in ("easy", "medium", "hard")}),))
    nothing = evaluate({("1--A", "a"): np.zeros((0, 5))}, gt)
    res = check_ap(nothing, nothing, GATES, "fp32")
    assert "ratio_min" in res.failed_gates


def test_worst_images_rank_by_mismatch_and_never_list_empty_or_perfect_images():
    ref = _dets(FACE + [[100, 100, 150, 150]], [0.9, 0.8])
    matches = [compare_detections("both-missed", ref, _dets([], [])),
               compare_detections("perfect", ref, ref),
               compare_detections("empty", _dets([], []), _dets([], [])),
               compare_detections("one-missed", ref, _dets(FACE, [0.9]))]
    assert [m.image for m in worst_images(matches)] == ["both-missed", "one-missed"]
    assert mismatch(matches[0]) == 2 and mismatch(matches[1]) == 0
