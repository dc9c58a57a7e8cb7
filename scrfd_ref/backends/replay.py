"""Replay backend: head outputs read from files dumped by a device (no device attached).

Reads a folder of vamp output npz files (``output_000000.npz`` ..., device layout) or
the project's own dumps (the same format, written by ``scrfd-ref dump``). Files are
served in index order: ``run(blob)`` returns the next ``B`` files joined on the batch
axis (the blob itself is only used for its batch size), and :meth:`outputs_for` gives
file ``i`` directly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataMissingError, InputError
from ..formats.device_npz import output_path, read_output_npz
from .base import Backend


class ReplayBackend(Backend):
    """Serve saved device outputs as if a device had produced them.

    Args:
        model: the folder of ``output_*.npz`` files (named ``model`` so every backend
            is created the same way through the registry).
        dtype: label for reports (the files' own dtype is reported too).
    """

    name = "replay"

    def __init__(self, model: str | Path, dtype: str | None = None, **_: Any) -> None:
        self.folder = Path(model)
        if not self.folder.is_dir():
            raise DataMissingError(f"replay folder not found: {self.folder}")
        self.count = len(list(self.folder.glob("output_*.npz")))
        if self.count == 0:
            raise InputError(f"{self.folder}: no output_*.npz files to replay")
        self.cursor = 0
        first = read_output_npz(output_path(self.folder, 0))
        self.file_dtype = str(first[0].dtype)
        self.dtype = dtype or {"float16": "fp16", "float32": "fp32"}[self.file_dtype]
        h8, w8 = max((a.shape[2:] for a in first), key=lambda hw: hw[0] * hw[1])
        self._input_size = (int(w8) * 8, int(h8) * 8)

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self._input_size

    def outputs_for(self, index: int) -> list[np.ndarray]:
        """The outputs of datalist entry ``index``."""
        if not 0 <= index < self.count:
            raise InputError(f"{self.folder}: no output file {index} (holds {self.count})")
        return read_output_npz(output_path(self.folder, index))

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        b = int(blob.shape[0])
        files = [self.outputs_for(self.cursor + i) for i in range(b)]
        self.cursor += b
        return [np.concatenate(arrs, axis=0) for arrs in zip(*files)] if b > 1 else files[0]

    def rewind(self) -> None:
        """Serve from the first file again."""
        self.cursor = 0

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "library": "numpy", "version": np.__version__,
                "folder": str(self.folder), "files": self.count, "dtype": self.dtype,
                "file_dtype": self.file_dtype, "device": "replay"}
