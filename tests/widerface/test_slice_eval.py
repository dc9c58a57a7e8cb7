"""Per-slice evaluation of WIDER FACE (``scrfd_ref.widerface.slices`` / ``.slice_eval``).

Independent references:

* **the slices' faces**: computed here with numpy from the arrays the synthetic ground truth
  was built from (hard-counted AND label value, or hard-counted AND height range), never from
  the package's slice members;
* **the slice AP**: the literal oracle ``tests/helpers/wider_oracle.py`` (a transcription of
  the official protocol) run with the slice's faces (computed here) as the counted setting;
* **the recall at the operating point**: the oracle's final recall (threshold 0) on the
  predictions filtered to ``score >= operating score``. Valid because filtering keeps a
  prefix of each image's score-sorted predictions, so the greedy matching of the kept ones
  is unchanged;
* **paired**: a set against itself gives exactly 0 deltas and [0, 0] intervals; the
  Bonferroni interval is checked against a hand computation with
  ``statistics.NormalDist`` and the family size against the numpy face counts;
* **the command**: ``scrfd-ref eval --by attribute --compare`` on a synthetic ``.mat``
  ground truth written with scipy, its JSON ``slices`` entry against ``evaluate_slices`` of
  both folders (itself checked against the oracle above) and against the oracle directly on
  two slices.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
import scipy.io
import wider_oracle as oracle
from wider_synth import noisy_predictions

from scrfd_ref.core.errors import UsageError
from scrfd_ref.formats.ground_truth import GroundTruth, make_image
from scrfd_ref.widerface.bootstrap import Interval
from scrfd_ref.widerface.slice_eval import (
    corrected_interval,
    evaluate_slices,
    found_per_image,
    paired_slices,
    slice_matching,
)
from scrfd_ref.widerface.slices import SLICE_NAMES, require_attributes, slice_ground_truth

LABELS = {"blur": (0.3, 0.3, 0.4), "expression": (0.85, 0.15), "illumination": (0.8, 0.2),
          "invalid": (0.95, 0.05), "occlusion": (0.5, 0.25, 0.25), "pose": (0.8, 0.2)}
VALUES = {"blur": ("clear", "normal", "heavy"), "expression": ("typical", "exaggerated"),
          "illumination": ("normal", "extreme"), "occlusion": ("none", "partial", "heavy"),
          "pose": ("typical", "atypical")}
SCALES = {"small": (0, 50), "medium": (50, 300), "large": (300, math.inf)}
#: every slice, written out here (the paper's values, the WIDER label names)
ALL_SLICES = [f"{a}={v}" for a, vs in VALUES.items() for v in vs] + \
    [f"scale={s}" for s in SCALES]


# --------------------------------------------------------------------------- synthetic data

class Synth:
    """A synthetic labelled ground truth and the raw arrays it was built from."""

    def __init__(self, n: int, seed: int, max_faces: int = 9):
        rng = np.random.default_rng(seed)
        self.raw = []      # per image: (event, name, boxes, labels, hard mask)
        imgs = []
        for i in range(n):
            k = int(rng.integers(1, max_faces))
            w = np.exp(rng.uniform(np.log(6), np.log(420), k))
            h = w * rng.uniform(1.0, 1.3, k)
            b = np.column_stack([rng.uniform(0, 1000, k), rng.uniform(0, 700, k), w, h]).round(1)
            labels = {a: rng.choice(len(p), size=k, p=p) for a, p in LABELS.items()}
            hard = (labels["invalid"] == 0) & (b[:, 3] >= 10)
            counted = {"easy": np.flatnonzero(hard & (b[:, 3] >= 40)),
                       "medium": np.flatnonzero(hard & (b[:, 3] >= 20)),
                       "hard": np.flatnonzero(hard)}
            ev, name = f"{i % 3}--Ev", f"img_{i}"
            self.raw.append((ev, name, b, labels, hard))
            imgs.append(make_image(ev, name, b, counted, labels))
        imgs.sort(key=lambda im: im.event)
        self.raw.sort(key=lambda r: r[0])
        self.gt = GroundTruth(events=tuple(dict.fromkeys(im.event for im in imgs)),
                              images=tuple(imgs), source="<synthetic>")

    def members(self, slice_name: str, labels: dict, boxes: np.ndarray) -> np.ndarray:
        attr, value = slice_name.split("=")
        if attr == "scale":
            lo, hi = SCALES[value]
            return (boxes[:, 3] >= lo) & (boxes[:, 3] < hi)
        return labels[attr] == VALUES[attr].index(value)

    def counted(self, slice_name: str) -> dict[tuple[str, str], np.ndarray]:
        """(event, name) -> the slice's faces (0-based), computed from the raw arrays."""
        return {(ev, name): np.flatnonzero(hard & self.members(slice_name, labels, b))
                for ev, name, b, labels, hard in self.raw}

    def faces(self, slice_name: str) -> int:
        return int(sum(v.size for v in self.counted(slice_name).values()))

    def oracle_gt(self, slice_name: str) -> oracle.OracleGT:
        c = self.counted(slice_name)
        images = tuple(oracle.OracleImage(ev, name, np.array(b, dtype=np.float64),
                                          {slice_name: c[(ev, name)].tolist()})
                       for ev, name, b, _, _ in self.raw)
        return oracle.OracleGT(tuple(dict.fromkeys(ev for ev, *_ in self.raw)), images)


