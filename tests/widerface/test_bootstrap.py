"""The image bootstrap of WIDER AP (``scrfd_ref.widerface.resample`` / ``.bootstrap``).

Independent references:

* **weights all 1** = :func:`evaluate` (itself bit-equal to the literal oracle
  ``tests/helpers/wider_oracle.py``, see test_wider_eval.py) and = the oracle directly on a small
  set: counts exactly, AP to 1e-12;
* **integer weights** = the official evaluation of the image multiset built independently
  here (every image repeated ``w`` times under new names, a new ground truth and prediction
  set), counts exactly and AP to 1e-12: the oracle for the weighted sums. The images
  holding the lowest and highest score keep a weight >= 1, so the multiset's min-max
  normalisation is the full set's (the documented choice);
* **paired intervals**: the same set on both sides gives exactly delta [0, 0] and ratio
  [1, 1]; a device that loses k known faces (their only matching prediction removed, found
  with an IoU written here) gives intervals that exclude 0 and 1;
* **coverage**: on a simulated population with a known AP difference, the share of 95%
  intervals holding the truth is a plausible Binomial draw (tolerance stated at the test).
"""
from __future__ import annotations

import argparse
import functools
import json
import math

import numpy as np
import pytest
import wider_oracle as oracle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import binom
from wider_synth import noisy_predictions

from scrfd_ref.core.errors import InputError
from scrfd_ref.formats.ground_truth import SETTINGS, GroundTruth, load_ground_truth, make_image
from scrfd_ref.formats.wider_txt import read_prediction_dir, write_predictions
from scrfd_ref.widerface.bootstrap import (
    Interval,
    bootstrap_ap,
    images_to_decide,
    images_to_decide_interval,
    paired_bootstrap,
    paired_samples,
    pairing_problem,
    percentile_interval,
)
from scrfd_ref.widerface.evaluate import evaluate, match_predictions
from scrfd_ref.widerface.resample import (
    image_counts,
    iter_resample_weights,
    resample_weights,
    weighted_ap,
    weighted_counts,
)

TOL = 1e-12


# --------------------------------------------------------------------------- helpers

def synthetic_gt(n: int, seed: int, max_faces: int = 12) -> GroundTruth:
    """``n`` images in 4 events; face sides log-uniform 4..200 px; easy: side >= 40,
    medium: >= 16, hard: every face (so easy < medium < hard as in WIDER)."""
    rng = np.random.default_rng(seed)
    imgs = []
    for i in range(n):
        k = int(rng.integers(0, max_faces))
        w = np.exp(rng.uniform(np.log(4), np.log(200), k))
        h = w * rng.uniform(1.0, 1.4, k)
        b = np.column_stack([rng.uniform(0, 1000, k), rng.uniform(0, 700, k), w, h]).round(1)
        side = np.sqrt(w * h)
        imgs.append(make_image(f"{i % 4}--Ev", f"img_{i}", b,
                               {"easy": np.flatnonzero(side >= 40),
                                "medium": np.flatnonzero(side >= 16), "hard": np.arange(k)}))
    imgs.sort(key=lambda im: im.event)
    return GroundTruth(events=tuple(dict.fromkeys(im.event for im in imgs)), images=tuple(imgs),
                       source="<synthetic>")


