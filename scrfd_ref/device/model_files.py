"""Model files on disk: load and check an ONNX file, upgrade its opset, and the pieces of
the derived-model cache (a temporary name beside the target, a per-file lock, entries saved
with a record of their sha256 and verified against it before use).

Shared by the emulated devices (:mod:`scrfd_ref.device.emulate`) and the dtype conversions
of :mod:`scrfd_ref.quantize`.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from scrfd_ref.core.errors import InputError


def load_checked_model(src: Path) -> Any:
    """Load and check an ONNX file; nodes get names where they lack one.

    Raises :class:`InputError` naming ``src`` for a truncated, corrupt or empty model."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(src))
    except (DecodeError, ValueError, OSError) as exc:
        raise InputError(f"{src}: not a readable ONNX model (truncated, corrupt or not "
                         f"ONNX): {exc}") from exc
    if not model.HasField("graph") or not model.graph.node:
        raise InputError(f"{src}: not an ONNX model (no graph or no nodes)")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{src}: corrupt ONNX model, onnx.checker says: {first}") from exc
    name_nodes(model)
    return model


def name_nodes(model: Any) -> None:
    """Give every unnamed node a unique name (``<op>_<i>``), in place."""
    taken = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_auto{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def upgrade_opset(model: Any, src: Path, opset: int) -> Any:
    """``model`` converted to ``opset`` (unchanged when already there); an op the converter
    cannot move raises :class:`InputError` naming ``src``."""
    from onnx import version_converter

    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if current >= opset:
        return model
    try:
        return version_converter.convert_version(model, opset)
    except Exception as exc:  # the converter raises bare RuntimeErrors per op
        raise InputError(f"{src}: cannot upgrade opset {current} -> {opset}: "
                         f"{str(exc).strip().splitlines()[0]}") from exc


@contextlib.contextmanager
def temp_beside(path: Path) -> Iterator[Path]:
    """A temporary file name in ``path``'s folder, removed if still there on exit."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock on ``path`` (POSIX ``fcntl``; no lock where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: the atomic rename alone keeps the cache consistent
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_model_ok(path: Path) -> bool:
    """True when ``path`` holds the model recorded when it was written into the cache
    (:func:`~scrfd_ref.formats.run_outputs.verified_entry`: same name, size and sha256);
    a damaged, replaced or unrecorded entry is removed (with a notice on stderr) so the
    caller rebuilds it."""
    from scrfd_ref.formats.run_outputs import verified_entry

    return verified_entry(path, "cached model")


def save_cached_model(model: Any, path: Path, **about: Any) -> Path:
    """Write ``model`` into the cache atomically, then its record (what
    :func:`cached_model_ok` checks); ``about``: what it was made from."""
    from scrfd_ref.device.onnx_tools import save_model
    from scrfd_ref.formats.run_outputs import record_entry

    save_model(model, path)
    record_entry(path, **about)
    return path