def oracle_slice(synth: Synth, preds: dict, slice_name: str) -> tuple[float, float, int]:
    """(AP, final recall, faces) of the official protocol with the slice's faces counted."""
    ogt = synth.oracle_gt(slice_name)
    norm = oracle.norm_score(oracle.read_pred(ogt, preds))
    pr, _, faces = oracle.evaluation(norm, ogt, slice_name)
    return float(oracle.voc_ap(pr[:, 1], pr[:, 0])), float(pr[-1, 1]), faces


def above(preds: dict, score: float) -> dict:
    return {k: a[a[:, 4] >= score] for k, a in preds.items()}


@pytest.fixture(scope="module")
def small():
    """20 images, every slice with faces (asserted), for the oracle comparisons."""
    s = Synth(20, seed=3)
    assert all(s.faces(n) > 0 for n in ALL_SLICES), {n: s.faces(n) for n in ALL_SLICES}
    return s


@pytest.fixture(scope="module")
def medium():
    return Synth(120, seed=11)


# --------------------------------------------------------------------------- the slices

def test_the_slices_are_the_twelve_label_values_and_the_three_scales():
    assert sorted(SLICE_NAMES) == sorted(ALL_SLICES) and len(SLICE_NAMES) == 15
    assert not any(n.startswith("invalid=") for n in SLICE_NAMES)


def test_counted_faces_are_hard_and_in_the_slice(medium):
    sg = slice_ground_truth(medium.gt)
    assert sorted(sg.settings) == sorted(ALL_SLICES)
    assert sg.keys() == medium.gt.keys()
    for name in ALL_SLICES:
        want = medium.counted(name)
        for img in sg.images:
            assert img.counted[name].tolist() == want[img.key].tolist(), (name, img.key)
        assert sg.num_counted(name) == medium.faces(name)
    # the three scales and the values of each attribute partition the hard faces
    hard = sum(int(h.sum()) for *_, h in medium.raw)
    for attr in ("scale", *VALUES):
        assert sum(sg.num_counted(n) for n in ALL_SLICES if n.startswith(attr + "=")) == hard
    assert medium.faces("scale=large") > 20   # the synthetic set has large faces


def test_scale_edges_and_the_operating_score_are_inclusive():
    """The paper's edges: small < 50 px <= medium < 300 px <= large; a detection scored
    exactly the operating score counts."""
    heights = [9.0, 49.9, 50.0, 299.9, 300.0, 640.0]
    boxes = np.array([[100.0 * i, 10, 20, h] for i, h in enumerate(heights)])
    labels = {a: [0] * len(heights) for a in LABELS}
    gt = GroundTruth(events=("e",), images=(make_image("e", "a", boxes, {
        "easy": [], "medium": [], "hard": range(len(heights))}, labels),), source="<edges>")
    sg = slice_ground_truth(gt)
    img = sg.images[0]
    assert img.counted["scale=small"].tolist() == [0, 1]
    assert img.counted["scale=medium"].tolist() == [2, 3]
    assert img.counted["scale=large"].tolist() == [4, 5]
    # one exact detection per face, scored 0.5 on the 300 px face, just under on the 640
    preds = {("e", "a"): np.column_stack([boxes, [0.9, 0.9, 0.9, 0.9, 0.5, 0.4999]])}
    ev = evaluate_slices(preds, gt, operating_score=0.5)
    assert ev["scale=large"].recall == 0.5
    assert ev["scale=small"].recall == ev["scale=medium"].recall == 1.0
    assert ev["blur=clear"].recall == 5 / 6


