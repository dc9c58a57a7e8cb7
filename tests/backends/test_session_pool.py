"""The one decision on data-parallel sessions (:mod:`scrfd_ref.backends.pool`), used by
``wider-run`` (through :meth:`Detector.pool`) and ``dump``: one-thread ONNX Runtime CPU
sessions, one per worker; one session as asked for anything else."""
from __future__ import annotations

import numpy as np
import pytest

from scrfd_ref.backends.ort import OrtBackend
from scrfd_ref.backends.pool import pool_options, pool_size, replicable, session_pool
from scrfd_ref.core.parallel import usable_cores
from scrfd_ref.detector import Detector
from scrfd_ref.device.synthetic import make_synthetic_model


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return make_synthetic_model().SerializeToString()


@pytest.mark.parametrize("name, options, expected", [
    ("ort", {}, True),
    ("ort", {"providers": "cpu"}, True),
    ("ort", {"providers": "CPUExecutionProvider"}, True),
    ("ort", {"providers": "CUDAExecutionProvider"}, False),
    ("ort", {"providers": "cpu,CUDAExecutionProvider"}, False),
    ("opencv", {}, False),
    ("replay", {}, False),
    ("gpu", {}, False),
])
def test_only_onnx_runtime_on_cpu_is_replicable(name, options, expected):
    assert replicable(name, options) is expected


def test_pool_size_follows_workers_and_the_core_count():
    assert pool_size("ort", {}) == usable_cores()
    assert pool_size("ort", {}, workers=3) == 3
    assert pool_size("ort", {}, workers=0) == 1
    assert pool_size("ort", {"providers": "CUDAExecutionProvider"}, workers=4) == 1
    assert pool_size("opencv", {}, workers=4) == 1


def test_pool_options_give_one_intra_op_thread_only_to_a_pool():
    assert pool_options({"dtype": "fp16", "intra_threads": 4}, 2) == {"dtype": "fp16",
                                                                      "intra_threads": 1}
    assert pool_options({"dtype": "fp16", "intra_threads": 4}, 1) == {"dtype": "fp16",
                                                                      "intra_threads": 4}


def test_session_pool_builds_one_thread_sessions_that_agree(model_bytes):
    sessions = session_pool("ort", model_bytes, workers=2)
    try:
        assert len(sessions) == 2 and all(isinstance(s, OrtBackend) for s in sessions)
        assert [s.session.get_session_options().intra_op_num_threads for s in sessions] == [1, 1]
        blob = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
        a, b = (s.run(blob) for s in sessions)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    finally:
        for s in sessions:
            s.close()
    single = session_pool("ort", model_bytes, workers=1, intra_threads=2)
    assert len(single) == 1
    assert single[0].session.get_session_options().intra_op_num_threads == 2


def test_detector_pool_replicates_only_what_it_can(model_bytes):
    det = Detector(model_bytes, profile="widerface-eval")
    pool = det.pool(2)
    assert len(pool) == 2 and det not in pool
    assert all(d.profile == det.profile for d in pool)
    assert [d.backend.session.get_session_options().intra_op_num_threads
            for d in pool] == [1, 1]
    for d in pool:
        d.close()
    assert det.pool(1) == [det]
    ready = Detector(OrtBackend(model_bytes), profile="widerface-eval")
    assert ready.pool(2) == [ready]     # built around a ready backend: no recipe to copy
