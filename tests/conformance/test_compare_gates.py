"""Comparators and gates against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from scrfd_ref.conformance.compare import compare_detections, compare_heads, count_above
from scrfd_ref.conformance.gates import DTYPES, Gates
from scrfd_ref.core.detections import Detections
from scrfd_ref.core.errors import InputError
from scrfd_ref.core.heads import Heads


def _heads(score, box_scale=1.0, input_size=(32, 32)):
    """Tiny heads at a 32x32 input: N = 8, 2, 2 anchors per stride (4x4/2x2/1x1 cells x 2)."""
    ns = [(input_size[1] // s) * (input_size[0] // s) * 2 for s in (8, 16, 32)]
    scores = tuple(np.full((1, n), score, np.float32) for n in ns)
    boxes = tuple(np.full((1, n, 4), 2.0 * box_scale, np.float32) for n in ns)
    return Heads("standard", input_size, scores, boxes, None)


def test_head_stats_by_hand():
    ref, dev = _heads(0.5), _heads(0.5, box_scale=1.5)
    stats = {s.name: s for s in compare_heads([("img", ref, 0, dev, 0)], atol=0.5, rtol=0.0)}
    assert set(stats) == {"score_8", "score_16", "score_32", "bbox_8", "bbox_16", "bbox_32"}
    s = stats["score_8"]
    assert s.cosine == pytest.approx(1.0, abs=1e-12) and s.snr_db == math.inf and s.max_abs == 0 and s.within_tol == 1.0
    b = stats["bbox_8"]  # ref 2, dev 3 everywhere: cosine 1, error 1, SNR 10 log10(4/1)
    assert b.cosine == pytest.approx(1.0) and b.max_abs == 1.0 and b.mean_abs == 1.0
    assert b.snr_db == pytest.approx(10 * math.log10(4.0))
    assert b.within_tol == 0.0 and b.worst_image == "img"


def test_head_stats_count_nonfinite_and_shape_mismatch():
    ref = _heads(0.5)
    dev = _heads(0.5)
    dev.boxes[1][0, 0, 0] = np.nan
    stats = {s.name: s for s in compare_heads([("a", ref, 0, dev, 0)], 1e-3, 0)}
    assert stats["bbox_16"].nonfinite == 1 and stats["bbox_16"].max_abs == math.inf
    other = _heads(0.5, input_size=(64, 32))
    stats = {s.name: s for s in compare_heads([("b", ref, 0, other, 0)], 1e-3, 0)}
    assert not stats["score_8"].shape_ok


def _dets(boxes, scores):
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32), None)


def test_detection_matching_by_hand():
    ref = _dets([[0, 0, 9, 9], [20, 20, 29, 29], [50, 50, 59, 59]], [0.9, 0.8, 0.52])
    # first box shifted by 1 px: +1 IoU = (9*10)/(100+100-90) = 90/110; second missing;
    # one extra device box; third just under the floor (0.49) on the device side
    dev = _dets([[1, 0, 10, 9], [80, 80, 89, 89], [50, 50, 59, 59]], [0.85, 0.7, 0.49])
    m = compare_detections("img", ref, dev, floor=0.5, margin=0.02)
    # recall counts ref >= 0.52: boxes 0, 1, 2 -> box 0 and box 2 (device 0.49 >= 0.48) found
    assert m.ref_count == 3 and m.recall == pytest.approx(2 / 3) and m.missed == [1]
    # precision counts device >= 0.52: boxes 0 and 1 -> only box 0 matched
    assert m.dev_count == 2 and m.precision == pytest.approx(1 / 2)
    assert m.mean_iou == pytest.approx((90 / 110 + 1.0) / 2, rel=1e-6)
    assert m.max_score_delta == pytest.approx(0.05, abs=1e-6)
    assert count_above([ref, dev], 0.5) == 3 + 2


def test_committed_gates_cover_every_check():
    g = Gates.load()
    for dtype in DTYPES:
        for name in ("atol", "rtol", "cosine_min", "snr_db_min", "within_tol_min",
                     "nonfinite_max", "shape_ok_min"):
            assert g.get(dtype, "heads", name).why
        for name in ("score_floor", "score_margin", "iou_match", "recall_min", "precision_min",
                     "mean_iou_min", "max_score_delta_max", "landmark_err_px_max",
                     "collapse_ratio_min"):
            assert g.get(dtype, "detections", name).why
        for name in ("abs_delta_max", "ratio_min"):
            assert g.get(dtype, "ap", name).why
    # looser precision, looser gates
    assert g.value("fp32", "ap", "abs_delta_max") < g.value("fp16", "ap", "abs_delta_max") \
        < g.value("int8", "ap", "abs_delta_max")


def test_gate_check_semantics():
    g = Gates.load()
    rows = g.check("fp16", "ap", "easy", {"abs_delta": 0.01, "ratio": float("nan")})
    by = {r.gate: r for r in rows}
    assert not by["abs_delta_max"].passed and "easy" in by["abs_delta_max"].message
    assert not by["ratio_min"].passed, "NaN never passes"
    assert g.check("fp16", "ap", "x", {"abs_delta": 0.0, "ratio": 1.0})[0].passed


@pytest.mark.parametrize("text, match", [
    ("[fp32.heads]\ncosine_min = 0.9\n", "needs"),
    ("[fp99.heads]\n", "unknown section"),
    ("[fp32.bogus]\n", "unknown level"),
    ("[fp32.heads\n", "not valid TOML"),
    ("[fp32.heads]\ncosin_min = { value = 0.9, why = 'x' }\n",
     r"\[fp32.heads\] cosin_min: unknown gate; did you mean cosine_min\?"),
    ("[fp32.heads]\ncosine_min = { value = 'high', why = 'x' }\n", "must be a number, got str"),
    ("[fp32.heads]\ncosine_min = { value = true, why = 'x' }\n", "must be a number, got bool"),
    ("[fp32.heads]\ncosine_min = { value = 1.5, why = 'x' }\n", "outside -1 .. 1"),
    ("[fp32.heads]\nnonfinite_max = { value = 0.5, why = 'x' }\n", "whole number"),
    ("[fp32.heads]\ncosine_min = { value = 0.9 }\n", "justification"),
    ("[fp32.heads]\ncosine_min = { value = 0.9, why = 'x', unit = 'dB' }\n", "unknown key"),
    ("[meta]\nversoin = 1\n", "did you mean version"),
])
def test_bad_gates_files(tmp_path, text, match):
    p = tmp_path / "g.toml"
    p.write_text(text)
    with pytest.raises(InputError, match=match):
        Gates.load(p)
    with pytest.raises(InputError, match="not found"):
        Gates.load(tmp_path / "missing.toml")


def test_every_problem_of_a_gates_file_is_listed(tmp_path):
    p = tmp_path / "g.toml"
    p.write_text("[fp32.heads]\ncosin_min = { value = 0.9, why = 'x' }\n"
                 "snr_db_min = { value = 'high', why = 'x' }\n[int8.detections]\n"
                 "recal_min = { value = 0.9, why = 'x' }\n")
    with pytest.raises(InputError) as info:
        Gates.load(p)
    msg = str(info.value)
    assert "3 problems" in msg and "cosine_min?" in msg and "recall_min?" in msg
    assert str(p) in msg


def test_gates_left_out_take_the_defaults_and_are_named(tmp_path):
    p = tmp_path / "g.toml"
    p.write_text("[int8.heads]\ncosine_min = { value = 0.95, why = 'tighter' }\n")
    g = Gates.load(p)
    default = Gates.load()
    assert g.value("int8", "heads", "cosine_min") == 0.95
    assert g.value("fp16", "heads", "cosine_min") == default.value("fp16", "heads", "cosine_min")
    assert "int8.heads.cosine_min" not in g.defaulted
    assert "fp16.heads.cosine_min" in g.defaulted and "int8.ap.ratio_min" in g.defaulted
    assert "leaves out" in g.notice() and default.notice() is None


def test_a_gate_without_a_measured_metric_fails():
    g = Gates.load()
    rows = g.check("int8", "detections", "10 images", {"recall": 1.0, "precision": 1.0})
    by = {r.gate: r for r in rows}
    assert by["recall_min"].passed
    missing = by["landmark_err_px_max"]
    assert not missing.passed and "not measured" in missing.message
    assert {"mean_iou_min", "max_score_delta_max"} <= {r.gate for r in rows if not r.passed}


def test_every_declared_gate_is_read_by_a_check_and_has_a_default():
    from scrfd_ref.conformance.gates import DECLARED, GROUPS

    g = Gates.load()
    for spec in DECLARED:
        assert spec.group in GROUPS
        for dtype in DTYPES:
            assert g.get(dtype, spec.level, spec.name).why
