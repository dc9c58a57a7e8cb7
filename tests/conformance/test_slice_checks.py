"""The slice level (``scrfd_ref.conformance.slice_checks``) and the verdict with a
multiplicity-corrected fail interval (``verdicts.judged`` / ``Gates.check``).

The gates are this file's own (a small gates TOML in tmp_path: known limits, 200
resamples), so the expectations hold whatever the shipped, still provisional, slice gates
become. Expected verdicts come from the rule itself, applied here by hand: a row passes when
its plain interval is inside the limit, fails only when the whole corrected interval is
beyond it, and is inconclusive otherwise. The synthetic ground truths are built so that the
answer is known: a device equal to the reference, and one that loses every face of 300 px
and more (its predictions on them removed, found with an IoU written here) on a set where
large faces are a small share of every attribute value.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from wider_synth import noisy_predictions

from scrfd_ref.conformance.gates import Gates, Threshold, spec
from scrfd_ref.conformance.slice_checks import check_slices, slice_settings, slices_bootstrap
from scrfd_ref.conformance.verdicts import judged
from scrfd_ref.formats.ground_truth import GroundTruth, make_image
from scrfd_ref.widerface.bootstrap import Interval
from scrfd_ref.widerface.slice_eval import PairedSlices, SliceComparison

DTYPE = "fp32"
AP_LIMIT, RECALL_LIMIT, MIN_FACES = 0.2, 0.15, 20
SLICES = [f"{a}={v}" for a, vs in (("blur", ("clear", "normal", "heavy")),
                                   ("expression", ("typical", "exaggerated")),
                                   ("illumination", ("normal", "extreme")),
                                   ("occlusion", ("none", "partial", "heavy")),
                                   ("pose", ("typical", "atypical"))) for v in vs] + \
    ["scale=small", "scale=medium", "scale=large"]
PROBS = {"blur": (0.3, 0.3, 0.4), "expression": (0.8, 0.2), "illumination": (0.8, 0.2),
         "invalid": (0.97, 0.03), "occlusion": (0.5, 0.25, 0.25), "pose": (0.8, 0.2)}


def write_gates(tmp_path, min_faces: int = MIN_FACES, ap: float = AP_LIMIT,
                recall: float = RECALL_LIMIT) -> Gates:
    f = tmp_path / f"gates_{min_faces}.toml"
    f.write_text(f"[{DTYPE}.slices]\n"
                 f"ap_drop_max = {{ value = {ap}, why = 'unit test' }}\n"
                 f"recall_drop_max = {{ value = {recall}, why = 'unit test' }}\n"
                 f"min_faces = {{ value = {min_faces}, why = 'unit test' }}\n"
                 f"[{DTYPE}.ap]\n"
                 "bootstrap_resamples = { value = 200, why = 'unit test: fast' }\n")
    return Gates.load(f)


@pytest.fixture(scope="module")
def gates(tmp_path_factory) -> Gates:
    return write_gates(tmp_path_factory.mktemp("gates"))


# --------------------------------------------------------------------------- the verdict

def _judge(gate, limit, value, interval, corrected):
    return judged(spec("slices", gate) if "drop" in gate else spec("ap", gate),
                  Threshold(limit, "test"), "subject", value, interval, 100,
                  fail_interval=corrected)


@pytest.mark.parametrize("interval,corrected,verdict", [
    ((0.00, 0.08), (-0.05, 0.099), "pass"),    # plain inside: pass, whatever the corrected
    ((0.00, 0.08), (-0.20, 0.300), "pass"),
    ((0.12, 0.20), (0.11, 0.250), "fail"),     # plain and corrected beyond
    ((0.12, 0.20), (0.10, 0.250), "inconclusive"),   # corrected touches the limit (<= passes)
    ((0.12, 0.20), (0.05, 0.300), "inconclusive"),   # plain beyond, corrected reaches it
    ((0.05, 0.15), (0.00, 0.200), "inconclusive"),   # plain straddles
])
def test_a_max_gate_fails_only_on_the_corrected_interval(interval, corrected, verdict):
    value = (interval[0] + interval[1]) / 2
    row = _judge("ap_drop_max", 0.1, value, interval, corrected)
    assert row.verdict == verdict, row.message
    assert row.interval == interval and row.fail_interval == corrected
    assert "corrected [" in row.message
    if verdict == "inconclusive" and interval[0] > 0.1:
        assert "corrected one" in row.lack and "reaches it" in row.lack
    elif verdict == "inconclusive":     # the plain interval itself straddles the limit
        assert "straddles the limit" in row.lack and "corrected" not in row.lack


@pytest.mark.parametrize("interval,corrected,verdict", [
    ((0.998, 1.002), (0.99, 1.01), "pass"),
    ((0.98, 0.99), (0.97, 0.995), "fail"),
    ((0.98, 0.99), (0.97, 1.001), "inconclusive"),
])
def test_a_min_gate_mirrors_it(interval, corrected, verdict):
    row = _judge("ratio_min", 0.997, sum(interval) / 2, interval, corrected)
    assert row.verdict == verdict, row.message


def test_without_a_fail_interval_the_plain_interval_decides():
    row = _judge("ap_drop_max", 0.1, 0.15, (0.12, 0.2), None)
    assert row.verdict == "fail" and row.fail_interval is None


def test_gates_check_passes_fail_intervals_per_metric(gates):
    def rows(ap_iv, ap_corr, rec_iv, rec_corr):
        res = gates.check(DTYPE, "slices", "slice x", {"ap_drop": sum(ap_iv) / 2,
                                                       "recall_drop": sum(rec_iv) / 2},
                          intervals={"ap_drop": ap_iv, "recall_drop": rec_iv},
                          fail_intervals={"ap_drop": ap_corr, "recall_drop": rec_corr},
                          images=100)
        return {r.gate: r.verdict for r in res}

    a, r = AP_LIMIT, RECALL_LIMIT
    assert rows((a - .1, a - .05), (a - .2, a + .1), (r - .1, r - .05), (r - .2, r + .1)) == \
        {"ap_drop_max": "pass", "recall_drop_max": "pass"}
    assert rows((a + .05, a + .1), (a + .01, a + .2), (r + .05, r + .1), (r - .01, r + .2)) == \
        {"ap_drop_max": "fail", "recall_drop_max": "inconclusive"}
    assert rows((a - .05, a + .05), (a - .1, a + .1), (r + .05, r + .1), (r + .02, r + .2)) == \
        {"ap_drop_max": "inconclusive", "recall_drop_max": "fail"}


# --------------------------------------------------------------------------- check_slices

class LargeFaces:
    """``n`` images of 6 faces 12-250 px high, a third of them also one face 320-480 px
    high; random labels. ``large``: the large boxes per image; ``hard_large``: how many
    of them "hard" counts (the faces of slice scale=large)."""

    def __init__(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        imgs, self.large, self.hard_large = [], {}, 0
        for i in range(n):
            h = np.exp(rng.uniform(np.log(12), np.log(250), 6))
            if rng.random() < 0.34:
                h = np.append(h, rng.uniform(320, 480))
            w = h / rng.uniform(1.0, 1.3, h.size)
            b = np.column_stack([rng.uniform(0, 1000, h.size), rng.uniform(0, 700, h.size),
                                 w, h]).round(1)
            labels = {a: rng.choice(len(p), size=h.size, p=p) for a, p in PROBS.items()}
            hard = np.flatnonzero(labels["invalid"] == 0)
            img = make_image(f"{i % 4}--Ev", f"img_{i}", b,
                             {"easy": hard, "medium": hard, "hard": hard}, labels)
            imgs.append(img)
            self.large[img.key] = b[b[:, 3] >= 300]
            self.hard_large += int((b[hard, 3] >= 300).sum())
        imgs.sort(key=lambda im: im.event)
        self.gt = GroundTruth(events=tuple(dict.fromkeys(im.event for im in imgs)),
                              images=tuple(imgs), source="<synthetic>")


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(k,) IoU of x y w h boxes ``a`` (k, 4) with one box ``b``."""
    x1, y1 = np.maximum(a[:, 0], b[0]), np.maximum(a[:, 1], b[1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[0] + b[2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[1] + b[3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / (a[:, 2] * a[:, 3] + b[2] * b[3] - inter)


def without_large(preds: dict, large: dict) -> tuple[dict, int]:
    """The predictions less every one overlapping a large face (IoU >= 0.3)."""
    out, dropped = {}, 0
    for k, p in preds.items():
        keep = np.ones(len(p), bool)
        for box in large[k]:
            keep &= iou(p[:, :4], box) < 0.3
        out[k] = p[keep]
        dropped += int((~keep).sum())
    return out, dropped


@pytest.fixture(scope="module")
def synth() -> LargeFaces:
    s = LargeFaces(150, seed=4)
    assert s.hard_large >= 40       # enough large faces to decide
    return s


@pytest.fixture(scope="module")
def reference(synth) -> dict:
    return noisy_predictions(synth.gt, 3)


def _verdicts(level) -> dict[tuple[str, str], str]:
    return {(r.subject.split()[1], r.gate): r.verdict for r in level.rows}


def test_slice_settings_read_the_gates(gates):
    got = slice_settings(gates, DTYPE)
    assert got == {"confidence": gates.value(DTYPE, "ap", "bootstrap_confidence"),
                   "resamples": 200, "seed": int(gates.value(DTYPE, "ap", "bootstrap_seed")),
                   "operating_score": gates.value(DTYPE, "detections", "score_floor"),
                   "min_faces": MIN_FACES}


def test_a_device_equal_to_the_reference_passes_every_slice(synth, reference, gates):
    paired = slices_bootstrap(reference, reference, synth.gt, synth.gt.keys(), gates, DTYPE)
    assert min(paired[s].faces for s in SLICES) >= MIN_FACES
    level = check_slices(paired, gates, DTYPE)
    assert level.level == "slices" and len(level.rows) == 2 * len(SLICES)
    assert set(_verdicts(level).values()) == {"pass"}, level.failures
    assert level.verdict == "pass"
    assert level.metrics["slices"]["correction"]["family"] == 2 * len(SLICES)


def test_a_device_that_loses_the_large_faces_fails_scale_large_only(synth, reference, gates):
    device, dropped = without_large(reference, synth.large)
    assert dropped >= synth.hard_large * 0.8
    paired = slices_bootstrap(reference, device, synth.gt, synth.gt.keys(), gates, DTYPE)
    assert paired["scale=large"].recall_b == 0.0
    level = check_slices(paired, gates, DTYPE)
    verdicts = _verdicts(level)
    failed = {k for k, v in verdicts.items() if v == "fail"}
    assert failed == {("scale=large", "ap_drop_max"), ("scale=large", "recall_drop_max")}, \
        level.failures
    assert {v for k, v in verdicts.items() if k[0] != "scale=large"} == {"pass"}, \
        level.failures
    assert level.verdict == "fail" and level.failed_gates == {"ap_drop_max", "recall_drop_max"}
    row = next(r for r in level.rows if r.failed and r.gate == "ap_drop_max")
    large = paired["scale=large"]
    assert row.value == pytest.approx(large.ap_a - large.ap_b) and row.value > AP_LIMIT
    assert row.fail_interval[0] > AP_LIMIT
    assert row.fail_interval[0] <= row.interval[0] <= row.interval[1] <= row.fail_interval[1]


def _comparison(name, ap_drop=(0.0, 0.0, 0.0), recall_drop=(0.0, 0.0, 0.0),
                ap_corr=None, recall_corr=None) -> SliceComparison:
    """A slice of 100 faces with the given drops: (point, low, high) of the plain
    interval, (low, high) of the corrected one (as drops; the comparison holds deltas)."""
    def delta(iv):
        return Interval(-iv[1], -iv[0])
    ap_corr = ap_corr or ap_drop[1:]
    recall_corr = recall_corr or recall_drop[1:]
    return SliceComparison(name=name, faces=100, ap_a=0.9, ap_b=0.9 - ap_drop[0],
                           recall_a=0.9, recall_b=0.9 - recall_drop[0],
                           ap_delta=-ap_drop[0], recall_delta=-recall_drop[0],
                           ap_interval=delta(ap_drop[1:]),
                           recall_interval=delta(recall_drop[1:]),
                           ap_corrected=delta(ap_corr), recall_corrected=delta(recall_corr))


def test_check_slices_fails_a_slice_on_its_corrected_interval_only(gates):
    """Hand-made comparisons: the level reads the plain interval to pass, the corrected
    one to fail, both as drops (reference - device)."""
    a, r = AP_LIMIT, RECALL_LIMIT
    comps = {n: _comparison(n) for n in SLICES}
    comps["blur=heavy"] = _comparison("blur=heavy", ap_drop=(a + .1, a + .05, a + .15),
                                      ap_corr=(a - .05, a + .25))
    comps["pose=atypical"] = _comparison("pose=atypical", ap_drop=(a + .1, a + .05, a + .15),
                                         ap_corr=(a + .01, a + .2))
    comps["occlusion=heavy"] = _comparison("occlusion=heavy",
                                           recall_drop=(r + .1, r + .05, r + .15),
                                           recall_corr=(r - .01, r + .3))
    comps["scale=small"] = _comparison("scale=small", recall_drop=(r + .1, r + .05, r + .15),
                                       recall_corr=(r + .02, r + .3))
    comps["blur=clear"] = _comparison("blur=clear", ap_drop=(-.3, -.4, -.2),
                                      recall_drop=(-.3, -.4, -.2))      # better: pass
    paired = PairedSlices(slices=tuple(SLICES), comparisons=comps, images=100, resamples=200,
                          confidence=0.95, seed=0, operating_score=0.5, family=30,
                          family_confidence=1 - 0.05 / 30, min_faces=MIN_FACES, a=None, b=None)
    verdicts = _verdicts(check_slices(paired, gates, DTYPE))
    special = {("blur=heavy", "ap_drop_max"): "inconclusive",
               ("pose=atypical", "ap_drop_max"): "fail",
               ("occlusion=heavy", "recall_drop_max"): "inconclusive",
               ("scale=small", "recall_drop_max"): "fail"}
    for key, verdict in verdicts.items():
        assert verdict == special.get(key, "pass"), key
    assert len(verdicts) == 2 * len(SLICES)


def test_a_slice_with_too_few_faces_is_inconclusive(synth, reference, tmp_path):
    n_large = synth.hard_large
    strict = write_gates(tmp_path, min_faces=n_large + 1)
    paired = slices_bootstrap(reference, reference, synth.gt, synth.gt.keys(), strict, DTYPE)
    assert paired["scale=large"].faces == n_large
    few = {s for s in SLICES if paired[s].faces <= n_large}
    assert few == {"scale=large"}       # every attribute value has many more faces
    level = check_slices(paired, strict, DTYPE)
    for r in level.rows:
        name = r.subject.split()[1]
        if name in few:
            assert r.verdict == "inconclusive", r.message
            assert "add images with" in r.lack and f"(at least {n_large + 1})" in r.lack
        else:
            assert r.verdict == "pass", r.message
    large = next(r for r in level.rows if r.subject.startswith("slice scale=large"))
    assert f"only {n_large} face(s) of scale=large" in large.lack
    assert "add images with large scale faces" in large.lack
    assert paired.family == 2 * (len(SLICES) - len(few))
    # min_faces equal to the slice's faces: judged (and passed)
    exact = check_slices(paired, write_gates(tmp_path, min_faces=n_large), DTYPE)
    assert set(_verdicts(exact).values()) == {"pass"}, exact.failures


def test_no_paired_result_leaves_every_slice_inconclusive_with_the_reason(gates):
    why = "the ground truth x.txt has no face attributes"
    level = check_slices(None, gates, DTYPE, missing=why)
    assert len(level.rows) == 2 * len(SLICES)
    assert {r.subject.split()[1] for r in level.rows} == set(SLICES)
    for r in level.rows:
        assert r.verdict == "inconclusive" and r.lack == why and why in r.message
        assert math.isnan(r.value)
    assert level.verdict == "inconclusive"
    assert level.metrics == {"slices": None, "missing": why}


def test_a_slice_the_reference_finds_none_of_has_nothing_to_lose(gates):
    """A slice with faces of which the reference finds none at the operating point (or
    none at all: AP 0): a device cannot drop below it, so that drop is inconclusive with
    what the images lack, never a pass (as a detection gate without a reference face above
    the floor)."""
    import dataclasses

    comps = {n: _comparison(n) for n in SLICES}
    comps["occlusion=heavy"] = dataclasses.replace(comps["occlusion=heavy"], recall_a=0.0,
                                                   recall_b=0.0)
    comps["blur=heavy"] = dataclasses.replace(comps["blur=heavy"], ap_a=0.0, ap_b=0.1,
                                              ap_delta=0.1, recall_a=0.0, recall_b=0.05,
                                              recall_delta=0.05)
    paired = PairedSlices(slices=tuple(SLICES), comparisons=comps, images=100, resamples=200,
                          confidence=0.95, seed=0, operating_score=0.5, family=30,
                          family_confidence=1 - 0.05 / 30, min_faces=MIN_FACES, a=None, b=None)
    level = check_slices(paired, gates, DTYPE)
    verdicts = _verdicts(level)
    lost = {("occlusion=heavy", "recall_drop_max"), ("blur=heavy", "recall_drop_max"),
            ("blur=heavy", "ap_drop_max")}
    for key, verdict in verdicts.items():
        assert verdict == ("inconclusive" if key in lost else "pass"), key
    row = next(r for r in level.rows
               if r.subject.startswith("slice occlusion=heavy") and r.gate == "recall_drop_max")
    assert "the reference finds none of the 100 face(s) of occlusion=heavy at score >= 0.5" \
        in row.lack and "add images" in row.lack
    assert level.verdict == "inconclusive"


def test_a_zero_drop_reads_0_not_minus_0(gates):
    """A device equal to the reference on a slice: deltas +0.0 (b - a), drops 0, not -0."""
    import dataclasses

    zero = Interval(0.0, 0.0)
    comps = {n: dataclasses.replace(_comparison(n), ap_delta=0.0, recall_delta=0.0,
                                    ap_interval=zero, recall_interval=zero,
                                    ap_corrected=zero, recall_corrected=zero)
             for n in SLICES}
    paired = PairedSlices(slices=tuple(SLICES), comparisons=comps, images=100, resamples=200,
                          confidence=0.95, seed=0, operating_score=0.5, family=30,
                          family_confidence=1 - 0.05 / 30, min_faces=MIN_FACES, a=None, b=None)
    for r in check_slices(paired, gates, DTYPE).rows:
        assert r.verdict == "pass" and "-0" not in r.message, r.message
