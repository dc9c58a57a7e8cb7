"""The npz files of localize's cuts (inputs, goldens and a device's outputs of one cut).

A cut is a piece of the SCRFD graph (``scrfd-ref localize cut``). Its files follow the
device flow's conventions (seed-flow.md section 4) with the cut's own tensors:

- **segment input** ``<cuts>/inputs/<cut>/<image>.npz``: keys ``input_0`` ..
  ``input_{k-1}``, float32, in the order of the cut model's inputs, batch 1.
- **golden** ``<cuts>/golden/<stage>/output_NNNNNN.npz`` and a **device's outputs**
  ``<outputs>/<cut>/output_NNNNNN.npz``: keys ``output_0`` .. ``output_{m-1}`` in the cut
  model's output order, float16 or float32, one file per datalist line.

Readers know the shapes a cut declares and check every array's npy header against them
before anything is inflated; a missing, extra or misshapen array is named with the file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from scrfd_ref.core.errors import InputError
from scrfd_ref.formats.device_npz import _atomic_savez, _load_npz, _native
from scrfd_ref.formats.files import display


def write_cut_npz(path: str | os.PathLike[str], arrays: Sequence[np.ndarray], prefix: str,
                  dtype: type = np.float32) -> Path:
    """Write ``arrays`` as ``{prefix}_0 ..`` (``prefix`` ``input`` or ``output``)."""
    p = Path(path)
    _atomic_savez(p, {f"{prefix}_{i}": np.ascontiguousarray(a, dtype=dtype)
                      for i, a in enumerate(arrays)})
    return p


def read_cut_npz(path: str | os.PathLike[str], shapes: Sequence[Sequence[int]],
                 prefix: str = "output") -> list[np.ndarray]:
    """Read a cut's npz: exactly ``{prefix}_0 .. {prefix}_{k-1}``, each a float16/32 array of
    the shape ``shapes[i]`` declares (a leading batch of 1 may be dropped by the writer).

    Returns float32 arrays with the declared shapes.

    Raises:
        InputError: a corrupt file, missing or extra keys, a dtype that is not float16 or
            float32, a shape other than the cut's (all named with the file).
    """
    p = Path(path)
    want = {f"{prefix}_{i}": tuple(int(d) for d in s) for i, s in enumerate(shapes)}

    def fits(key: str, shape: tuple[int, ...]) -> bool:
        expected = want[key]
        return shape == expected or (expected[:1] == (1,) and shape == expected[1:])

    def check(key: str, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
        if key not in want:
            return (f"holds {key!r}, but this cut has {len(want)} "
                    f"{prefix}(s): {', '.join(want)}")
        if dtype.kind != "f" or dtype.itemsize not in (2, 4):
            return f"{key} has dtype {dtype}; cut files hold float16 or float32"
        if not fits(key, tuple(shape)):
            return (f"{key} declares shape {list(shape)}, the cut's tensor is "
                    f"{list(want[key])}")
        return None

    arrays = _load_npz(p, check)
    missing = [k for k in want if k not in arrays]
    if missing:
        raise InputError(f"{display(p)}: missing {', '.join(missing)} (a {prefix} file of this "
                         f"cut holds {', '.join(want)})")
    return [_native(arrays[k]).astype(np.float32, copy=False).reshape(want[k]) for k in want]


__all__ = ["read_cut_npz", "write_cut_npz"]
