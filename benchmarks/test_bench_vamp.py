"""vamp-style throughput runs per backend x dtype x variant x batch.

Each test does two things with the same backend:

1. pytest-benchmark times one ``backend.run`` call on a batch (the stored statistic that
   ``--benchmark-compare --benchmark-compare-fail=mean:10%`` checks between releases);
2. :func:`scrfd_ref.perf.runner.run_perf` runs the vamp-style load (``--perf-instances``,
   ``--perf-processes``, batch, ``--perf-shape``, ``--perf-iterations``) on real images,
   keeping a sample of the timed calls' outputs, and stores throughput (images/s) and
   latency percentiles (ms) in ``benchmark.extra_info``; the table at the end of the
   session lists every run;
3. the run's compliance (:func:`scrfd_ref.conformance.perf_compliance.check_timed_run`):
   the kept outputs equal an untimed run's (bit-exact on CPU), each image alone equals it
   inside a batch (the last partial batch included), one input repeated is not faster than
   distinct ones (a cache). A failed check fails the benchmark, naming the check. Under
   ``--benchmark-disable`` (the test tiers: 70-odd devices x batches) only the largest
   batch of each device is checked (its run exercises all three checks, the partial batch
   included); a timed run checks every batch.

Options and parametrization come from the root conftest (``--backend``, ``--dtype``,
``--variant``, ``--perf-*``). Under pytest-xdist the benchmarks refuse to time.
"""
from __future__ import annotations

import numpy as np
import pytest

from scrfd_ref.cli.perf_verdicts import COMPLIANCE_SAMPLE
from scrfd_ref.conformance.perf_compliance import check_timed_run
from scrfd_ref.conformance.runs import open_backend
from scrfd_ref.core.errors import BackendUnavailable
from scrfd_ref.perf import PerfSettings, run_perf


#: the batches timed unless ``--perf-batch`` says
DEFAULT_BATCHES = [1, 8]


def _batches(config: pytest.Config) -> list[int]:
    return config.getoption("--perf-batch") or DEFAULT_BATCHES


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "perf_batch" in metafunc.fixturenames:
        batches = _batches(metafunc.config)
        metafunc.parametrize("perf_batch", batches, ids=[f"b{b}" for b in batches])


def _shape(text: str) -> tuple[int, int, int]:
    c, h, w = (int(v) for v in text.replace("x", ",").split(","))
    return c, h, w


def _check_against_reference(backend, model, dtype: str, shape, gates, data_root) -> None:
    """The timed backend's result, checked once: on the sample face image its detections
    (widerface-eval profile, at the detection gate's operating point) match the fp32 ONNX
    Runtime reference's, face for face."""
    from scrfd_ref.backends.ort import OrtBackend
    from scrfd_ref.conformance.compare import compare_detections
    from scrfd_ref.detector import Detector
    from scrfd_ref.formats.images import read_image

    size = (shape[2], shape[1])
    image = read_image(data_root / "images" / "one_face_1280x720.jpg")
    dev = Detector(backend, profile="widerface-eval", input_size=size).detect(image)
    with OrtBackend(model) as ref_backend:
        ref = Detector(ref_backend, profile="widerface-eval", input_size=size).detect(image)
    g = lambda name: gates.value(dtype, "detections", name)  # noqa: E731
    m = compare_detections("one_face", ref, dev, iou_match=g("iou_match"),
                           floor=g("score_floor"), margin=g("score_margin"))
    assert m.ref_count >= 1, "the reference finds no face in the sample image"
    assert m.found == m.ref_count and m.precise == m.dev_count, (
        f"the timed backend's detections differ from the reference's: {m.to_dict()}")


def test_bench_vamp(benchmark, device_spec, perf_batch, variant_model, pytestconfig, perf_rows,
                    gates, data_root, need):
    if device_spec.outputs_dir is not None:
        pytest.skip("a replay folder has no runtime to time")
    need(data_root / "images" / "one_face_1280x720.jpg", "sample image")
    quick = bool(pytestconfig.getoption("benchmark_disable"))
    shape = _shape(pytestconfig.getoption("--perf-shape"))
    try:
        backend = open_backend(device_spec, variant_model)
    except BackendUnavailable as exc:
        if pytestconfig.getoption("--require-data"):
            pytest.fail(f"--require-data: {device_spec.id} cannot run here: {exc}",
                        pytrace=False)
        pytest.skip(f"{device_spec.id}: {exc}")
    fixed = backend.input_size
    if fixed is not None and fixed != (shape[2], shape[1]):
        backend.close()
        pytest.skip(f"{variant_model.name} is fixed at {fixed[0]}x{fixed[1]}, --perf-shape is "
                    f"{shape[2]}x{shape[1]}")
    blob = np.random.default_rng(0).uniform(-1, 1, (perf_batch, *shape)).astype(np.float32)
    with backend:
        outs = benchmark.pedantic(backend.run, args=(blob,), rounds=1 if quick else 10,
                                  warmup_rounds=0 if quick else 2)
        assert outs and all(o.shape[0] == perf_batch for o in outs if o.ndim >= 3)
        _check_against_reference(backend, variant_model, device_spec.dtype, shape, gates,
                                 data_root)

    threads = pytestconfig.getoption("--perf-threads")
    settings = PerfSettings(model=str(variant_model), backend=device_spec.backend,
                            dtype=device_spec.dtype,
                            instances=pytestconfig.getoption("--perf-instances"),
                            processes=pytestconfig.getoption("--perf-processes"),
                            batch=perf_batch, shape=shape,
                            iterations=2 if quick else pytestconfig.getoption("--perf-iterations"),
                            warmup=0 if quick else 3, threads=threads,
                            keep_outputs=COMPLIANCE_SAMPLE, data_dir=str(data_root),
                            max_images=8 if quick else 32)
    res = run_perf(settings)
    if not quick or perf_batch == max(_batches(pytestconfig)):
        checks = check_timed_run(settings, res, gates, repeat_calls=6 if quick else 20)
        failed = [c.message for c in checks if not c.passed]
        if failed:
            pytest.fail(f"{device_spec.id} b{perf_batch}: compliance of the timed run: "
                        + "; ".join(failed), pytrace=False)
    assert res.calls == settings.iterations * settings.instances * settings.processes
    assert res.throughput_ips > 0 and res.latency_ms["p99"] >= res.latency_ms["p50"]
    benchmark.extra_info.update(throughput_ips=res.throughput_ips, latency_ms=res.latency_ms,
                                settings=res.settings, quick=quick,
                                compliance=res.compliance)
    perf_rows.append({"device": device_spec.id, "instances": settings.instances,
                      "processes": settings.processes, "batch": perf_batch,
                      "shape": "x".join(map(str, shape)), "throughput_ips": res.throughput_ips,
                      "latency_ms": res.latency_ms, "quick": quick})