def test_a_ground_truth_without_attributes_or_hard_is_refused():
    boxes = np.array([[0, 0, 20, 20]], float)
    plain = GroundTruth(events=("e",), images=(make_image("e", "a", boxes, {"hard": [0]}),),
                        source="plain.txt")
    for call in (require_attributes, slice_ground_truth,
                 lambda gt: evaluate_slices({("e", "a"): np.zeros((0, 5))}, gt)):
        with pytest.raises(UsageError, match=r"plain\.txt: has no face attributes"):
            call(plain)
    labels = {a: [0] for a in LABELS}
    no_hard = GroundTruth(events=("e",), images=(make_image("e", "a", boxes, {"all": [0]},
                                                            labels),),
                          settings=("all",), source="all.txt")
    with pytest.raises(UsageError, match=r"all\.txt: has no 'hard' setting"):
        require_attributes(no_hard)


# --------------------------------------------------------------------------- one set

def test_slice_ap_and_recall_equal_the_oracle(small):
    preds = noisy_predictions(small.gt, 1)
    op = 0.5
    ev = evaluate_slices(preds, small.gt, operating_score=op)
    assert ev.slices == tuple(SLICE_NAMES) and ev.images == 20
    for name in ALL_SLICES:
        ap, _, faces = oracle_slice(small, preds, name)
        _, recall, _ = oracle_slice(small, above(preds, op), name)
        row = ev[name]
        assert row.faces == faces == small.faces(name), name
        assert abs(row.ap - ap) <= 1e-12, (name, row.ap, ap)
        assert abs(row.recall - recall) <= 1e-12, (name, row.recall, recall)
    assert any(0 < ev[n].recall < 1 for n in ALL_SLICES)   # the recall is not trivial


def test_recall_at_another_operating_score(small):
    preds = noisy_predictions(small.gt, 4)
    ev = evaluate_slices(preds, small.gt, operating_score=0.8)
    for name in ("blur=heavy", "scale=small", "pose=atypical"):
        _, recall, faces = oracle_slice(small, above(preds, 0.8), name)
        assert ev[name].recall == pytest.approx(recall, abs=1e-12)
        assert ev[name].to_dict()["faces"] == faces


def test_found_per_image_counts_each_face_once(small):
    preds = noisy_predictions(small.gt, 1)
    m = slice_matching(preds, small.gt)
    found = found_per_image(m, 0.0)
    for name in ALL_SLICES:
        faces = np.array([small.counted(name)[k].size for k in m.keys])
        assert (found[name] <= faces).all()
    for name in ("blur=normal", "occlusion=heavy", "scale=medium"):
        _, recall, total = oracle_slice(small, preds, name)
        assert found[name].sum() == round(recall * total)


# --------------------------------------------------------------------------- paired

def test_a_set_paired_with_itself_has_zero_deltas_and_zero_intervals(small):
    preds = noisy_predictions(small.gt, 5)
    p = paired_slices(preds, preds, small.gt, resamples=200, seed=1, min_faces=1)
    assert p.family == 30
    for name in ALL_SLICES:
        c = p[name]
        assert c.ap_delta == 0 and c.recall_delta == 0, name
        for iv in (c.ap_interval, c.recall_interval, c.ap_corrected, c.recall_corrected):
            assert (iv.low, iv.high) == (0.0, 0.0), (name, iv)


def test_corrected_intervals_hold_the_plain_ones_and_the_family_counts_judged_slices(medium):
    a = noisy_predictions(medium.gt, 6)
    rng = np.random.default_rng(0)
    b = {k: v[rng.random(len(v)) >= 0.1] for k, v in a.items()}     # 10% detections lost
    min_faces = medium.faces("pose=atypical")     # a slice with exactly min_faces is judged
    p = paired_slices(a, b, medium.gt, resamples=200, seed=2, min_faces=min_faces)
    judged = [n for n in ALL_SLICES if medium.faces(n) >= min_faces]
    assert "pose=atypical" in judged and 0 < len(judged) < len(ALL_SLICES)
    assert p.family == 2 * len(judged)
    assert p.family_confidence == pytest.approx(1 - 0.05 / p.family)
    assert p.to_dict()["correction"]["family"] == p.family
    ev_a, ev_b = evaluate_slices(a, medium.gt), evaluate_slices(b, medium.gt)
    widened = 0
    for name in ALL_SLICES:
        c = p[name]
        assert c.faces == medium.faces(name)
        assert c.ap_delta == pytest.approx(ev_b[name].ap - ev_a[name].ap, abs=1e-12)
        assert c.recall_delta == pytest.approx(ev_b[name].recall - ev_a[name].recall,
                                               abs=1e-12)
        for plain, corr in ((c.ap_interval, c.ap_corrected),
                            (c.recall_interval, c.recall_corrected)):
            assert corr.low <= plain.low <= plain.high <= corr.high, name
            widened += (corr.high - corr.low) > (plain.high - plain.low) + 1e-12
    assert widened > len(ALL_SLICES)    # the correction widens most intervals
    # a device that loses detections: the recall drops on most slices
    assert sum(p[n].recall_delta < 0 for n in ALL_SLICES) >= 10


