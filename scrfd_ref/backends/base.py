"""The backend interface: a batch blob in, the model's raw head outputs out.

A backend never decodes: it returns the arrays the model (or device) produced, in
whatever layout; :func:`scrfd_ref.core.heads.normalize_heads` recognises them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np


class Backend(ABC):
    """Something that turns an input blob into SCRFD head outputs."""

    #: registry name (``ort``, ``opencv``, ``replay``, ...)
    name: str = "?"

    @property
    def input_size(self) -> tuple[int, int] | None:
        """Fixed network input ``(W, H)`` when the model has one, else None (dynamic)."""
        return None

    @abstractmethod
    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """Run a ``(B, 3, H, W)`` float32 blob; return the raw outputs, batch first.

        Outputs of models without a batch axis (``(N, C)``) come back as ``(N, C)`` for
        B == 1 and stacked to ``(B, N, C)`` otherwise.
        """

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """What this backend is, for reports: library and version, provider, dtype, device."""

    def close(self) -> None:
        """Release sessions or files (default: nothing)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_in_model_batches(blob: np.ndarray, run_one: Callable[[np.ndarray], list[np.ndarray]], *,
                         input_size: tuple[int, int] | None, fixed_batch: int | None,
                         label: str) -> list[np.ndarray]:
    """Run ``blob`` through ``run_one`` respecting a model's fixed input size and batch.

    A batch-1 model gets one call per image, joined with :func:`stack_outputs`; any other
    mismatch (fixed size, fixed batch > 1) is an InputError naming ``label``.
    """
    from scrfd_ref.core.errors import InputError

    if input_size is not None and (blob.shape[3], blob.shape[2]) != input_size:
        raise InputError(f"{label}: model input is fixed at {input_size[0]}x{input_size[1]}, "
                         f"blob is {blob.shape[3]}x{blob.shape[2]}")
    if fixed_batch is None or blob.shape[0] == fixed_batch:
        return run_one(blob)
    if fixed_batch != 1:
        raise InputError(f"{label}: model batch is fixed at {fixed_batch}, blob has {blob.shape[0]}")
    return stack_outputs([run_one(blob[i:i + 1]) for i in range(blob.shape[0])])


def stack_outputs(per_image: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Join per-image output lists into batch outputs (concat batch-1 axes, else stack)."""
    if len(per_image) == 1:
        return per_image[0]
    joined = []
    for arrays in zip(*per_image):
        first = arrays[0]
        if first.ndim >= 3 and first.shape[0] == 1:
            joined.append(np.concatenate(arrays, axis=0))
        else:
            joined.append(np.stack(arrays, axis=0))
    return joined
