"""The device flow's npz files (seed-flow.md section 4).

- **input npz** (``image2npz``): ``<out>/<name>.npz`` holding one array ``input_0``,
  uint8 RGB ``(3, H, W)`` at the original size; a **datalist** text file lists the
  absolute npz paths, one per line.
- **output npz** (vamp): ``output_000000.npz``, ``output_000001.npz``, ... in datalist
  order, keys ``output_0`` .. ``output_5`` (or ``output_8``), device layout
  ``(B, 2C, H, W)``, float16 or float32; order scores, boxes, landmarks. A batched run
  (``vamp -b B``) writes ``B`` images per file, the last file possibly fewer.

Every reader validates and raises :class:`~scrfd_ref.core.errors.InputError` naming the file
and what was wrong (truncated or corrupt zip, missing key, wrong dtype or shape). The shape
and dtype each array declares in its npy header are checked before the array is read, so a
small file that would inflate to gigabytes costs nothing. Big-endian float arrays are read
as the native floats they hold. Files are written atomically with the user's umask
(:mod:`scrfd_ref.formats.files`).
"""
from __future__ import annotations

import math
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scrfd_ref.core.errors import DataMissingError, InputError
from scrfd_ref.formats.files import atomic_write, display, file_digest, write_text

INPUT_KEY = "input_0"
OUTPUT_PATTERN = "output_{:06d}.npz"
OUTPUT_NAME = re.compile(r"^output_(\d+)\.npz$")
OUTPUT_DTYPES = {"fp16": np.float16, "fp32": np.float32}
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")    # an npz is a zip (the second: empty)
#: most images one output file may hold (vamp -b), and channels of one device head
#: (2 anchors x 10 landmark values)
MAX_OUTPUT_BATCH = 1024
MAX_HEAD_CHANNELS = 20
#: the largest head map side when the input size is not known (an 8192 input, stride 8)
MAX_HEAD_SIDE = 1024
#: what one output file may inflate to when nothing tighter is known
MAX_OUTPUT_FILE_BYTES = 1 << 30
#: a header check: ``(key, shape, dtype) -> problem or None``, before the array is read
HeaderCheck = Callable[[str, tuple[int, ...], np.dtype], "str | None"]
_IMAGE_HINT = "a datalist lists input npz files, make them with scrfd-ref image2npz"
# what is often passed by mistake, to name it in the error
_OTHER_MAGIC = ((b"\xff\xd8\xff", f"a JPEG image: {_IMAGE_HINT}"),
                (b"\x89PNG", f"a PNG image: {_IMAGE_HINT}"),
                (b"\x93NUMPY", "a single .npy array, not an npz archive"))


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"  # pragma: no cover


