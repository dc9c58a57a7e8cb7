"""Full-val WIDER FACE evaluation: fast path (Cython and numpy) next to the literal oracle.

Ground truth: the real ``wider_face_val.mat`` set (3226 images, 39708 boxes) from the
data directory (its absence fails under --require-data; never swapped for a synthetic
one). Predictions (about
80k): generated from the ground truth with a fixed seed: size-dependent misses, jitter,
10 % duplicates, Poisson false positives, scores rounded to 3 decimals (ties), rows in
descending score order as detectors write them. The ratio oracle / fast path is the
``Mean`` column of the ``wider-eval-full-val`` group; the oracle runs one round.
``test_fast_path_equals_oracle_on_full_val`` checks the APs are identical and prints the
speed ratio (speed is compared by the benchmarks, never asserted as a wall-clock limit);
``test_full_val_memory`` keeps the traced peak under 500 MB. With ``--benchmark-disable`` everything runs once.
"""
from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

import scrfd_ref.widerface.evaluate as ev
from scrfd_ref.formats.ground_truth import SETTINGS, GroundTruth, load_ground_truth
from scrfd_ref.widerface.evaluate import evaluate

KERNELS = ["numpy", pytest.param("cython", marks=pytest.mark.skipif(
    not ev.HAVE_KERNEL, reason="the Cython evaluation kernel is not built (python setup.py "
                               "build_ext --inplace); tests/core/test_kernels_built.py fails in CI"))]
KERNEL_NAMES = ["numpy"] + (["cython"] if ev.HAVE_KERNEL else [])
GROUP = "wider-eval-full-val"


def make_predictions(gt: GroundTruth, seed: int = 2024) -> dict:
    """About 2 predictions per ground-truth box: detections with noise plus false positives."""
    import wider_synth

    return wider_synth.noisy_predictions(gt, seed, fp_rate=15.0)


@pytest.fixture(scope="module")
def full_val(data_root, need):
    """(ground truth, predictions) of the full-val runs: the real ground truth (its absence
    fails under --require-data; it is never swapped for a synthetic one silently)."""
    gt_dir = need(data_root / "widerface" / "ground_truth" / "wider_face_val.mat",
                  "WIDER FACE val ground truth").parent
    gt = load_ground_truth(gt_dir)
    preds = make_predictions(gt)
    n = sum(len(a) for a in preds.values())
    print(f"\nfull val: {len(gt.images)} images, {gt.num_boxes} boxes, {n} predictions "
          f"({gt.source})")
    return gt, preds


@pytest.fixture(scope="module")
def oracle_runs():
    """Oracle result and wall time of this module's one oracle run (shared by the tests)."""
    return {}


def _run_oracle(oracle, gt, preds, store):
    t = time.perf_counter()
    res = oracle.wider_eval(gt, preds)
    store["seconds"] = time.perf_counter() - t
    store["result"] = res
    return res


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("kernel", KERNELS)
def test_bench_fast_path(benchmark, full_val, kernel):
    gt, preds = full_val
    result = benchmark(evaluate, preds, gt, kernel=kernel)
    assert result.kernel == kernel and result.images == len(gt.images)


@pytest.mark.slow
@pytest.mark.acceptance
@pytest.mark.benchmark(group=GROUP)
def test_bench_literal_oracle(benchmark, full_val, oracle_runs):
    gt, preds = full_val
    import wider_oracle as oracle

    res = benchmark.pedantic(_run_oracle, args=(oracle, gt, preds, oracle_runs),
                             rounds=1, iterations=1, warmup_rounds=0)
    assert set(res) == set(SETTINGS)


@pytest.mark.slow
@pytest.mark.acceptance
def test_fast_path_equals_oracle_on_full_val(full_val, oracle_runs):
    gt, preds = full_val
    import wider_oracle

    if "result" not in oracle_runs:
        _run_oracle(wider_oracle, gt, preds, oracle_runs)
    ref = oracle_runs["result"]
    for kernel in KERNEL_NAMES:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            res = evaluate(preds, gt, kernel=kernel)
            times.append(time.perf_counter() - t)
        for s in SETTINGS:
            assert res.ap[s] == ref[s]["ap"], (kernel, s, res.ap[s], ref[s]["ap"])
            np.testing.assert_array_equal(res.curves[s].proposals, ref[s]["proposals"])
            np.testing.assert_array_equal(res.curves[s].recalled, ref[s]["recalled"])
        ratio = oracle_runs["seconds"] / min(times)  # reported, never asserted (a benchmark
        # compares speeds; see test_bench_fast_path / test_bench_literal_oracle)
        print(f"\n{kernel}: {min(times) * 1e3:.1f} ms, oracle {oracle_runs['seconds']:.2f} s, "
              f"ratio {ratio:.0f}x; AP " + ", ".join(f"{s} {res.ap[s]:.6f}" for s in SETTINGS))


@pytest.mark.parametrize("kernel", KERNELS)
def test_full_val_memory(full_val, kernel):
    gt, preds = full_val
    tracemalloc.start()
    try:
        evaluate(preds, gt, kernel=kernel)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"\n{kernel}: traced peak {peak / 2**20:.1f} MiB")
    assert peak < 500 * 2**20
