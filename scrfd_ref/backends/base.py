"""The backend interface: a batch blob in, the model's raw head outputs out.

A backend never decodes: it returns the arrays the model (or device) produced, in
whatever layout; :func:`scrfd_ref.heads.normalize_heads` recognises them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

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
