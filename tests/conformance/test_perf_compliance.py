"""Compliance of timed runs on a fake deterministic backend: honest passes every check,
each timed-backend fault of the library fails the check made for it."""
from __future__ import annotations

import time

import numpy as np
import pytest

from scrfd_ref.backends.base import Backend
from scrfd_ref.conformance.perf_compliance import (
    batch_invariance,
    repeated_input,
    sampled_outputs,
)
from scrfd_ref.conformance.perf_faults import (
    BatchHeadBackend,
    CachingBackend,
    PaddingBackend,
    SkipHeadBackend,
)


class Fake(Backend):
    """Two outputs per image computed row by row (batch invariant by construction); each
    call costs ``cost_s`` per image."""

    name = "fake"

    def __init__(self, cost_s: float = 0.0) -> None:
        self.cost_s = cost_s

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        if self.cost_s:
            time.sleep(self.cost_s * blob.shape[0])
        # (B, N, C) like a batched SCRFD head
        a = np.stack([x.mean(axis=(1, 2))[:, None] for x in blob]).astype(np.float32)
        b = np.stack([x.reshape(3, -1)[:, :5].reshape(15, 1) for x in blob]).astype(np.float32)
        return [a, b]

    def info(self) -> dict:
        return {"backend": "fake"}


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (7, 3, 8, 8)).astype(np.float32)


def test_an_honest_backend_passes_every_check(blobs):
    be = Fake()
    assert batch_invariance(be, blobs, 4, exact=True).passed
    timed = [(blobs[i:i + 1], be.run(blobs[i:i + 1])) for i in range(3)]
    assert sampled_outputs(timed, be, exact=True).passed
    assert repeated_input(Fake(0.002), blobs, calls=10).passed


def test_another_head_at_batch_n_is_caught(blobs):
    check = batch_invariance(BatchHeadBackend(Fake(), batch=4, head=1), blobs, 4,
                             exact=True)
    assert not check.passed and "output 1" in check.detail and "a batch of 4" in check.detail


def test_a_wrongly_padded_last_batch_is_caught(blobs):
    check = batch_invariance(PaddingBackend(Fake(), batch=4), blobs, 4, exact=True)
    assert not check.passed and "the last, partial batch of 3" in check.detail


def test_a_head_skipped_when_timed_is_caught(blobs):
    import threading

    be = SkipHeadBackend(Fake(), head=0)
    timed = []
    worker = threading.Thread(name="perf-instance-0", target=lambda: timed.extend(
        (blobs[i:i + 1], be.run(blobs[i:i + 1])) for i in range(3)))
    worker.start()
    worker.join()
    check = sampled_outputs(timed, be, exact=True)
    assert not check.passed and "output 0" in check.detail


def test_outputs_cached_by_input_are_caught(blobs):
    check = repeated_input(CachingBackend(Fake(0.002)), blobs, calls=10)
    assert not check.passed and "cached" in check.detail


def test_a_run_that_kept_no_output_is_not_a_pass(blobs):
    assert not sampled_outputs([], Fake(), exact=True).passed