def test_corrected_interval_by_hand():
    samples = np.array([-0.03, -0.01, 0.0, 0.02, 0.05, 0.01, -0.02, 0.04])
    mean = samples.mean()
    sd = math.sqrt(sum((x - mean) ** 2 for x in samples) / (len(samples) - 1))
    for conf, family in ((0.95, 30), (0.9, 4), (0.95, 1)):
        z = NormalDist().inv_cdf(1 - (1 - conf) / (2 * family))
        narrow = Interval(-0.001, 0.002)
        got = corrected_interval(0.01, samples, narrow, conf, family)
        assert got.low == pytest.approx(0.01 - z * sd, abs=1e-15)
        assert got.high == pytest.approx(0.01 + z * sd, abs=1e-15)
    # the hull with a plain interval wider than the normal one
    wide = Interval(-1.0, 2.0)
    assert corrected_interval(0.01, samples, wide, 0.95, 2) == wide
    # undefined samples
    bad = corrected_interval(0.0, np.array([0.1, np.nan]), narrow, 0.95, 2)
    assert math.isnan(bad.low) and math.isnan(bad.high)
    assert math.isnan(corrected_interval(0.0, np.array([0.1]), narrow, 0.95, 2).low)


def _exaggerated_in(n: int, holders: set[int]) -> GroundTruth:
    """``n`` images of 4 faces 30-200 px high, every label 0 except expression=exaggerated
    on every face of the images in ``holders`` (the only faces of that slice)."""
    rng = np.random.default_rng(9)
    imgs = []
    for i in range(n):
        h = rng.uniform(30, 200, 4)
        b = np.column_stack([rng.uniform(0, 800, 4), rng.uniform(0, 600, 4), h / 1.2, h])
        labels = {a: np.zeros(4, int) for a in LABELS}
        labels["expression"][:] = int(i in holders)
        imgs.append(make_image("0--Ev", f"img_{i}", b.round(1),
                               {s: range(4) for s in ("easy", "medium", "hard")}, labels))
    return GroundTruth(events=("0--Ev",), images=tuple(imgs), source="<exaggerated>")


def test_a_slice_without_faces_has_no_ap_delta_and_strict_json():
    """Its AP is undefined, as its recall: never a delta of 0 with a [0, 0] interval (the
    single-set table says n/a too)."""
    from scrfd_ref.report.slices import slice_table

    gt = _exaggerated_in(12, set())
    a = noisy_predictions(gt, 2)
    b = {k: v[: max(0, len(v) - 1)] for k, v in a.items()}
    p = paired_slices(a, b, gt, resamples=200, min_faces=1)
    c = p["expression=exaggerated"]
    assert c.faces == 0 and evaluate_slices(a, gt)["expression=exaggerated"].to_dict()["ap"] \
        is None
    for x in (c.ap_a, c.ap_b, c.ap_delta, c.ap_interval.low, c.ap_corrected.high):
        assert math.isnan(x)
    row = c.to_dict()
    assert row["ap_a"] is row["ap_b"] is row["ap_delta"] is None
    assert row["ap_interval"] == row["ap_corrected"] == [None, None]
    json.dumps(p.to_dict(), allow_nan=False)
    line = next(r for r in slice_table(p.to_dict()) if "`expression=exaggerated`" in r)
    assert line.split(" | ")[2:5] == ["n/a", "n/a", "n/a"], line
    assert math.isfinite(p["expression=typical"].ap_interval.low)


def test_a_resample_without_the_slice_faces_leaves_its_ap_interval_undefined():
    """The only faces of the slice in one image of 12: about a third of the resamples lack
    it. They measure no AP of the slice (nor recall): the interval is undefined, not
    narrowed toward 0 by the 0 - 0 of those resamples."""
    gt = _exaggerated_in(12, {3})
    a = noisy_predictions(gt, 2)
    b = {k: v[: max(0, len(v) - 1)] for k, v in a.items()}
    p = paired_slices(a, b, gt, resamples=200, min_faces=1)
    c = p["expression=exaggerated"]
    assert c.faces == 4 and math.isfinite(c.ap_delta)
    assert math.isnan(c.recall_interval.low)          # as the recall's
    assert math.isnan(c.ap_interval.low) and math.isnan(c.ap_corrected.low)
    assert c.to_dict()["ap_interval"] == [None, None]
    typical = p["expression=typical"]
    assert math.isfinite(typical.ap_interval.low) and math.isfinite(typical.ap_interval.high)