def device_of(preds: dict, seed: int, drop: float = 0.05, noise: float = 0.05) -> dict:
    """A correlated second prediction set: rows dropped at random, scores jittered."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, a in preds.items():
        a = a[rng.random(len(a)) >= drop].copy()
        a[:, 4] = np.clip(a[:, 4] + rng.normal(0, noise, len(a)), 0.001, 1.0)
        out[k] = a
    return out


def duplicated(gt: GroundTruth, preds: dict, weights: np.ndarray) -> tuple[GroundTruth, dict]:
    """The image multiset: image i repeated ``weights[i]`` times (new names, same event)."""
    imgs, out = [], {}
    for img, w in zip(gt.images, weights):
        for c in range(int(w)):
            name = f"{img.name}~{c}"
            imgs.append(make_image(img.event, name, np.array(img.boxes),
                                   {s: np.array(v) for s, v in img.counted.items()}))
            if img.key in preds:
                out[(img.event, name)] = np.array(preds[img.key])
    events = tuple(e for e in gt.events if any(i.event == e for i in imgs))
    return GroundTruth(events=events, images=tuple(imgs), settings=gt.settings,
                       source="<duplicated>"), out


def keep_extremes(gt: GroundTruth, preds: dict, weights: np.ndarray) -> np.ndarray:
    """``weights`` with the images holding the lowest and the highest score at >= 1."""
    w = np.array(weights, dtype=np.int64)
    scored = [(i, a[:, 4]) for i, img in enumerate(gt.images)
              if (a := np.asarray(preds.get(img.key, np.zeros((0, 5))))).size]
    if scored:
        lo = min(scored, key=lambda t: t[1].min())[0]
        hi = max(scored, key=lambda t: t[1].max())[0]
        w[[lo, hi]] = np.maximum(w[[lo, hi]], 1)
    return w


def iou_plus1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one x y w h box ``a`` with boxes ``b`` (k, 4), the official "+1" convention."""
    ax2, ay2 = a[0] + a[2], a[1] + a[3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.minimum(ax2, bx2) - np.maximum(a[0], b[:, 0]) + 1
    ih = np.minimum(ay2, by2) - np.maximum(a[1], b[:, 1]) + 1
    inter = iw * ih
    union = (a[2] + 1) * (a[3] + 1) + (b[:, 2] + 1) * (b[:, 3] + 1) - inter
    return np.where((iw > 0) & (ih > 0), inter / union, 0.0)


@st.composite
def weighted_scenes(draw):
    """A small ground truth (some images without boxes or predictions, score ties), its
    predictions and integer weights 0..3 per image."""
    n_img = draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2**31))
    gt = synthetic_gt(n_img, seed, max_faces=draw(st.integers(1, 8)))
    preds = noisy_predictions(gt, seed, decimals=draw(st.sampled_from([1, 2, None])),
                              fp_rate=draw(st.sampled_from([0.5, 3.0])))
    for k in draw(st.lists(st.sampled_from([img.key for img in gt.images]), max_size=2)):
        preds.pop(k, None)  # images without a prediction file
    w = draw(st.lists(st.integers(0, 3), min_size=n_img, max_size=n_img))
    return gt, preds, keep_extremes(gt, preds, np.array(w))


# --------------------------------------------------------------------------- weights = evaluate

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weighted_scenes())
def test_integer_weights_equal_the_duplicated_image_multiset(scene):
    gt, preds, w = scene
    counts = image_counts(match_predictions(preds, gt, allow_missing=True))
    rows = np.vstack([np.ones_like(w), w])
    prop, rec, faces = weighted_counts(counts, rows)
    ap = weighted_ap(counts, rows)
    ref_one = evaluate(preds, gt, allow_missing=True)
    ref_w = None
    if w.sum():
        dup_gt, dup_preds = duplicated(gt, preds, w)
        ref_w = evaluate(dup_preds, dup_gt, allow_missing=True)
    for si, s in enumerate(gt.settings):
        np.testing.assert_array_equal(prop[0, si], ref_one.curves[s].proposals)
        np.testing.assert_array_equal(rec[0, si], ref_one.curves[s].recalled)
        assert faces[0, si] == ref_one.faces[s]
        assert abs(ap[0, si] - ref_one.ap[s]) <= TOL
        if ref_w is None:
            continue
        np.testing.assert_array_equal(prop[1, si], ref_w.curves[s].proposals)
        np.testing.assert_array_equal(rec[1, si], ref_w.curves[s].recalled)
        assert faces[1, si] == ref_w.faces[s]
        assert abs(ap[1, si] - ref_w.ap[s]) <= TOL


