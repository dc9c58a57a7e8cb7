"""Replay backend: head outputs read from files dumped by a device (no device attached).

Reads a folder of vamp output npz files (``output_000000.npz`` ..., device layout) or
the project's own dumps (the same format, written by ``scrfd-ref dump``), with the
datalist they follow (``datalist.txt`` in or beside the folder, or given). The whole
folder is checked when the backend opens (:func:`scrfd_ref.formats.device_outputs.check_outputs`:
pairing, keys, dtypes, shapes, NaN / Inf counts), so a bad file is named before any
comparison starts. Files holding a batch (``vamp -b B``) are served image by image in
datalist order. ``run(blob)`` returns the next ``B`` entries joined on the batch axis
(the blob itself is only used for its batch size); :meth:`outputs_for` gives entry ``i``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scrfd_ref.backends.base import Backend
from scrfd_ref.core.errors import DataMissingError, InputError


class ReplayBackend(Backend):
    """Serve saved device outputs as if a device had produced them.

    Args:
        model: the folder of ``output_*.npz`` files (named ``model`` so every backend
            is created the same way through the registry).
        dtype: label for reports (the files' own dtype is reported too).
        datalist: the datalist the outputs follow (default: found in or beside the folder).
        input_size: network input ``(W, H)`` the outputs must fit (default: from the maps).
        allow_nonfinite: accept NaN / Inf values (a conformance run then fails the
            ``nonfinite`` head gate instead of refusing the folder).
        partial: the folder is an interrupted dump accepted on purpose
            (``--allow-incomplete``): serve the entries whose outputs exist
            (:attr:`available`), refuse the others by name.
    """

    name = "replay"

    def __init__(self, model: str | Path, dtype: str | None = None,
                 datalist: str | Path | None = None,
                 input_size: tuple[int, int] | None = None, allow_nonfinite: bool = False,
                 partial: bool = False, **_: Any) -> None:
        from scrfd_ref.formats.device_outputs import check_outputs

        self.folder = Path(model)
        if not self.folder.is_dir():
            raise DataMissingError(f"replay folder not found: {self.folder}")
        if not any(self.folder.glob("output_*.npz")):
            raise InputError(f"{self.folder}: no output_*.npz files to replay")
        self.checked = check_outputs(self.folder, datalist, input_size=input_size,
                                     allow_nonfinite=allow_nonfinite,
                                     what=f"replay folder {self.folder}", partial=partial)
        self.count = len(self.checked.slots)
        #: datalist index -> its slot (every line; an interrupted dump's finished lines)
        self._slots = {s.index: s for s in self.checked.slots}
        self.cursor = 0
        first = self.checked.read(self.checked.slots[0])
        self.file_dtype = str(first[0].dtype)
        self.dtype = dtype or {"float16": "fp16", "float32": "fp32"}[self.file_dtype]
        h8, w8 = max((a.shape[2:] for a in first), key=lambda hw: hw[0] * hw[1])
        self._input_size = (int(w8) * 8, int(h8) * 8)

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self._input_size

    @property
    def entries(self) -> list[Path]:
        """The datalist entries with outputs, in order."""
        return [s.entry for s in self.checked.slots]

    @property
    def available(self) -> list[int]:
        """Datalist indices (0-based) that have outputs (all of them unless ``partial``)."""
        return sorted(self._slots)

    def outputs_for(self, index: int) -> list[np.ndarray]:
        """The outputs of datalist entry ``index`` (batch axis 1)."""
        slot = self._slots.get(index)
        if slot is None:
            why = (" (the dump did not finish it)" if index in self.checked.unfinished
                   else f" (holds {self.count})")
            raise InputError(f"{self.folder}: no outputs for datalist entry {index + 1}{why}")
        return self.checked.read(slot)

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        b = int(blob.shape[0])
        order = self.available
        files = [self.outputs_for(order[self.cursor + i]) for i in range(b)]
        self.cursor += b
        return [np.concatenate(arrs, axis=0) for arrs in zip(*files)] if b > 1 else files[0]

    def rewind(self) -> None:
        """Serve from the first entry again."""
        self.cursor = 0

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "library": "numpy", "version": np.__version__,
                "folder": str(self.folder), "files": len(self.checked.batches),
                "entries": self.count, "dtype": self.dtype, "file_dtype": self.file_dtype,
                "device": "replay"}
