"""Full-val WIDER FACE evaluation: fast path (Cython and numpy) next to the literal oracle.

Ground truth: the real ``wider_face_val.mat`` set (3226 images, 39708 boxes) from the
data directory when present, else a synthetic one of the same size. Predictions (about
80k): generated from the ground truth with a fixed seed: size-dependent misses, jitter,
10 % duplicates, Poisson false positives, scores rounded to 3 decimals (ties), rows in
descending score order as detectors write them. The ratio oracle / fast path is the
``Mean`` column of the ``wider-eval-full-val`` group; the oracle runs one round.
``test_fast_path_equals_oracle_on_full_val`` checks the APs are identical and that the
default fast path (Cython when built) is at least 50x faster; ``test_full_val_memory`` keeps the traced peak under
500 MB. With ``--benchmark-disable`` everything runs once.
"""
from __future__ import annotations

import importlib.util
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import scrfd_ref.widerface.evaluate as ev
from scrfd_ref.formats.ground_truth import SETTINGS, GroundTruth, load_ground_truth, make_image
from scrfd_ref.widerface.evaluate import evaluate

KERNELS = ["numpy"] + (["cython"] if ev.HAVE_KERNEL else [])
GROUP = "wider-eval-full-val"


def _load_test_module(name: str):
    """A helper module of tests/ (not importable when only benchmarks/ is collected)."""
    path = Path(__file__).resolve().parent.parent / "tests" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def synthetic_val(seed: int = 7) -> GroundTruth:
    """A WIDER-val-sized ground truth: 61 events, 3226 images, about 39.7k boxes."""
    rng = np.random.default_rng(seed)
    counts = np.maximum(1, np.round(rng.lognormal(1.6, 1.1, 3226))).astype(int)
    counts = np.minimum(counts, 700)
    counts = np.maximum(1, np.round(counts * 39708 / counts.sum())).astype(int)
    images = []
    for i, n in enumerate(counts):
        side = np.clip(rng.lognormal(2.8, 0.9, n), 1, 600)
        xy = rng.uniform(0, 1024 - side[:, None], (n, 2)).round()
        boxes = np.column_stack([xy, side.round(), (side * rng.uniform(1.0, 1.4, n)).round()])
        counted = {"easy": np.flatnonzero(side >= 40), "medium": np.flatnonzero(side >= 18),
                   "hard": np.flatnonzero(side >= 6)}
        ev_i = i * 61 // 3226
        images.append(make_image(f"{ev_i}--Event", f"{ev_i}_img_{i}", boxes, counted))
    return GroundTruth(events=tuple(dict.fromkeys(img.event for img in images)),
                       images=tuple(images), source="<synthetic val>")


def make_predictions(gt: GroundTruth, seed: int = 2024) -> dict:
    """About 2 predictions per ground-truth box: detections with noise plus false positives."""
    return _load_test_module("wider_synth").noisy_predictions(gt, seed, fp_rate=15.0)


@pytest.fixture(scope="module")
def full_val(data_root):
    """(ground truth, predictions, source) for the full-val-sized runs."""
    gt_dir = data_root / "widerface" / "ground_truth"
    gt = load_ground_truth(gt_dir) if (gt_dir / "wider_face_val.mat").is_file() else \
        synthetic_val()
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
@pytest.mark.benchmark(group=GROUP)
def test_bench_literal_oracle(benchmark, full_val, oracle_runs):
    gt, preds = full_val
    oracle = _load_test_module("wider_oracle")
    res = benchmark.pedantic(_run_oracle, args=(oracle, gt, preds, oracle_runs),
                             rounds=1, iterations=1, warmup_rounds=0)
    assert set(res) == set(SETTINGS)


@pytest.mark.slow
def test_fast_path_equals_oracle_on_full_val(full_val, oracle_runs):
    gt, preds = full_val
    if "result" not in oracle_runs:
        _run_oracle(_load_test_module("wider_oracle"), gt, preds, oracle_runs)
    ref = oracle_runs["result"]
    for kernel in KERNELS:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            res = evaluate(preds, gt, kernel=kernel)
            times.append(time.perf_counter() - t)
        for s in SETTINGS:
            assert res.ap[s] == ref[s]["ap"], (kernel, s, res.ap[s], ref[s]["ap"])
            np.testing.assert_array_equal(res.curves[s].proposals, ref[s]["proposals"])
            np.testing.assert_array_equal(res.curves[s].recalled, ref[s]["recalled"])
        ratio = oracle_runs["seconds"] / min(times)
        print(f"\n{kernel}: {min(times) * 1e3:.1f} ms, oracle {oracle_runs['seconds']:.2f} s, "
              f"ratio {ratio:.0f}x; AP " + ", ".join(f"{s} {res.ap[s]:.6f}" for s in SETTINGS))
        if kernel == KERNELS[-1]:  # the default path (Cython when built): the target
            assert ratio >= 50, f"{kernel} path only {ratio:.1f}x faster than the oracle"


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
