"""Files on disk, safely: atomic writes with the user's umask, and path checks.

Every file scrfd-ref writes goes through :func:`atomic_write` (a temporary file in the
target's folder, renamed into place; removed on any error or Ctrl-C), so a reader, a
resumed run or an interrupted command never sees half a file, and the file gets the
permissions ``0o666 & ~umask`` like any file a shell command creates (``mkstemp`` alone
would make it ``0600``).

The path checks run before a command does any work, and raise
:class:`~scrfd_ref.core.errors.UsageError` (exit 2) or
:class:`~scrfd_ref.core.errors.DataMissingError` naming the option and the path:

- :func:`input_file` / :func:`input_dir`: exists, is of the right kind, readable;
- :func:`output_file` / :func:`output_dir`: not of the wrong kind, its folder can be
  created and written, and it is none of the command's inputs (:func:`same_path`
  compares device and inode, so links and ``..`` do not fool it).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from scrfd_ref.core.errors import DataMissingError, UsageError

PathLike = str | os.PathLike[str]

_UMASK: int | None = None


def current_umask() -> int:
    """The process umask (read once: reading it means setting it, which is not atomic)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


def display(path: PathLike) -> str:
    """``path`` as printable text (undecodable bytes of a file name shown as ``\\xNN``)."""
    text = os.fspath(path)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def same_path(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file or folder (same device and inode when
    both exist, else the same resolved path)."""
    pa, pb = Path(a), Path(b)
    try:
        sa, sb = pa.stat(), pb.stat()
        return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
    except OSError:
        return pa.resolve() == pb.resolve()


def is_inside(path: PathLike, folder: PathLike) -> bool:
    """True when ``path`` is ``folder`` or lies below it (resolved paths)."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


# ----------------------------------------------------------------------------- checks


def _name(option: str | None, path: PathLike) -> str:
    return f"{option} {display(path)}" if option else display(path)


def _a(what: str) -> str:
    return f"{'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"


def input_file(path: PathLike, option: str | None = None, what: str = "file") -> Path:
    """``path`` as an existing, readable regular file, else a one-line error.

    Raises:
        DataMissingError: nothing at ``path`` (exit 2).
        UsageError: ``path`` is a folder or unreadable (exit 2).
    """
    p = Path(path)
    if not p.exists():
        raise DataMissingError(f"{_name(option, p)}: {what} not found")
    if p.is_dir():
        raise UsageError(f"{_name(option, p)}: is a folder, not {_a(what)}")
    if not p.is_file():
        raise UsageError(f"{_name(option, p)}: not a regular file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{_name(option, p)}: not readable (permission denied)")
    return p


def input_dir(path: PathLike, option: str | None = None, what: str = "folder") -> Path:
    """``path`` as an existing, readable folder, else a one-line error."""
    p = Path(path)
    if not p.exists():
        raise DataMissingError(f"{_name(option, p)}: {what} not found")
    if not p.is_dir():
        raise UsageError(f"{_name(option, p)}: is a file, not {_a(what)}")
    if not os.access(p, os.R_OK | os.X_OK):
        raise UsageError(f"{_name(option, p)}: not readable (permission denied)")
    return p


def _creatable_folder(folder: Path, option: str | None, target: Path) -> None:
    """``folder`` exists as a writable folder, or can be created (nearest ancestor writable)."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UsageError(f"{_name(option, target)}: {display(probe)} is a file, not a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{_name(option, target)}: folder {display(probe)} is not writable "
                         "(permission denied); choose another place")


def _not_an_input(target: Path, option: str | None, inputs: Iterable[PathLike]) -> None:
    for inp in inputs:
        if inp is not None and Path(inp).exists() and same_path(target, inp):
            raise UsageError(f"{_name(option, target)}: is one of the command's inputs "
                             f"({display(inp)}); write the output somewhere else")


def output_file(path: PathLike, option: str | None = None, *,
                inputs: Iterable[PathLike] = (),
                own: "tuple[Callable[[Path], bool], str] | None" = None) -> Path:
    """Check that a file can be written at ``path`` (``-`` is left to the caller).

    ``inputs`` are the command's input files and folders: ``path`` may be none of them,
    nor lie inside an input folder (a prediction folder, a report folder).

    ``own`` is ``(recognizer, what)``: an existing file is replaced only when the
    recognizer says it is a file of the kind this option writes (``what``, e.g. "a
    detections JSON"); any other file is the user's and is refused by name.

    Raises:
        UsageError: ``path`` is a folder, its folder cannot be created or written, it is
            (or lies in) one of ``inputs``, or it is an existing file ``own`` does not
            recognize.
    """
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{_name(option, p)}: is a folder; give a file name")
    if p.name in ("", ".", ".."):
        raise UsageError(f"{_name(option, p)}: not a file name")
    inputs = [i for i in inputs if i is not None]
    _not_an_input(p, option, inputs)
    for inp in inputs:   # never written inside an input folder (a report, predictions)
        if Path(inp).is_dir() and is_inside(p, inp):
            raise UsageError(f"{_name(option, p)}: lies inside the input folder "
                             f"{display(inp)}; write the output somewhere else")
    _creatable_folder(p.parent, option, p)
    if own is not None and p.is_file() and not _recognized(p, own[0]):
        raise UsageError(f"{_name(option, p)}: exists and is not {own[1]} (a file of yours?); "
                         "it is not replaced: remove it, or choose another name")
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{_name(option, p)}: exists and is not writable (permission denied)")
    return p


def _recognized(path: Path, recognizer: "Callable[[Path], bool]") -> bool:
    try:
        return bool(recognizer(path))
    except Exception:  # noqa: BLE001 - an unreadable file is not one we recognize
        return False


def output_dir(path: PathLike, option: str | None = None, *,
               inputs: Iterable[PathLike | tuple[PathLike, str]] = ()) -> Path:
    """Check that ``path`` is (or can become) a writable folder that is none of ``inputs``
    and lies inside none of the input folders.

    Raises:
        UsageError: ``path`` is a file, cannot be created or written, is one of ``inputs``,
            or lies inside an input folder (the folder of an input file is fine). An input
            given as ``(path, option)`` is named by its option.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{_name(option, p)}: is a file; give a folder")
    _not_a_dangling_link(p, option)
    named = [i if isinstance(i, tuple) else (i, None) for i in inputs]
    named = [(i, o) for i, o in named if i is not None]
    _not_an_input(p, option, [i for i, _ in named])
    for inp, inp_option in named:   # outputs never inside an input folder (a dump, images)
        if Path(inp).is_dir() and is_inside(p, inp):
            what = f"{inp_option} {display(inp)}" if inp_option else \
                f"the input folder {display(inp)}"
            raise UsageError(f"{_name(option, p)}: lies inside {what}; write outputs "
                             "somewhere else")
    _creatable_folder(p, option, p)
    return p


def _not_a_dangling_link(p: Path, option: str | None) -> None:
    if p.is_symlink() and not p.exists():
        raise UsageError(f"{_name(option, p)}: a symbolic link to {display(os.readlink(p))}, "
                         "which does not exist; create that folder, or give another path")


def make_dir(path: PathLike, option: str | None = None) -> Path:
    """Create folder ``path`` (and parents); a clean error when that is impossible."""
    p = Path(path)
    _not_a_dangling_link(p, option)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((q for q in (p, *p.parents) if q.exists() and not q.is_dir()), p)
        raise UsageError(f"{_name(option, p)}: {display(blocker)} is a file, not a folder; "
                         "move it away, or choose another folder") from None
    except OSError as exc:
        raise UsageError(f"{_name(option, p)}: cannot create folder: "
                         f"{exc.strerror or exc}; choose a folder you can write") from None
    return p


# ----------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb", *, encoding: str | None = None,
                 fsync: bool = False) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it onto ``path``.

    The file gets ``0o666 & ~umask`` permissions. On any exception (also
    ``KeyboardInterrupt``) the temporary file is removed and ``path`` is untouched.
    Parent folders are created.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((q for q in (p.parent, *p.parent.parents)
                        if q.exists() and not q.is_dir()), p.parent)
        from scrfd_ref.core.errors import InputError

        raise InputError(f"{display(blocker)}: is a file where a folder is needed (to write "
                         f"{display(p.name)}); move it away, or write elsewhere") from None
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        kwargs = {"encoding": encoding or "utf-8", "newline": "\n"} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb", fsync=fsync) as f:
        f.write(data)
    return Path(path)


def write_text(path: PathLike, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically."""
    with atomic_write(path, "w", fsync=fsync) as f:
        f.write(text)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """A temporary folder beside ``path`` renamed onto it on success (an existing
    ``path`` is kept, and the new one dropped, when another writer got there first).
    Folder permissions follow the umask."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=p.parent, prefix=f".{p.name}."))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        yield tmp
        try:
            os.replace(tmp, p)
        except OSError:  # another writer saved the same folder first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_digest(path: PathLike) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
