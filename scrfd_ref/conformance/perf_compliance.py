"""Compliance of timed runs: what was timed computes what the accuracy run computes (after
MLPerf Inference's compliance tests: TEST01 compares responses logged during the
performance run with the accuracy run, TEST04 fails a run that gets faster on a repeated
sample).

Three checks on a backend, each a :class:`ComplianceCheck` naming what failed:

- :func:`sampled_outputs` (TEST01): outputs kept while timing (a sample of the calls) equal
  the outputs of an untimed run of the same backend on the same inputs: bit for bit when
  the backend is deterministic (``exact``), else within the dtype's head gates (cosine,
  SNR);
- :func:`batch_invariance`: each image's outputs at batch 1 equal its outputs inside a
  batch of ``batch``, the last partial batch included (a runtime that takes another kernel
  at batch N, or pads a partial batch wrongly, fails here);
- :func:`repeated_input` (TEST04): the time per call on one input repeated is not faster
  than on distinct inputs by more than ``margin`` (a runtime that caches outputs by input
  fails here).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from scrfd_ref.backends.base import Backend
from scrfd_ref.conformance.compare import cosine_snr

#: the slowdown-free margin of the repeated-input check: one input repeated may be at
#: most this much faster than distinct inputs (cache effects of a few % are normal)
REPEAT_MARGIN = 0.15


@dataclass(frozen=True)
class ComplianceCheck:
    """One compliance check: its name, verdict and what it found."""

    name: str
    passed: bool
    detail: str

    @property
    def message(self) -> str:
        """``ok batch_invariance: ...`` / ``FAIL ...``."""
        return f"{'ok' if self.passed else 'FAIL'} {self.name}: {self.detail}"


def _heads_agree(ref: Sequence[np.ndarray], dev: Sequence[np.ndarray], *, exact: bool,
                 cosine_min: float, snr_db_min: float) -> str | None:
    """Why two output lists differ (None: they agree)."""
    if len(ref) != len(dev):
        return f"{len(dev)} outputs instead of {len(ref)}"
    for i, (r, d) in enumerate(zip(ref, dev)):
        r, d = np.asarray(r), np.asarray(d)
        if r.shape != d.shape:
            return f"output {i}: shape {d.shape} instead of {r.shape}"
        if exact:
            if not np.array_equal(r, d):
                n = int(np.count_nonzero(r != d))
                return f"output {i}: {n} of {r.size} elements differ (bit-exact expected)"
            continue
        cos, snr = cosine_snr(r.astype(np.float64).ravel(), d.astype(np.float64).ravel())
        if not (cos >= cosine_min and snr >= snr_db_min):
            return (f"output {i}: cosine {cos:.6f} (>= {cosine_min:g}), SNR {snr:.1f} dB "
                    f"(>= {snr_db_min:g})")
    return None


def sampled_outputs(timed: Sequence[tuple[np.ndarray, Sequence[np.ndarray]]],
                    backend: Backend, *, exact: bool, cosine_min: float = 0.9999,
                    snr_db_min: float = 40.0) -> ComplianceCheck:
    """The outputs kept while timing (``(input blob, outputs)`` pairs) against an untimed
    run of ``backend`` on the same inputs."""
    if not timed:
        return ComplianceCheck("sampled_outputs", False, "no output was kept while timing")
    for k, (blob, outputs) in enumerate(timed):
        why = _heads_agree(backend.run(blob), outputs, exact=exact, cosine_min=cosine_min,
                           snr_db_min=snr_db_min)
        if why:
            return ComplianceCheck("sampled_outputs", False,
                                   f"timed call sample {k + 1} of {len(timed)}: {why}")
    return ComplianceCheck("sampled_outputs", True,
                           f"{len(timed)} timed calls equal the untimed run"
                           + (" bit for bit" if exact else " within the head gates"))


def _image(outputs: Sequence[np.ndarray], j: int, b: int) -> list[np.ndarray]:
    """Image ``j``'s outputs from a call at batch ``b`` (the Backend contract: batch first,
    except an unbatched model's ``(N, C)`` at batch 1)."""
    if b == 1:
        return [o[0] if o.ndim >= 3 and o.shape[0] == 1 else o for o in outputs]
    return [o[j] for o in outputs]


def batch_invariance(backend: Backend, blobs: np.ndarray, batch: int, *, exact: bool,
                     cosine_min: float = 0.9999, snr_db_min: float = 40.0) -> ComplianceCheck:
    """Each image of ``blobs`` ``(N, 3, H, W)`` alone vs inside batches of ``batch`` (the
    last one partial when ``N % batch``)."""
    n = blobs.shape[0]
    singles = [_image(backend.run(blobs[i:i + 1]), 0, 1) for i in range(n)]
    for start in range(0, n, batch):
        part = blobs[start:start + batch]
        b = part.shape[0]
        out = backend.run(part)
        for j in range(b):
            why = _heads_agree(singles[start + j], _image(out, j, b), exact=exact,
                               cosine_min=cosine_min, snr_db_min=snr_db_min)
            if why:
                where = "the last, partial batch" if b < batch else "a batch"
                return ComplianceCheck("batch_invariance", False,
                                       f"image {start + j} at batch 1 vs in {where} of {b}: "
                                       f"{why}")
    return ComplianceCheck("batch_invariance", True,
                           f"{n} images equal at batch 1 and in batches of {batch}"
                           + (" (last one partial)" if n % batch else ""))


def repeated_input(backend: Backend, blobs: np.ndarray, calls: int = 20, *,
                   margin: float = REPEAT_MARGIN,
                   clock: Callable[[], float] = time.perf_counter) -> ComplianceCheck:
    """Time ``calls`` calls on ``blobs[0]`` repeated and on ``calls`` distinct inputs (the
    ``blobs`` in turn, each pass scaled by another factor so that no input repeats), the
    faster of two passes each; fail when the repeated input is faster by more than
    ``margin``."""
    def timed(inputs: Sequence[np.ndarray]) -> float:
        t = clock()
        for x in inputs:
            backend.run(x)
        return (clock() - t) / len(inputs)

    one = [blobs[:1]] * calls
    # distinct inputs never repeat within the check (a cache keyed by input never hits)
    many = [blobs[i % blobs.shape[0]][None] * np.float32(1.0 + 1e-3 * (i // blobs.shape[0] + 1))
            for i in range(calls)]
    backend.run(blobs[:1])
    t_one = min(timed(one), timed(one))
    t_many = min(timed(many), timed(many))
    faster = 1.0 - t_one / t_many
    ok = faster <= margin
    return ComplianceCheck("repeated_input", ok,
                           f"one input repeated {1e3 * t_one:.2f} ms a call, distinct inputs "
                           f"{1e3 * t_many:.2f} ms: {100 * faster:+.1f}% faster (at most "
                           f"{100 * margin:g}%)" + ("" if ok else ": outputs cached?"))


__all__ = ["REPEAT_MARGIN", "ComplianceCheck", "batch_invariance", "repeated_input",
           "sampled_outputs"]