def _npy_headers(z: Any) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{key: (shape, dtype)}`` of the ``.npy`` members of an open npz, from their
    headers only (members that are not npy arrays are left out)."""
    fmt = np.lib.format
    headers = {}
    for key in z.files:
        member = key if key in z.zip.namelist() else f"{key}.npy"
        with z.zip.open(member) as f:
            if f.read(6) != fmt.MAGIC_PREFIX:
                continue
            f.seek(0)
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(f)
            else:  # numpy writes 3.0 (utf-8 header) only for structured arrays
                raise ValueError(f"{member}: npy format version {version[0]}.{version[1]} "
                                 "(only 1.0 and 2.0 hold the arrays of these files)")
        headers[key] = (tuple(int(d) for d in shape), np.dtype(dtype))
    return headers


def _load_npz(path: Path, check: HeaderCheck | None = None) -> dict[str, np.ndarray]:
    """All arrays of an npz, with clear errors for missing, truncated or corrupt files.

    ``check`` sees each array's declared shape and dtype before anything is inflated; a
    problem it returns is raised (InputError naming the file), nothing read.
    """
    if not path.is_file():
        raise DataMissingError(f"npz file not found: {display(path)}")
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise InputError(f"{display(path)}: cannot read: {exc.strerror or exc}") from None
    with f:
        head = f.read(8)
        if not head.startswith(ZIP_MAGIC):
            kind = "empty" if not head else next(
                (k for magic, k in _OTHER_MAGIC if head.startswith(magic)), None)
            raise InputError(f"{display(path)}: not an npz file (no zip header"
                             + (f"; it is {kind})" if kind else ")"))
        f.seek(0)
        try:
            with np.load(f, allow_pickle=False) as z:
                if check is not None:
                    for key, (shape, dtype) in _npy_headers(z).items():
                        problem = check(key, shape, dtype)
                        if problem:
                            raise InputError(f"{display(path)}: {problem}")
                return {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError, TypeError,
                NotImplementedError, RuntimeError, IndexError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{display(path)}: not a readable npz file (truncated or "
                             f"corrupt?): {type(exc).__name__}: {exc}") from exc


def write_input_npz(path: str | os.PathLike[str], image_bgr: np.ndarray) -> Path:
    """Write a BGR ``(h, w, 3)`` uint8 image as ``input_0`` uint8 RGB ``(3, h, w)``."""
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise InputError(f"{display(path)}: expected a uint8 (h, w, 3) image, got "
                         f"{image_bgr.dtype} {image_bgr.shape}")
    p = Path(path)
    _atomic_savez(p, {INPUT_KEY: np.ascontiguousarray(image_bgr[:, :, ::-1].transpose(2, 0, 1))})
    return p


def read_input_npz(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an input npz back as a BGR ``(h, w, 3)`` uint8 image (pixel limit applies)."""
    from scrfd_ref.formats.images import check_pixels, max_pixels

    p = Path(path)

    def check(key: str, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
        if key == INPUT_KEY and dtype == np.uint8 and len(shape) == 3 and shape[0] == 3:
            check_pixels(int(shape[2]), int(shape[1]), p)  # before the pixels are read
            return None
        if math.prod(shape) * dtype.itemsize > 3 * max_pixels():
            return (f"{key} declares {shape} {dtype.name} in its header, larger than an image "
                    "within the pixel limit")
        return None

    arrays = _load_npz(p, check)
    if INPUT_KEY not in arrays:
        raise InputError(f"{display(p)}: no {INPUT_KEY!r} array "
                         f"(keys: {', '.join(arrays) or 'none'})")
    a = arrays[INPUT_KEY]
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[0] != 3 or min(a.shape) == 0:
        raise InputError(f"{display(p)}: {INPUT_KEY} must be uint8 RGB (3, H, W), got "
                         f"{a.dtype} {a.shape}")
    check_pixels(int(a.shape[2]), int(a.shape[1]), p)
    import cv2

    # planar RGB -> interleaved BGR; cv2.merge is ~8x faster than a strided numpy copy
    return cv2.merge([np.ascontiguousarray(a[2]), np.ascontiguousarray(a[1]),
                      np.ascontiguousarray(a[0])])


def is_datalist(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` reads as a datalist (non-empty lines of ``.npz`` paths): what
    ``image2npz --text-path`` may replace."""
    try:
        lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8-sig").splitlines()]
    except (OSError, UnicodeDecodeError):
        return False
    lines = [ln for ln in lines if ln]
    return bool(lines) and all(ln.lower().endswith(".npz") for ln in lines)


def is_input_npz(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is an input npz (``input_0`` uint8 RGB): what ``image2npz`` may
    replace in ``--target-path``."""
    try:
        read_input_npz(path)
        return True
    except (InputError, OSError):
        return False


def write_datalist(path: str | os.PathLike[str], npz_paths: Sequence[Path]) -> Path:
    """Write the datalist: absolute npz paths, one per line (atomically)."""
    return write_text(path, "".join(f"{os.fspath(Path(x).resolve())}\n" for x in npz_paths))


def read_datalist(path: str | os.PathLike[str]) -> list[Path]:
    """Read a datalist (blank lines ignored); errors name the file.

    Raises:
        DataMissingError: no such file.
        InputError: unreadable, empty, or a line repeated (which would pair later outputs
            with the wrong images).
    """
    p = Path(path)
    if not p.exists():
        raise DataMissingError(f"datalist not found: {display(p)}")
    if p.is_dir():
        raise InputError(f"datalist {display(p)}: is a folder; give the datalist text file")
    try:
        text = p.read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape")
    except OSError as exc:  # (a UTF-8 BOM, as Windows editors write it, is not a path)
        raise InputError(f"datalist {display(p)}: cannot read: {exc.strerror or exc}") from None
    lines = [line.strip() for line in text.splitlines()]
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line]
    if not numbered:
        raise InputError(f"{display(p)}: datalist is empty")
    if "\0" in text:
        raise InputError(f"{display(p)}: datalist holds NUL bytes (a binary file?)")
    problems = datalist_problems([Path(line) for _, line in numbered],
                                 [n for n, _ in numbered], p)
    if problems:
        raise InputError(f"datalist {display(p)}: " + "; ".join(problems[:5])
                         + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
    return [Path(line) for _, line in numbered]


def input_fingerprints(entries: Sequence[Path]) -> dict[str, list]:
    """``{name: [size, mtime_ns, sha256]}`` of the input npz files of a datalist.

    Every file is read and hashed (a size and a modification time can be kept while the
    content changes), so inputs regenerated under the same names are told apart.
    """
    from concurrent.futures import ThreadPoolExecutor

    from scrfd_ref.core.parallel import usable_cores

    def one(e: Path) -> list:
        p = Path(e)
        try:
            st = p.stat()
            return [st.st_size, st.st_mtime_ns, file_digest(p)]
        except OSError as exc:
            raise InputError(f"{display(p)}: cannot read: {exc.strerror or exc}") from None

    with ThreadPoolExecutor(max(1, usable_cores())) as pool:  # sha256 releases the GIL
        return {Path(e).name: row for e, row in zip(entries, pool.map(one, entries))}


def datalist_problems(entries: Sequence[Path], line_numbers: Sequence[int] | None = None,
                      where: Path | None = None) -> list[str]:
    """Repeated lines and repeated image names (two inputs of one name) of a datalist."""
    numbers = list(line_numbers or range(1, len(entries) + 1))
    problems = []
    seen: dict[str, int] = {}
    stems: dict[str, int] = {}
    for n, e in zip(numbers, entries):
        key = os.path.normpath(os.fspath(e))
        if key in seen:
            problems.append(f"line {n} repeats line {seen[key]} ({display(e)}): every image "
                            "must be listed once, or later outputs pair with the wrong images")
            continue
        seen[key] = n
        if e.stem in stems:
            problems.append(f"line {n} ({display(e)}) has the image name {display(e.stem)} of "
                            f"line {stems[e.stem]}: names must be unique (predictions are "
                            "written per name)")
        stems.setdefault(e.stem, n)
    return problems


def output_path(out_dir: str | os.PathLike[str], index: int) -> Path:
    """``<out_dir>/output_%06d.npz``."""
    return Path(out_dir) / OUTPUT_PATTERN.format(index)


def scan_output_files(out_dir: str | os.PathLike[str]) -> tuple[list[Path], list[str]]:
    """The ``output_<n>.npz`` files of a folder in index order, and naming problems.

    Problems: two files with the same index (``output_1.npz`` and ``output_000001.npz``),
    indices that do not run ``0 .. n-1`` without a gap.
    """
    folder = Path(out_dir)
    by_index: dict[int, list[Path]] = {}
    for f in folder.iterdir():
        m = OUTPUT_NAME.match(f.name)
        if m and f.is_file():
            by_index.setdefault(int(m.group(1)), []).append(f)
    problems = [f"{', '.join(display(p.name) for p in sorted(v))}: repeated output files for "
                f"index {k}" for k, v in sorted(by_index.items()) if len(v) > 1]
    if by_index:
        missing = sorted(set(range(max(by_index) + 1)) - set(by_index))
        if missing:
            shown = ", ".join(OUTPUT_PATTERN.format(i) for i in missing[:5])
            problems.append(f"{display(folder)}: output file(s) missing in the sequence: {shown}"
                            + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""))
    return [sorted(by_index[k])[0] for k in sorted(by_index)], problems


def write_output_npz(path: str | os.PathLike[str], outputs: Sequence[np.ndarray],
                     dtype: str = "fp32") -> Path:
    """Write device-layout outputs as vamp does: keys ``output_0..``, fp16 or fp32."""
    if dtype not in OUTPUT_DTYPES:
        raise InputError(f"output dtype {dtype!r} is not one of {', '.join(OUTPUT_DTYPES)}")
    p = Path(path)
    _atomic_savez(p, {f"output_{i}": np.asarray(a, dtype=OUTPUT_DTYPES[dtype])
                      for i, a in enumerate(outputs)})
    return p


def read_raw_output_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of an output npz, unchecked but for the size its headers declare (for
    diagnosis before strict validation)."""
    return _load_npz(Path(path), output_header_check())


def output_header_check(input_size: tuple[int, int] | None = None,
                        max_batch: int | None = None) -> HeaderCheck:
    """The check of an output array's npy header before it is read: a rank-4 float array
    no larger than an SCRFD device head of ``max_batch`` images (at most
    :data:`MAX_OUTPUT_BATCH`) at ``input_size`` (``(W, H)``; unknown: an 8192 input), and
    the whole file within :data:`MAX_OUTPUT_FILE_BYTES` unless those shapes allow more.

    Shapes that fit the bound but not SCRFD are left to the strict checks after reading.
    """
    batch = min(max_batch or MAX_OUTPUT_BATCH, MAX_OUTPUT_BATCH)
    if input_size is not None:
        w, h = (-(-int(v) // 8) for v in input_size)
        where = f"{batch} image(s) at {input_size[0]}x{input_size[1]}"
    else:
        w = h = MAX_HEAD_SIDE
        where = f"{batch} image(s) at any input size"
    per_array = batch * MAX_HEAD_CHANNELS * w * h * 4
    budget = max(MAX_OUTPUT_FILE_BYTES, 9 * per_array) if input_size is None else 9 * per_array
    used = [0]

    def check(key: str, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
        nbytes = math.prod(shape) * dtype.itemsize
        used[0] += nbytes
        what = f"{key} declares {shape} {dtype.name} ({_size(nbytes)}) in its header"
        if dtype.kind != "f" or dtype.itemsize not in (2, 4):
            return None  # named by the strict check (without reading a huge array first)
        if nbytes > per_array or used[0] > budget:
            return (f"{what}, more than the SCRFD heads of {where} take (at most ({batch}, "
                    f"{MAX_HEAD_CHANNELS}, {h}, {w})); refused before reading it")
        return None
    return check


def _native(a: np.ndarray) -> np.ndarray:
    """A big-endian float array as the same values in native byte order."""
    return a.astype(a.dtype.newbyteorder("=")) if not a.dtype.isnative else a


def read_output_npz(path: str | os.PathLike[str], *, input_size: tuple[int, int] | None = None,
                    max_batch: int | None = None) -> list[np.ndarray]:
    """Read one vamp output npz: arrays ``output_0..output_{n-1}`` in key order.

    Each array's header is checked first (:func:`output_header_check` with ``input_size``
    and ``max_batch``): nothing larger than SCRFD heads is inflated. Big-endian floats are
    returned in native byte order.

    Raises InputError for a truncated/corrupt file, a header declaring more than SCRFD
    heads hold, missing or extra keys (the keys must be exactly ``output_0`` ..
    ``output_{n-1}`` with n = 6 or 9), a non-float dtype, an array that is not rank 4
    NCHW, or arrays that disagree on the batch size.
    """
    p = Path(path)
    arrays = _load_npz(p, output_header_check(input_size, max_batch))
    n = len(arrays)
    want = [f"output_{i}" for i in range(n)]
    if n not in (6, 9) or sorted(arrays) != sorted(want):
        raise InputError(f"{display(p)}: expected keys output_0..output_5 (or ..output_8), got "
                         f"{', '.join(sorted(arrays)) or 'none'}")
    out = [arrays[k] for k in want]
    for k, a in zip(want, out):
        if a.dtype.kind != "f" or a.dtype.itemsize not in (2, 4):
            raise InputError(f"{display(p)}: {k} has dtype {a.dtype}; the device writes float16 "
                             "or float32")
    out = [_native(a) for a in out]
    for k, a in zip(want, out):
        if a.ndim != 4:
            raise InputError(f"{display(p)}: {k} has shape {a.shape}; device layout is "
                             "(B, 2C, H, W)")
    batches = {a.shape[0] for a in out}
    if len(batches) != 1 or 0 in batches:
        raise InputError(f"{display(p)}: the arrays disagree on the batch size (or it is 0): "
                         + ", ".join(f"{k} {a.shape}" for k, a in zip(want, out)))
    return out


def nonfinite_counts(arrays: Sequence[np.ndarray]) -> dict[str, int]:
    """``{output_i: count}`` of NaN / Inf elements, only for arrays that have some."""
    counts = {}
    for i, a in enumerate(arrays):
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            counts[f"output_{i}"] = bad
    return counts


def npz_array_shape(path: str | os.PathLike[str], key: str) -> tuple[int, ...] | None:
    """Shape of one array of an npz read from its header only (None when unreadable)."""
    try:
        with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as f:
            fmt = np.lib.format
            version = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, _ = read(f)
            return tuple(int(d) for d in shape)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None
