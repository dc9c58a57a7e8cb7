"""The device flow's npz files (seed-flow.md section 4).

- **input npz** (``image2npz``): ``<out>/<name>.npz`` holding one array ``input_0``,
  uint8 RGB ``(3, H, W)`` at the original size; a **datalist** text file lists the
  absolute npz paths, one per line.
- **output npz** (vamp): ``output_000000.npz``, ``output_000001.npz``, ... in datalist
  order, keys ``output_0`` .. ``output_5`` (or ``output_8``), device layout
  ``(B, 2C, H, W)``, float16 or float32; order scores, boxes, landmarks.

Every reader validates and raises :class:`~scrfd_ref.errors.InputError` naming the file
and what was wrong (truncated or corrupt zip, missing key, wrong dtype or shape).
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataMissingError, InputError

INPUT_KEY = "input_0"
OUTPUT_PATTERN = "output_{:06d}.npz"
OUTPUT_DTYPES = {"fp16": np.float16, "fp32": np.float32}


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an npz, with clear errors for missing, truncated or corrupt files."""
    if not path.is_file():
        raise DataMissingError(f"npz file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as exc:
        raise InputError(f"{path}: not a readable npz file (truncated or corrupt?): "
                         f"{type(exc).__name__}: {exc}") from exc


def write_input_npz(path: str | os.PathLike[str], image_bgr: np.ndarray) -> Path:
    """Write a BGR ``(h, w, 3)`` uint8 image as ``input_0`` uint8 RGB ``(3, h, w)``."""
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise InputError(f"{path}: expected a uint8 (h, w, 3) image, got "
                         f"{image_bgr.dtype} {image_bgr.shape}")
    p = Path(path)
    _atomic_savez(p, {INPUT_KEY: np.ascontiguousarray(image_bgr[:, :, ::-1].transpose(2, 0, 1))})
    return p


def read_input_npz(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an input npz back as a BGR ``(h, w, 3)`` uint8 image."""
    p = Path(path)
    arrays = _load_npz(p)
    if INPUT_KEY not in arrays:
        raise InputError(f"{p}: no {INPUT_KEY!r} array (keys: {', '.join(arrays) or 'none'})")
    a = arrays[INPUT_KEY]
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[0] != 3 or min(a.shape) == 0:
        raise InputError(f"{p}: {INPUT_KEY} must be uint8 RGB (3, H, W), got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a.transpose(1, 2, 0)[:, :, ::-1])


def write_datalist(path: str | os.PathLike[str], npz_paths: Sequence[Path]) -> Path:
    """Write the datalist: absolute npz paths, one per line."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(f"{Path(x).resolve()}\n" for x in npz_paths))
    return p


def read_datalist(path: str | os.PathLike[str]) -> list[Path]:
    """Read a datalist (blank lines ignored); errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise DataMissingError(f"datalist not found: {p}")
    lines = [line.strip() for line in p.read_text().splitlines()]
    entries = [Path(line) for line in lines if line]
    if not entries:
        raise InputError(f"{p}: datalist is empty")
    return entries


def output_path(out_dir: str | os.PathLike[str], index: int) -> Path:
    """``<out_dir>/output_%06d.npz``."""
    return Path(out_dir) / OUTPUT_PATTERN.format(index)


def write_output_npz(path: str | os.PathLike[str], outputs: Sequence[np.ndarray],
                     dtype: str = "fp32") -> Path:
    """Write device-layout outputs as vamp does: keys ``output_0..``, fp16 or fp32."""
    if dtype not in OUTPUT_DTYPES:
        raise InputError(f"output dtype {dtype!r} is not one of {', '.join(OUTPUT_DTYPES)}")
    p = Path(path)
    _atomic_savez(p, {f"output_{i}": np.asarray(a, dtype=OUTPUT_DTYPES[dtype])
                      for i, a in enumerate(outputs)})
    return p


def read_output_npz(path: str | os.PathLike[str]) -> list[np.ndarray]:
    """Read one vamp output npz: arrays ``output_0..output_{n-1}`` in key order.

    Raises InputError for a truncated/corrupt file, missing or extra keys (the keys must
    be exactly ``output_0`` .. ``output_{n-1}`` with n = 6 or 9), a non-float dtype, or
    an array that is not rank 4 NCHW.
    """
    p = Path(path)
    arrays = _load_npz(p)
    n = len(arrays)
    want = [f"output_{i}" for i in range(n)]
    if n not in (6, 9) or sorted(arrays) != sorted(want):
        raise InputError(f"{p}: expected keys output_0..output_5 (or ..output_8), got "
                         f"{', '.join(sorted(arrays)) or 'none'}")
    out = [arrays[k] for k in want]
    for k, a in zip(want, out):
        if a.dtype not in (np.float16, np.float32):
            raise InputError(f"{p}: {k} has dtype {a.dtype}; the device writes float16 or float32")
        if a.ndim != 4:
            raise InputError(f"{p}: {k} has shape {a.shape}; device layout is (B, 2C, H, W)")
    return out