# --------------------------------------------------------------------------- the command

def _cell(items) -> np.ndarray:
    out = np.empty((len(items), 1), dtype=object)
    for i, x in enumerate(items):
        out[i, 0] = x
    return out


def write_mats(folder: Path, gt: GroundTruth) -> Path:
    """``gt`` as the official four .mat files (scipy.io.savemat, the official layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    per_event = [[img for img in gt.images if img.event == e] for e in gt.events]
    ev = _cell([np.array([e]) for e in gt.events])
    fl = _cell([_cell([np.array([img.name]) for img in imgs]) for imgs in per_event])
    face = {"event_list": ev, "file_list": fl,
            "face_bbx_list": _cell([_cell([np.asarray(img.boxes, np.float64)
                                           for img in imgs]) for imgs in per_event])}
    for a in LABELS:
        face[f"{a}_label_list"] = _cell([_cell([np.asarray(img.attributes[a], np.uint8)
                                                .reshape(-1, 1) for img in imgs])
                                         for imgs in per_event])
    scipy.io.savemat(folder / "wider_face_val.mat", face)
    for s in ("easy", "medium", "hard"):
        gl = _cell([_cell([(img.counted[s] + 1).astype(np.uint16).reshape(-1, 1)
                           for img in imgs]) for imgs in per_event])
        scipy.io.savemat(folder / f"wider_{s}_val.mat",
                         {"gt_list": gl, "event_list": ev, "file_list": fl})
    return folder


def test_eval_by_attribute_compare_writes_the_slices_of_the_oracle(small, tmp_path, capsys):
    from scrfd_ref.cli import main
    from scrfd_ref.formats.wider_txt import write_predictions

    gt_dir = write_mats(tmp_path / "gt", small.gt)
    a = noisy_predictions(small.gt, 7)
    rng = np.random.default_rng(1)
    b = {k: v[rng.random(len(v)) >= 0.2] for k, v in a.items()}
    for folder, preds in (("a", a), ("b", b)):
        for (event, name), rows in preds.items():
            write_predictions(tmp_path / folder, event, name, rows)
    rc = main(["--data-dir", str(tmp_path / "nodata"), "eval", "--pred", str(tmp_path / "a"),
               "--compare", str(tmp_path / "b"), "--gt", str(gt_dir), "--by", "attribute",
               "--operating-score", "0.6", "--resamples", "200", "--json", "-"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    doc = json.loads(out.out)["slices"]
    assert doc["operating_score"] == 0.6 and doc["images"] == 20
    assert doc["resamples"] == 200 and doc["base_setting"] == "hard"
    assert list(doc["slices"]) == list(SLICE_NAMES)
    ev_a = evaluate_slices(a, small.gt, operating_score=0.6)
    ev_b = evaluate_slices(b, small.gt, operating_score=0.6)
    for name in ALL_SLICES:
        row = doc["slices"][name]
        assert row["faces"] == small.faces(name)
        assert row["ap_a"] == pytest.approx(ev_a[name].ap, abs=1e-12)
        assert row["ap_b"] == pytest.approx(ev_b[name].ap, abs=1e-12)
        assert row["recall_a"] == pytest.approx(ev_a[name].recall, abs=1e-12)
        assert row["recall_b"] == pytest.approx(ev_b[name].recall, abs=1e-12)
        assert row["ap_delta"] == pytest.approx(ev_b[name].ap - ev_a[name].ap, abs=1e-12)
        for key in ("ap", "recall"):
            lo, hi = row[f"{key}_interval"]
            clo, chi = row[f"{key}_corrected"]
            assert clo <= lo <= hi <= chi, (name, key)
    # and straight against the official protocol on two slices
    for name in ("blur=heavy", "scale=large"):
        ap_b, _, _ = oracle_slice(small, b, name)
        _, rec_a, _ = oracle_slice(small, above(a, 0.6), name)
        assert doc["slices"][name]["ap_b"] == pytest.approx(ap_b, abs=1e-12)
        assert doc["slices"][name]["recall_a"] == pytest.approx(rec_a, abs=1e-12)
