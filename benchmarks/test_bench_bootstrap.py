"""Paired bootstrap of WIDER AP at the full val size, beside a plain evaluation.

Ground truth: the real ``wider_face_val.mat`` set (3226 images; its absence fails under
--require-data). Predictions: the eval benchmark's (``test_bench_wider_eval.py``:
``wider_synth.noisy_predictions(gt, 2024, fp_rate=15.0)``, about 80k rows) as the
reference, and the same generator with seed 2025 as the compared set. The group
``wider-bootstrap-full-val`` holds, in the same run:

- ``test_bench_evaluate``: one ``evaluate`` of the reference set;
- ``test_bench_paired_bootstrap``: ``paired_bootstrap`` of the two sets, 1000 resamples
  (both sets matched and evaluated, then the resamples);
- ``test_bench_single_bootstrap``: ``bootstrap_ap`` of the reference set, 1000 resamples.

The ratio bootstrap / evaluate is the ``Mean`` (or ``Min``) column of the group table; the
issue's target is 1000 paired resamples in <= 3 s on 2 cores (measured, never asserted
here). With ``--benchmark-disable`` each runs once and the point APs are checked against
``evaluate``.
"""
from __future__ import annotations

import pytest

from scrfd_ref.formats.ground_truth import SETTINGS, load_ground_truth
from scrfd_ref.widerface.bootstrap import bootstrap_ap, paired_bootstrap
from scrfd_ref.widerface.evaluate import evaluate

GROUP = "wider-bootstrap-full-val"
RESAMPLES = 1000


@pytest.fixture(scope="module")
def full_val_pair(data_root, need):
    """(ground truth, reference predictions, compared predictions) at the full val size."""
    import wider_synth

    gt_dir = need(data_root / "widerface" / "ground_truth" / "wider_face_val.mat",
                  "WIDER FACE val ground truth").parent
    gt = load_ground_truth(gt_dir)
    return (gt, wider_synth.noisy_predictions(gt, 2024, fp_rate=15.0),
            wider_synth.noisy_predictions(gt, 2025, fp_rate=15.0))


@pytest.mark.benchmark(group=GROUP)
def test_bench_evaluate(benchmark, full_val_pair):
    gt, ref, _ = full_val_pair
    result = benchmark(evaluate, ref, gt)
    assert result.images == len(gt.images) == 3226


@pytest.mark.benchmark(group=GROUP)
def test_bench_paired_bootstrap(benchmark, full_val_pair):
    gt, ref, dev = full_val_pair
    boot = benchmark(paired_bootstrap, ref, dev, gt, resamples=RESAMPLES)
    ea, eb = evaluate(ref, gt), evaluate(dev, gt)
    assert boot.images == 3226 and boot.resamples == RESAMPLES
    for s in SETTINGS:
        assert boot[s].ap_a == ea.ap[s] and boot[s].ap_b == eb.ap[s]
        assert boot.samples_a[s].shape == (RESAMPLES,)
    print("\n" + ", ".join(f"{s} delta {boot[s].delta:+.5f} [{boot[s].delta_interval.low:+.5f},"
                           f" {boot[s].delta_interval.high:+.5f}]" for s in SETTINGS))


@pytest.mark.benchmark(group=GROUP)
def test_bench_single_bootstrap(benchmark, full_val_pair):
    gt, ref, _ = full_val_pair
    boot = benchmark(bootstrap_ap, ref, gt, resamples=RESAMPLES)
    assert all(boot.interval[s].contains(boot.ap[s]) for s in SETTINGS)