def test_unit_and_integer_weights_equal_the_literal_oracle():
    gt = synthetic_gt(14, 5)
    preds = noisy_predictions(gt, 5)
    w = keep_extremes(gt, preds, np.random.default_rng(3).integers(0, 4, len(gt.images)))
    assert (w == 0).any() and (w > 1).any()
    counts = image_counts(match_predictions(preds, gt))
    prop, rec, faces = weighted_counts(counts, np.vstack([np.ones_like(w), w]))
    ap = weighted_ap(counts, np.vstack([np.ones_like(w), w]))
    for row, (g, p) in enumerate([(gt, preds), duplicated(gt, preds, w)]):
        ref = oracle.wider_eval(g, p)
        for si, s in enumerate(SETTINGS):
            np.testing.assert_array_equal(prop[row, si], ref[s]["proposals"])
            np.testing.assert_array_equal(rec[row, si], ref[s]["recalled"])
            assert faces[row, si] == ref[s]["faces"]
            assert abs(ap[row, si] - ref[s]["ap"]) <= TOL, (row, s)


def test_unit_weights_equal_evaluate_on_a_large_set_and_points_are_evaluate_exactly():
    gt = synthetic_gt(1500, 11)
    pa = noisy_predictions(gt, 11, decimals=None, fp_rate=10.0)
    pb = device_of(pa, 12)
    ea, eb = evaluate(pa, gt), evaluate(pb, gt)
    ones = np.ones((1, len(gt.images)), dtype=np.int32)
    ap = weighted_ap(image_counts(match_predictions(pa, gt)), ones)[0]
    boot = paired_bootstrap(pa, pb, gt, resamples=200, seed=4)
    for si, s in enumerate(SETTINGS):
        assert abs(ap[si] - ea.ap[s]) <= TOL
        c = boot[s]
        assert c.ap_a == ea.ap[s] and c.ap_b == eb.ap[s]  # the points are evaluate's own
        assert c.delta == eb.ap[s] - ea.ap[s] and c.ratio == eb.ap[s] / ea.ap[s]
        assert c.delta_interval.contains(c.delta) and c.ratio_interval.contains(c.ratio)
    assert boot.result_a.ap == ea.ap and boot.images == 1500 and boot.resamples == 200


# --------------------------------------------------------------------------- paired intervals

def test_the_same_set_on_both_sides_gives_delta_0_and_ratio_1_exactly():
    gt = synthetic_gt(200, 21)
    pa = noisy_predictions(gt, 21)
    pb = {k: np.array(v) for k, v in pa.items()}  # equal content, other arrays
    boot = paired_bootstrap(pa, pb, gt, resamples=300)
    for s in SETTINGS:
        c = boot[s]
        assert c.delta_interval == Interval(0.0, 0.0)
        assert c.ratio_interval == Interval(1.0, 1.0)
        assert c.delta == 0.0 and c.ratio == 1.0
        assert c.ap_a_interval.low < c.ap_a < c.ap_a_interval.high  # a real spread each side


@pytest.mark.parametrize("k", [4, 10])
def test_a_device_that_loses_k_known_faces_gives_intervals_that_exclude_1(k):
    gt = synthetic_gt(400, 31)
    pa = noisy_predictions(gt, 31)
    # faces counted in every setting whose one and only matching prediction (best box,
    # IoU >= 0.5) is removed: the device no longer finds them; at most one per image
    lost, pb = 0, dict(pa)
    for img in gt.images:
        if lost == k or img.key not in pa or not img.counted["easy"].size:
            continue
        rows = pa[img.key]
        best = [(int(np.argmax(o)), o.max()) if (o := iou_plus1(r[:4], img.boxes)).size
                else (-1, 0.0) for r in rows]
        for f in img.counted["easy"]:
            match = [j for j, (b, o) in enumerate(best) if b == f and o >= 0.5]
            if len(match) == 1:
                pb[img.key] = np.delete(rows, match[0], axis=0)
                lost += 1
                break
    assert lost == k
    boot = paired_bootstrap(pa, pb, gt, resamples=1000, seed=1)
    for s in SETTINGS:
        c = boot[s]
        assert c.ratio < 1 and c.ratio_interval.high < 1.0, (s, c)
        assert c.delta < 0 and c.delta_interval.high < 0.0, (s, c)
        assert not c.ratio_interval.contains(1.0)


