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

#: the margin of the repeated-input check: one input repeated may be at most this much
#: faster than distinct inputs. Honest CPU runtimes: -14% .. +6% (ORT fp32 / int8, OpenCV,
#: OpenVINO; one input stays in the CPU caches, distinct 4.9 MB inputs come from memory;
#: a busy machine adds noise); a runtime that returns cached outputs is 50-99% faster
REPEAT_MARGIN = 0.30
#: passes of each kind (alternating); each kind's fastest pass counts
PASSES = 3


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
    fastest of :data:`PASSES` alternating passes each; fail when the repeated input is faster by more than
    ``margin``."""
    def timed(inputs: Sequence[np.ndarray]) -> float:
        t = clock()
        for x in inputs:
            backend.run(x)
        return (clock() - t) / len(inputs)

    one = [blobs[:1]] * calls
    n = blobs.shape[0]

    def distinct(p: int) -> list[np.ndarray]:
        # pass p's inputs: the blobs in turn, each scaled by its own factor, so that no
        # input repeats within the check (a cache keyed by input never hits)
        return [blobs[i % n][None] * np.float32(1.0 + 1e-4 * (p * calls + i + 1))
                for i in range(calls)]

    backend.run(blobs[:1])
    ones, manys = [], []
    for p in range(PASSES):  # alternating, so a slow spell of the machine hits both
        ones.append(timed(one))
        manys.append(timed(distinct(p)))
    t_one, t_many = min(ones), min(manys)
    faster = 1.0 - t_one / t_many
    ok = faster <= margin
    return ComplianceCheck("repeated_input", ok,
                           f"one input repeated {1e3 * t_one:.2f} ms a call, distinct inputs "
                           f"{1e3 * t_many:.2f} ms: {100 * faster:+.1f}% faster (at most "
                           f"{100 * margin:g}%)" + ("" if ok else ": outputs cached?"))


#: the batch of the batch-invariance check when the timed run is at batch 1
CHECK_BATCH = 4
#: backends whose runs on one machine are bit-reproducible on CPU (same input, same
#: session options: the same kernels in the same order); their timed sample must equal the
#: untimed run bit for bit. Any other backend (a GPU, a plugin) is held to the dtype's
#: head gates.
DETERMINISTIC = ("ort", "opencv", "openvino")


def is_deterministic(settings: object) -> bool:
    """Whether the timed sample of ``settings`` (a PerfSettings) must be bit-exact: a CPU
    backend of :data:`DETERMINISTIC` (ORT only with CPU providers)."""
    providers = str(settings.backend_options.get("providers") or "cpu")
    return settings.backend in DETERMINISTIC and providers.lower() in ("cpu",
                                                                       "cpuexecutionprovider")


def check_timed_run(settings: object, result: object, gates: object | None = None, *,
                    repeat_calls: int = 20) -> list[ComplianceCheck]:
    """The three compliance checks of a timed run made with ``keep_outputs``.

    ``settings``: the :class:`~scrfd_ref.perf.settings.PerfSettings` run; ``result``: its
    :class:`~scrfd_ref.perf.result.PerfResult` (``result.kept``: the timed sample). An
    untimed backend of the same settings (:func:`scrfd_ref.perf.runner.build_backend`,
    built in this thread) gives the accuracy side:

    - ``sampled_outputs``: bit-exact when :func:`is_deterministic`, else the dtype's head
      gates ``cosine_min`` / ``snr_db_min`` (the gates file);
    - ``batch_invariance``: at the run's batch (:data:`CHECK_BATCH` when it is 1) on
      ``batch + batch // 2 + 1`` real images (two batches, the last partial), held to the
      **fp32** head gates whatever the dtype: one runtime, one arithmetic, another batch
      may only change the summation order;
    - ``repeated_input``: ``repeat_calls`` calls a pass, :data:`REPEAT_MARGIN`.

    Sets ``result.compliance`` (JSON) and returns the checks.

    Raises:
        InputError: a run without a sample (``keep_outputs`` 0).
    """
    from scrfd_ref.conformance.gates import Gates
    from scrfd_ref.core.errors import InputError
    from scrfd_ref.perf.inputs import real_blobs
    from scrfd_ref.perf.runner import build_backend

    if not settings.keep_outputs:
        raise InputError("the compliance checks need a run with keep_outputs (perf "
                         "--compliance)")
    gates = gates if gates is not None else Gates.load()

    def heads(dtype: str) -> dict[str, float]:
        return {"cosine_min": gates.value(dtype, "heads", "cosine_min"),
                "snr_db_min": gates.value(dtype, "heads", "snr_db_min")}

    blobs = real_blobs(settings)
    images = np.concatenate(blobs)
    batch = settings.batch if settings.batch > 1 else CHECK_BATCH
    picked = images[np.arange(batch + batch // 2 + 1) % images.shape[0]]
    backend = build_backend(settings)
    try:
        checks = [
            sampled_outputs([(blobs[k], out) for k, out in result.kept], backend,
                            exact=is_deterministic(settings), **heads(settings.dtype)),
            batch_invariance(backend, picked, batch, exact=False, **heads("fp32")),
            repeated_input(backend, images, repeat_calls),
        ]
    finally:
        backend.close()
    result.compliance = [{"check": c.name, "passed": c.passed, "detail": c.detail}
                         for c in checks]
    return checks


__all__ = ["CHECK_BATCH", "DETERMINISTIC", "PASSES", "REPEAT_MARGIN", "ComplianceCheck",
           "batch_invariance", "check_timed_run", "is_deterministic", "repeated_input",
           "sampled_outputs"]
