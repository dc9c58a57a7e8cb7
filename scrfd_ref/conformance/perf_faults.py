"""Faults of a timed backend, for the fault library: a runtime that is fast for the wrong
reasons. Each wraps any :class:`~scrfd_ref.backends.base.Backend` (the product's backends
are never changed) and is what the compliance checks of
:mod:`scrfd_ref.conformance.perf_compliance` must catch:

- :class:`CachingBackend`: returns the outputs of an input it has seen (keyed by a hash of
  the blob) without running it: fast on a repeated input;
- :class:`BatchHeadBackend`: at batch ``n`` (and only then) one head comes from another
  code path: the batch's rows of that head rotated by one (a kernel for batch ``n`` with a
  wrong batch stride: each image gets its neighbour's head);
- :class:`PaddingBackend`: pads a partial batch to ``batch`` with garbage and returns the
  padded rows' outputs shifted (the last partial batch's images get a neighbour's heads);
- :class:`SkipHeadBackend`: when called from a benchmark harness (a perf instance's
  thread, ``perf-instance-N``) one head is not computed (zeros), as a runtime that
  recognises it is benchmarked and skips work.

``Slowdown`` adds ``fraction`` of each call's own time (a regression of that size) for the
perf verdict's power table.
"""
from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import numpy as np

from scrfd_ref.backends.base import Backend


class _Wrapped(Backend):
    name = "faulty"
    label = "fault"

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The inner backend's fixed input size."""
        return self.inner.input_size

    def info(self) -> dict[str, Any]:
        """The inner backend's info, the fault named."""
        return {**self.inner.info(), "fault": self.label}

    def close(self) -> None:
        """Close the inner backend."""
        self.inner.close()


class CachingBackend(_Wrapped):
    """Outputs cached by a hash of the input blob."""

    label = "caches outputs by input hash"

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.cache: dict[str, list[np.ndarray]] = {}

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """The cached outputs of an input seen before, else the inner run."""
        key = hashlib.blake2b(np.ascontiguousarray(blob).tobytes(), digest_size=16).hexdigest()
        if key not in self.cache:
            self.cache[key] = self.inner.run(blob)
        return [a.copy() for a in self.cache[key]]


class BatchHeadBackend(_Wrapped):
    """At batch ``batch`` the rows of output ``head`` (its index) are rotated by one: image
    ``i`` gets image ``i - 1``'s head (another kernel with a wrong batch stride)."""

    def __init__(self, inner: Backend, batch: int, head: int = 0) -> None:
        super().__init__(inner)
        self.batch, self.head = batch, head
        self.label = f"output {head} of the neighbour image at batch {batch}"

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """The inner outputs, one head's rows rotated when the batch is ``batch``."""
        out = list(self.inner.run(blob))
        if blob.shape[0] == self.batch and self.batch > 1:
            out[self.head] = np.roll(out[self.head], 1, axis=0)
        return out


class PaddingBackend(_Wrapped):
    """A partial batch (more than one image, fewer than ``batch``) padded to ``batch`` with
    noise; the returned rows are shifted by one (row ``i`` gets the outputs of row
    ``i + 1`` of the padded batch). Batch 1 has its own path and is right."""

    def __init__(self, inner: Backend, batch: int) -> None:
        super().__init__(inner)
        self.batch = batch
        self.label = f"partial batches padded to {batch}, rows shifted"

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """Full batches as they are; a partial one through the padded, shifted path."""
        n = blob.shape[0]
        if n >= self.batch or n == 1:
            return self.inner.run(blob)
        pad = np.random.default_rng(n).uniform(-1, 1, (self.batch - n, *blob.shape[1:]))
        full = self.inner.run(np.concatenate([blob, pad.astype(blob.dtype)]))
        return [a[1:n + 1] if a.ndim >= 2 and a.shape[0] == self.batch else a for a in full]


class SkipHeadBackend(_Wrapped):
    """Output ``head`` is zeros when the caller is a perf instance's thread (the runtime
    recognises the benchmark harness, as a driver can recognise a benchmark's process)."""

    def __init__(self, inner: Backend, head: int = 0) -> None:
        super().__init__(inner)
        self.head = head
        self.label = f"output {head} skipped when timed"

    @staticmethod
    def timed() -> bool:
        """Whether the current call comes from a timed perf instance."""
        return threading.current_thread().name.startswith("perf-instance")

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """The inner outputs, one of them zeros while timed."""
        out = list(self.inner.run(blob))
        if self.timed():
            out[self.head] = np.zeros_like(out[self.head])
        return out


class Slowdown(_Wrapped):
    """Each call takes ``1 + fraction`` times its own time (a busy wait after it)."""

    def __init__(self, inner: Backend, fraction: float) -> None:
        super().__init__(inner)
        self.fraction = fraction
        self.label = f"slowed down {100 * fraction:g}%"

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """The inner run, then a busy wait of ``fraction`` of its time."""
        t = time.perf_counter()
        out = self.inner.run(blob)
        end = time.perf_counter() + (time.perf_counter() - t) * self.fraction
        while time.perf_counter() < end:
            pass
        return out


__all__ = ["BatchHeadBackend", "CachingBackend", "PaddingBackend", "SkipHeadBackend",
           "Slowdown"]