def test_pairing_matters_the_paired_interval_is_narrower_than_independent_resamples():
    """Independent resamples of two correlated sets give a much wider delta interval; if
    the two sides were not resampled alike the paired interval would be as wide."""
    gt = synthetic_gt(400, 41)
    pa = noisy_predictions(gt, 41)
    pb = device_of(pa, 42)
    ca = image_counts(match_predictions(pa, gt))
    cb = image_counts(match_predictions(pb, gt))
    sa, sb = paired_samples(ca, cb, 600, seed=0)
    _, sb_other = paired_samples(ca, cb, 600, seed=1)
    for si in range(3):
        paired = percentile_interval(sb[:, si] - sa[:, si])
        indep = percentile_interval(sb_other[:, si] - sa[:, si])
        assert (paired.high - paired.low) < 0.6 * (indep.high - indep.low)


@functools.lru_cache(maxsize=2)
def _population(t_num: int):
    """Per-image counts of a 4000-image population, two correlated sets, and the true AP
    difference per setting (the population's own evaluation)."""
    gt = synthetic_gt(4000, 1)
    pa = noisy_predictions(gt, 2)
    pb = device_of(pa, 3)
    ea, eb = evaluate(pa, gt, thresh_num=t_num), evaluate(pb, gt, thresh_num=t_num)
    truth = np.array([eb.ap[s] - ea.ap[s] for s in SETTINGS])
    return (image_counts(match_predictions(pa, gt, thresh_num=t_num)),
            image_counts(match_predictions(pb, gt, thresh_num=t_num)), truth)


@pytest.mark.parametrize("t_num, trials", [
    (100, 200), pytest.param(1000, 600, marks=[pytest.mark.acceptance, pytest.mark.slow])])
def test_coverage_of_95_percent_intervals_on_a_simulated_population(t_num, trials):
    """Draw ``trials`` samples of 200 images (with replacement) from a population of 4000
    images with a known AP difference (the population's own, same score normalisation);
    count the paired 95% delta intervals (300 resamples) that hold it.

    Tolerance: the count must be a plausible draw of Binomial(trials, p) for a coverage p
    between 0.93 and 0.97, at a two-sided level of 0.002 (lower bound the 0.001 quantile at
    p = 0.93, upper bound the 0.999 quantile at p = 0.97, scipy.stats.binom; with 200
    trials that is 174..200, with 600 trials 541..595). The lower end allows the percentile
    bootstrap's slight under-coverage at this sample size (measured on this simulation,
    2000 samples of 200 images, 100 thresholds: 0.934 / 0.945 / 0.940 for easy / medium /
    hard). Width, independently of the coverage count: the mean interval width must be
    3.92 standard deviations of the point deltas over the trials (the true sampling
    spread) within -20% / +25% (the spread is estimated from the trials to about 5%; the
    percentile bootstrap is a few % narrow). The default tier uses 100 thresholds (the
    same protocol, coarser, 10x faster); the acceptance tier the official 1000.
    """
    ca, cb, truth = _population(t_num)
    assert np.all(np.abs(truth) > 0.02)  # a real difference to cover
    rng = np.random.default_rng(10)
    hits = np.zeros(3, dtype=np.int64)
    widths, points = [], []
    ones = np.ones((1, 200), dtype=np.int32)
    for trial in range(trials):
        idx = rng.integers(0, ca.images, 200)
        a, b = ca.select(idx), cb.select(idx)
        sa, sb = paired_samples(a, b, 300, seed=trial)
        points.append(weighted_ap(b, ones)[0] - weighted_ap(a, ones)[0])
        ivs = [percentile_interval(sb[:, si] - sa[:, si], 0.95) for si in range(3)]
        hits += [iv.contains(t) for iv, t in zip(ivs, truth)]
        widths.append([iv.high - iv.low for iv in ivs])
    lo = binom.ppf(0.001, trials, 0.93)
    hi = binom.isf(0.001, trials, 0.97)
    spread = np.mean(widths, axis=0) / (3.92 * np.std(points, axis=0, ddof=1))
    print(f"\ncoverage over {trials} samples ({t_num} thresholds): "
          + ", ".join(f"{s} {h / trials:.3f}" for s, h in zip(SETTINGS, hits))
          + f"; accepted {lo / trials:.3f}..{hi / trials:.3f}; width / (3.92 sd): "
          + ", ".join(f"{x:.3f}" for x in spread))
    for s, h, x in zip(SETTINGS, hits, spread):
        assert lo <= h <= hi, (s, h, lo, hi)
        assert 0.8 <= x <= 1.25, (s, x)


