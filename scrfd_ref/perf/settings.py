"""Perf run settings: :class:`PerfSettings`, its validation, and :class:`PerfError`.

The semantics of every setting (processes, instances, warm-up, barrier, window, pipeline)
are described in :mod:`scrfd_ref.perf.runner`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from scrfd_ref.core.errors import InputError, ScrfdRefError
from scrfd_ref.core.profiles import Profile

DEFAULT_ITERATIONS = 50
DEFAULT_WARMUP = 5
#: images the pipeline mode reads by default (first N of WIDER val, sorted)
DEFAULT_MAX_IMAGES = 32


class PerfError(ScrfdRefError):
    """A perf run failed (a worker process or thread raised, or died)."""


@dataclass(frozen=True)
class PerfSettings:
    """Everything that defines a perf run (see :mod:`scrfd_ref.perf.runner` for the semantics).

    Attributes:
        model: model file (ONNX path; a replay folder for ``backend="replay"``).
        backend: backend registry name (``ort``, ``replay``, plugins).
        backend_options: extra keyword options for the backend factory.
        dtype: ``fp32``, ``fp16`` or ``int8``; an ``.onnx`` model is converted with
            :func:`scrfd_ref.quantize.convert.convert_model` when not fp32 (cached).
        instances: concurrent instances (threads, one backend each) per process.
        processes: OS processes (spawned), each with ``instances`` instances.
        batch: images per call.
        shape: one input ``(C, H, W)``; the blob is ``(batch, C, H, W)``.
        iterations: measured calls per instance (default :data:`DEFAULT_ITERATIONS`
            when ``duration_s`` is not given).
        duration_s: run each instance for this many seconds instead.
        warmup: unmeasured calls per instance before the start barrier.
        pipeline: run the full flow (pre + infer + post) instead of ``backend.run``.
        serial: in pipeline mode, do pre, infer, post one after another (no overlap).
        threads: ONNX Runtime intra-op threads per instance (None: ORT's default);
            passed to the backend as ``intra_threads``.
        images: pipeline images (default: the first ``max_images`` WIDER val images of
            ``data_dir``; random images when there are none).
        data_dir: data directory for the default images.
        max_images: how many default images to load.
        profile: pipeline profile: a name or a :class:`~scrfd_ref.core.profiles.Profile`
            (for instance one whose preprocessing comes from a vdsp params file).
        record_calls: keep every call's start/end (ns from ``t0``) in the result.
        seed: seed of the random blob / random images.
        keep_outputs: for the compliance checks (:mod:`scrfd_ref.conformance.perf_compliance`):
            how many ``(input, outputs)`` pairs of its timed calls each instance keeps,
            spread over the run (0: none). With it the bench mode times real images (the
            pipeline images, letterboxed and normalised with ``profile``: see
            :func:`scrfd_ref.perf.inputs.real_blobs`) instead of the random blob.
        wrap: a function applied to every backend the run builds (the fault library's
            timed-backend faults; None in the product: the backend as it is). Must be
            picklable (a module-level function or a ``functools.partial`` of a class)
            when ``processes > 1``.
    """

    model: str
    backend: str = "ort"
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    dtype: str = "fp32"
    instances: int = 1
    processes: int = 1
    batch: int = 1
    shape: tuple[int, int, int] = (3, 640, 640)
    iterations: int | None = None
    duration_s: float | None = None
    warmup: int = DEFAULT_WARMUP
    pipeline: bool = False
    serial: bool = False
    threads: int | None = None
    images: tuple[str, ...] = ()
    data_dir: str | None = None
    max_images: int = DEFAULT_MAX_IMAGES
    profile: "str | Profile" = "insightface"
    record_calls: bool = False
    seed: int = 0
    keep_outputs: int = 0
    wrap: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", str(self.model))
        object.__setattr__(self, "shape", _check_shape(self.shape))
        object.__setattr__(self, "images", tuple(str(p) for p in self.images))
        object.__setattr__(self, "backend_options", dict(self.backend_options))
        for name in ("instances", "processes", "batch", "max_images"):
            _check_positive(name, getattr(self, name))
        if self.keep_outputs < 0:
            raise InputError(f"keep_outputs {self.keep_outputs} is negative")
        if self.keep_outputs and self.pipeline:
            raise InputError("the compliance sample (keep_outputs) is of the backend.run loop; "
                             "the pipeline mode does not keep outputs")
        if self.warmup < 0:
            raise InputError(f"warmup {self.warmup} is negative")
        if self.threads is not None:
            _check_positive("threads", self.threads)
        if self.iterations is not None and self.duration_s is not None:
            raise InputError("give iterations or a duration, not both")
        if self.duration_s is not None and not self.duration_s > 0:
            raise InputError(f"duration {self.duration_s} s is not positive")
        if self.iterations is not None:
            _check_positive("iterations", self.iterations)
        elif self.duration_s is None:
            object.__setattr__(self, "iterations", DEFAULT_ITERATIONS)
        if self.serial and not self.pipeline:
            raise InputError("serial applies to the pipeline mode only (add pipeline)")

    @property
    def mode(self) -> str:
        """``bench`` (backend.run only), ``pipelined`` or ``serial`` (full flow)."""
        if not self.pipeline:
            return "bench"
        return "serial" if self.serial else "pipelined"

    def blob_shape(self) -> tuple[int, int, int, int]:
        """``(batch, C, H, W)``."""
        return (self.batch, *self.shape)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (``shape`` as a list)."""
        d = dataclasses.asdict(dataclasses.replace(self, wrap=None))
        d["wrap"] = None if self.wrap is None else _callable_name(self.wrap)
        d["shape"] = list(self.shape)
        d["images"] = list(self.images)
        d["mode"] = self.mode
        if not isinstance(self.profile, str):
            d["profile"] = self.profile.to_dict()
        return d


def _callable_name(fn: Callable[..., Any]) -> str:
    """A readable name of a wrapper (a partial's function or class and its arguments)."""
    inner = getattr(fn, "func", fn)
    name = getattr(inner, "__qualname__", type(inner).__name__)
    args = [repr(a) for a in getattr(fn, "args", ())]
    args += [f"{k}={v!r}" for k, v in getattr(fn, "keywords", {}).items()]
    return f"{name}({', '.join(args)})" if hasattr(fn, "func") else name


def _check_positive(name: str, value: Any) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape must be C,H,W integers, got {shape!r}") from None
    if len(dims) != 3 or min(dims) < 1:
        raise InputError(f"shape must be three positive integers C,H,W, got {shape!r}")
    return dims  # type: ignore[return-value]
