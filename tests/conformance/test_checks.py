"""The conformance checks never pass by default (synthetic runs, no data needed).

Three verdicts. Images that hold nothing to measure (zero images, no reference face above
the floor, no foreground anchor on a stride, no face in a size bucket, a reference AP of
0) make the gates that read those metrics **inconclusive**, saying what the images lack;
a device that lacks what the reference has (landmark heads, a match for a face the
reference found) **fails**; an AP gate judged on an interval passes or fails only when
the whole interval is on one side. A device that declares itself landmark-free, or a
model without landmarks, gets an explicit "not applicable" row.
"""
from __future__ import annotations

import numpy as np

from scrfd_ref.conformance.checks import (
    check_anchors,
    check_ap,
    check_buckets,
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


def _gates_judging_ap_on_one_image(tmp_path) -> Gates:
    """The shipped gates with ``min_images = 1``: the AP arithmetic on one-image sets."""
    f = tmp_path / "one.toml"
    f.write_text("".join(f"[{d}.ap]\nmin_images = {{ value = 1, why = 'unit test' }}\n"
                         for d in ("fp32", "fp16")))
    return Gates.load(f)


def _dets(boxes, scores, landmarks=True) -> Detections:
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    lm = np.zeros((len(b), 5, 2), np.float32) + b[:, None, :2] if landmarks else None
    return Detections(b, np.asarray(scores, np.float32), lm)


def _run(dets: dict, heads: dict | None = None) -> Run:
    return Run("d", {}, {}, dets, heads or {})


FACE = [[10, 10, 60, 60]]


def test_zero_images_pass_no_detection_gate():
    rows = check_detections(_run({}), _run({}), GATES, "fp16").rows
    assert rows and not any(r.passed for r in rows if r.gate != "landmark_err_px_max")
    assert all("not measured" in r.note for r in rows if not r.passed)
    assert check_collapse(_run({}), _run({}), GATES, "fp16").verdict == "inconclusive"


def test_no_reference_face_above_the_floor_is_inconclusive_not_a_pass():
    ref = _run({"e/a": _dets(FACE, [0.1])})
    dev = _run({"e/a": _dets(FACE, [0.1])})
    res = check_detections(ref, dev, GATES, "int8")
    assert res.verdict == "inconclusive" and not res.failed_gates
    undecided = {r.gate for r in res.rows if r.inconclusive}
    assert {"recall_min", "precision_min", "mean_iou_min"} <= undecided
    row = next(r for r in res.rows if r.gate == "recall_min")
    assert "no reference face scored >= 0.5 among these 1 images; add images with faces" in \
        row.message and row.message.startswith("INCONCLUSIVE")
    assert check_collapse(ref, dev, GATES, "int8").verdict == "inconclusive"


def test_faces_the_device_adds_where_the_reference_has_none_fail_precision():
    """Nothing to find is no excuse for inventing faces: precision is measured and fails."""
    ref = _run({"e/a": _dets(FACE, [0.1])})
    dev = _run({"e/a": _dets(FACE, [0.95])})
    res = check_detections(ref, dev, GATES, "int8")
    assert res.verdict == "fail" and "precision_min" in res.failed_gates


def test_a_device_that_finds_nothing_the_reference_found_fails():
    ref = _run({"e/a": _dets(FACE, [0.9])})
    dev = _run({"e/a": _dets([], [])})
    res = check_detections(ref, dev, GATES, "fp16")
    assert res.verdict == "fail"
    assert {"recall_min", "mean_iou_min"} <= res.failed_gates


def test_a_bucket_without_faces_is_inconclusive_naming_the_stride():
    """One 50 px face (the stride-16 bucket): strides 8 and 32 cannot be judged."""
    ref = _run({"e/a": _dets(FACE, [0.9])})
    res = check_buckets(ref, ref, GATES, "fp16")
    assert res.verdict == "inconclusive" and not res.failed_gates
    s32 = [r for r in res.rows if r.subject.startswith("bucket s32")]
    assert s32 and all(r.inconclusive for r in s32)
    assert "stride 32 not measured; add images with large faces" in s32[0].message
    s8 = [r for r in res.rows if r.subject.startswith("bucket s8")]
    assert all(r.inconclusive for r in s8) and "add images with small faces" in s8[0].message
    s16 = {r.gate: r for r in res.rows if r.subject.startswith("bucket s16")}
    assert s16["bucket_recall_min"].passed and s16["bucket_mean_iou_min"].passed
    # one face cannot show a scale bias: its interval is unbounded
    assert s16["bucket_log_scale_mean_max"].inconclusive


def _faces(n: int, scale: float, noise: float, seed: int = 0):
    """``n`` 100 px faces (bucket s16) in one image, and the device's boxes scaled by
    ``scale`` times a per-face jitter of ``noise`` (relative)."""
    rng = np.random.default_rng(seed)
    x = np.arange(n, dtype=np.float32) * 150
    ref = np.stack([x, x * 0, x + 100, x * 0 + 100], axis=1)
    s = scale * (1 + noise * rng.standard_normal((n, 1))).astype(np.float32)
    dev = np.concatenate([ref[:, :2], ref[:, :2] + 100 * s], axis=1)
    scores = [0.9] * n
    return _run({"e/a": _dets(ref, scores)}), _run({"e/a": _dets(dev, scores)})


def test_a_scale_bias_on_few_faces_decides_only_when_it_stands_out():
    """The bucket scale bias is judged on its Student-t interval over the matched faces:
    a stride 15% too large fails on 3 faces, a 0.4% bias with 0.5% jitter (rounding
    noise of a lower precision) is inconclusive on 3 faces and passes on 60."""
    def verdict(n, scale, noise):
        res = check_buckets(*_faces(n, scale, noise), GATES, "fp16")
        return next(r for r in res.rows if r.subject.startswith("bucket s16")
                    and r.gate == "bucket_log_scale_mean_max")
    assert verdict(3, 1.15, 0.005).failed
    few = verdict(3, 1.004, 0.005)
    assert few.inconclusive and few.interval[0] < 0.005 < few.interval[1]
    assert verdict(60, 1.0, 0.001).passed


def _heads(score32: float) -> Heads:
    """Half the anchors of strides 8 and 16 foreground; stride 32's scored ``score32``
    but for one background anchor."""
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    half = lambda n, v: np.where(np.arange(n) % 2 == 0, v, 0.01)[None].astype(np.float32)  # noqa: E731
    s32 = np.full((1, 8), score32, np.float32)
    s32[0, -1] = 0.01
    scores = (half(128, 0.9), half(32, 0.9), s32)
    return Heads("standard", (64, 64), scores, (z(1, 128, 4) + 1, z(1, 32, 4) + 1, z(1, 8, 4) + 1),
                 (z(1, 128, 10) + 1, z(1, 32, 10) + 1, z(1, 8, 10) + 1))


def test_a_stride_without_foreground_anchors_is_inconclusive():
    ref = _run({}, {"e/a": _heads(0.01)})
    res = check_anchors(ref, ref, GATES, "fp32")
    assert res.verdict == "inconclusive" and not res.failed_gates
    row = next(r for r in res.rows if r.inconclusive)
    assert row.subject.startswith(("score_32", "bbox_32", "kps_32"))
    assert "no anchor of stride 32 scores >= 0.3 in the reference among these 1 head images" \
        in row.message
    # the same images with a foreground on every stride decide every gate
    assert check_anchors(_run({}, {"e/a": _heads(0.9)}), _run({}, {"e/a": _heads(0.9)}),
                         GATES, "fp32").verdict == "pass"


class _Interval:
    def __init__(self, low, high):
        self.low, self.high = low, high


class _Comparison:
    def __init__(self, ratio, delta):
        self.ratio_interval, self.delta_interval = _Interval(*ratio), _Interval(*delta)


class _Paired:
    """A stand-in for a paired bootstrap: every setting with the given intervals."""

    def __init__(self, ratio, delta):
        self.settings = ("easy", "medium", "hard")
        self.confidence, self.resamples, self.seed, self.images = 0.95, 1000, 0, 10
        self._c = _Comparison(ratio, delta)

    def __getitem__(self, setting):
        return self._c


def _ap_results():
    gt = GroundTruth(("1--A",), (make_image("1--A", "a", [[0, 0, 10, 10]],
                                            {s: [0] for s in ("easy", "medium", "hard")}),))
    found = evaluate({("1--A", "a"): np.array([[0, 0, 10, 10, 0.9]])}, gt)
    return found, found


def test_an_ap_gate_passes_or_fails_only_on_the_whole_interval(tmp_path):
    GATES = _gates_judging_ap_on_one_image(tmp_path)  # noqa: N806 - the module's name
    ref, dev = _ap_results()     # equal APs: the point estimates pass every AP gate
    limit = GATES.value("fp16", "ap", "ratio_min")                  # 0.997
    inside = check_ap(ref, dev, GATES, "fp16", paired=_Paired((0.998, 1.001), (-1e-3, 1e-3)))
    assert inside.verdict == "pass"
    below = check_ap(ref, dev, GATES, "fp16", paired=_Paired((0.98, 0.99), (-0.01, -0.005)))
    assert below.verdict == "fail" and {"ratio_min", "abs_delta_max"} <= below.failed_gates
    straddling = check_ap(ref, dev, GATES, "fp16", paired=_Paired((0.99, 1.004), (-1e-3, 1e-3)))
    row = next(r for r in straddling.rows if r.gate == "ratio_min")
    assert straddling.verdict == "inconclusive" and row.inconclusive
    assert row.interval == (0.99, 1.004) and row.value == 1.0
    # half-width 0.01 on the limit's side at distance 0.003 from it, 1 image: 12 images
    assert row.images_to_decide == int(np.ceil(1 * (0.01 / (1.0 - limit)) ** 2))
    assert "about 12 images would decide it" in row.message
    assert straddling.metrics["intervals"]["easy"]["ratio"] == [0.99, 1.004]


def test_an_ap_over_too_few_images_is_inconclusive_even_with_a_zero_width_interval():
    """The issue's case: 4 images of an fp32 replay, every resample the same AP, a
    zero-width interval [1, 1] shown as a green PASS. Below the AP gates' min_images the
    rows are inconclusive and say why."""
    ref, dev = _ap_results()
    res = check_ap(ref, dev, GATES, "fp16", paired=_Paired((1.0, 1.0), (0.0, 0.0)))
    assert res.verdict == "inconclusive" and all(r.inconclusive for r in res.rows)
    need = int(GATES.value("fp16", "ap", "min_images"))
    assert need > 1
    assert f"only 1 images: an AP over fewer than {need} means little" in res.rows[0].message


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


def test_a_reference_ap_of_zero_leaves_the_ratio_undecided(tmp_path):
    GATES = _gates_judging_ap_on_one_image(tmp_path)  # noqa: N806 - the module's name
    gt = GroundTruth(("1--A",), (make_image("1--A", "a", [[0, 0, 10, 10]],
                                            {s: [0] for s in ("easy", "medium", "hard")}),))
    nothing = evaluate({("1--A", "a"): np.zeros((0, 5))}, gt)
    res = check_ap(nothing, nothing, GATES, "fp32")
    ratio = [r for r in res.rows if r.gate == "ratio_min"]
    assert ratio and all(r.inconclusive for r in ratio)
    assert "the reference finds none of the 1 easy faces" in ratio[0].message


def test_worst_images_rank_by_mismatch_and_never_list_empty_or_perfect_images():
    ref = _dets(FACE + [[100, 100, 150, 150]], [0.9, 0.8])
    matches = [compare_detections("both-missed", ref, _dets([], [])),
               compare_detections("perfect", ref, ref),
               compare_detections("empty", _dets([], []), _dets([], [])),
               compare_detections("one-missed", ref, _dets(FACE, [0.9]))]
    assert [m.image for m in worst_images(matches)] == ["both-missed", "one-missed"]
    assert mismatch(matches[0]) == 2 and mismatch(matches[1]) == 0