def test_interval_width_shrinks_as_one_over_sqrt_n():
    """The assumption behind images_to_decide: 4x the images, half the width."""
    ca, cb, _ = _population(100)
    rng = np.random.default_rng(5)
    widths = {}
    for n in (150, 600):
        w = []
        for trial in range(8):
            idx = rng.integers(0, ca.images, n)
            sa, sb = paired_samples(ca.select(idx), cb.select(idx), 200, seed=trial)
            iv = percentile_interval(sb[:, 2] - sa[:, 2])
            w.append(iv.high - iv.low)
        widths[n] = float(np.mean(w))
    assert 1.6 < widths[150] / widths[600] < 2.5, widths


# --------------------------------------------------------------------------- single set, helpers

def test_single_set_bootstrap_uses_the_same_resamples_as_the_paired_one():
    gt = synthetic_gt(120, 51)
    pa = noisy_predictions(gt, 51)
    pb = device_of(pa, 52)
    single = bootstrap_ap(pa, gt, resamples=200, seed=7, confidence=0.9)
    paired = paired_bootstrap(pa, pb, gt, resamples=200, seed=7, confidence=0.9)
    for s in SETTINGS:
        np.testing.assert_array_equal(single.samples[s], paired.samples_a[s])
        assert single.interval[s] == paired[s].ap_a_interval
        assert single.ap[s] == evaluate(pa, gt).ap[s]
        lo, hi = np.quantile(single.samples[s], [0.05, 0.95])
        assert single.interval[s] == Interval(lo, hi)
    assert json.loads(json.dumps(single.to_dict()))["settings"]["hard"]["ap"] == single.ap["hard"]


def test_resample_weights_are_uniform_draws_with_replacement():
    w = resample_weights(3226, 1000, seed=0)
    assert w.shape == (1000, 3226) and w.dtype == np.int32
    assert (w.sum(axis=1) == 3226).all()
    # each entry is Binomial(3226, 1/3226): variance 1 - 1/3226, P(0) = 0.3679
    assert abs(w.var() - 1.0) < 0.01 and abs((w == 0).mean() - math.exp(-1)) < 0.003
    np.testing.assert_array_equal(w, resample_weights(3226, 1000, seed=0))
    assert not np.array_equal(w, resample_weights(3226, 1000, seed=1))
    np.testing.assert_array_equal(np.concatenate(list(iter_resample_weights(3226, 1000, 0))), w)
    assert resample_weights(0, 5).shape == (5, 0)


def test_images_to_decide():
    assert images_to_decide(400, 0.004, 0.002) == 1600  # twice the width: 4x the images
    assert images_to_decide(400, 0.001, 0.002) == 100
    assert images_to_decide(400, 0.004, 0.0) == math.inf
    assert math.isnan(images_to_decide(400, math.nan, 0.1))
    # a ratio 0.996 [0.990, 0.999] against the limit 0.997 (above the point): the upper
    # half-width 0.003 over the distance 0.001 -> 9x the images
    iv = Interval(0.990, 0.999)
    assert images_to_decide_interval(344, 0.996, iv, 0.997) == math.ceil(344 * 9.0 - 1e-9)
    # against 0.99 (below): the lower half-width 0.006 over 0.006 -> the same images
    assert images_to_decide_interval(344, 0.996, iv, 0.990) == 344


def test_bad_arguments_are_one_line_errors():
    gt = synthetic_gt(5, 1)
    p = noisy_predictions(gt, 1)
    for kw, msg in [({"confidence": 1.0}, "confidence"), ({"confidence": 0}, "confidence"),
                    ({"resamples": 0}, "resamples"), ({"resamples": 2.5}, "resamples"),
                    ({"resamples": 199}, "too few for a 95% interval: it needs at least 200"),
                    ({"seed": -1}, "seed")]:
        with pytest.raises(InputError, match=msg):
            paired_bootstrap(p, p, gt, **kw)
    counts = image_counts(match_predictions(p, gt))
    with pytest.raises(InputError, match=r"weights must be \(R, 5\)"):
        weighted_ap(counts, np.ones((2, 4)))
    with pytest.raises(InputError, match="non-negative"):
        weighted_ap(counts, -np.ones((1, 5)))
    other = synthetic_gt(6, 1)
    with pytest.raises(InputError, match=r"not on the same images: 1 image\(s\) only in b"):
        paired_samples(counts, image_counts(match_predictions(noisy_predictions(other, 1),
                                                              other)))
    assert pairing_problem([("e", "a")], [("e", "a")]) is None
    assert pairing_problem([("e", "a"), ("e", "b")], [("e", "c")], ("--pred", "--compare")) \
        == "2 image(s) only in --pred (e/a, e/b); 1 image(s) only in --compare (e/c)"
    assert percentile_interval(np.array([1.0, np.inf])).to_list() == [None, None]


# --------------------------------------------------------------------------- eval --compare

def _write_txt_gt(gt: GroundTruth, path) -> None:
    lines = []
    for img in gt.images:
        lines += [f"{img.event}/{img.name}.jpg", str(len(img.boxes))]
        lines += [" ".join(f"{v:g}" for v in b) + " 0 0 0 0 0 0" for b in img.boxes]
        if not len(img.boxes):
            lines.append("0 0 0 0 0 0 0 0 0 0")
    path.write_text("\n".join(lines) + "\n")


def _parser():
    from scrfd_ref.cli.wider import register

    parser = argparse.ArgumentParser(prog="scrfd-ref")
    parser.add_argument("--data-dir", default=None)
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_eval_compare_prints_and_writes_the_paired_intervals(tmp_path, capsys):
    gt = synthetic_gt(60, 61)
    _write_txt_gt(gt, tmp_path / "gt.txt")
    pa = noisy_predictions(gt, 61)
    for name, preds in (("a", pa), ("b", device_of(pa, 62))):
        for (e, n), arr in preds.items():
            write_predictions(tmp_path / name, e, n, arr)
    args = _parser().parse_args(["eval", "--pred", str(tmp_path / "a"), "--compare",
                                 str(tmp_path / "b"), "--gt", str(tmp_path / "gt.txt"),
                                 "--resamples", "300", "--seed", "3", "--confidence", "0.9",
                                 "--json", str(tmp_path / "r.json")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    txt_gt = load_ground_truth(tmp_path / "gt.txt")  # the 'all' setting only
    boot = paired_bootstrap(read_prediction_dir(tmp_path / "a"),
                            read_prediction_dir(tmp_path / "b"), txt_gt, resamples=300, seed=3,
                            confidence=0.9)
    c = boot["all"]
    d, r = c.delta_interval, c.ratio_interval
    row = [line for line in out.splitlines() if line.startswith("all ")][-1]  # after the AP table
    assert row.split() == ["all", f"{100 * c.ap_a:.3f}%", f"{100 * c.ap_b:.3f}%",
                           f"{c.delta:+.5f}", f"[{d.low:+.5f},", f"{d.high:+.5f}]",
                           f"{c.ratio:.5f}", f"[{r.low:.5f},", f"{r.high:.5f}]",
                           "no" if d.contains(0.0) else "yes"]
    assert "300 resamples of 60 images (seed 3)" in out and "90% interval" in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["all"] == c.ap_a  # the --pred summary stays the top level
    assert doc["compare"]["result"]["all"] == c.ap_b
    assert doc["compare"]["bootstrap"] == json.loads(json.dumps(boot.to_dict()))
