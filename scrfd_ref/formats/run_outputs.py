"""The files a run writes: their recorded sha256, the folder's writer lock, the inputs.

Identity is content (``../shared/docs/conventions.md``): every file a run writes into its
output folder is recorded in the run's manifest with its sha256 when it is written
(``"sha256": {"output_0.npz": "…", …}``), and the record is what later steps trust:

- a resumed run keeps only the files whose bytes still match their record
  (:func:`intact`); a file cut short, replaced or written after the last manifest update
  is computed again, and the run says how many;
- a consumer refuses a file whose bytes disagree with the record, and a file the record
  does not know in a finished run (:func:`hash_problems`);
- ``--overwrite`` deletes only recorded files whose bytes still match
  (:func:`removable`): anything else is named and nothing is removed.

:class:`FolderLock` keeps two runs from writing into one folder at once (an advisory
``fcntl.flock`` on the folder itself, held for the run, released by the OS if the
process dies); :class:`Inputs` tells whether a path is one of a command's inputs.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from scrfd_ref.core.errors import UsageError
from scrfd_ref.formats.files import display, file_digest, is_inside

#: files named in a message before the rest are only counted
NAMED = 8


def named(names: Sequence[str]) -> str:
    """``a, b, c and 5 more``: the first :data:`NAMED` names of a list, displayable."""
    shown = ", ".join(display(n) for n in names[:NAMED])
    return shown + (f" and {len(names) - NAMED} more" if len(names) > NAMED else "")


def recorded_hashes(doc: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The manifest's ``sha256`` record ``{relative path: hex}``, or None when it has none
    (a manifest written before runs recorded their files' content)."""
    table = (doc or {}).get("sha256")
    if not isinstance(table, Mapping):
        return None
    return {str(k): v for k, v in table.items() if isinstance(v, str)}


def intact(folder: Path, rel: str, hashes: Mapping[str, str] | None) -> bool:
    """True when ``folder/rel`` is a plain file whose sha256 is the one recorded."""
    path = folder / rel
    if not hashes or rel not in hashes or not path.is_file() or path.is_symlink():
        return False
    try:
        return file_digest(path) == hashes[rel]
    except OSError:
        return False


def hash_problems(folder: Path, names: Iterable[str], doc: Mapping[str, Any] | None, *,
                  digests: Mapping[str, str] | None = None, complete: bool = True,
                  manifest: str = "") -> list[str]:
    """Files whose content disagrees with the manifest's record, one line each.

    Args:
        folder: the run's folder.
        names: the files a consumer is about to read (relative paths).
        doc: the folder's manifest (None or one without a record: nothing to check).
        digests: sha256 of files already read by the caller (saves a second read).
        complete: a finished run: a file without a record was not written by it.
        manifest: the manifest's file name, for the messages.
    """
    hashes = recorded_hashes(doc)
    if hashes is None:
        return []
    changed, unknown = [], []
    for rel in names:
        want = hashes.get(rel)
        if want is None:
            if complete:
                unknown.append(rel)
            continue
        try:
            got = (digests or {}).get(rel) or file_digest(folder / rel)
        except OSError:
            continue  # missing or unreadable: the pairing checks name it
        if got != want:
            changed.append(rel)
    out = []
    if changed:
        out.append(f"{display(folder)}: {len(changed)} file(s) differ from the sha256 "
                   f"{manifest} recorded when the run wrote them ({named(changed)}): changed "
                   "after the run (a damaged copy, an edit); re-run it, or restore the files")
    if unknown:
        out.append(f"{display(folder)}: {len(unknown)} file(s) that the finished run in "
                   f"{manifest} did not write ({named(unknown)}); move them out of the folder")
    return out


def check_folders_free(out: Path, outputs: Iterable[str], option: str = "--out") -> None:
    """Refuse before the work when a folder the run's files go into exists as a file
    (an event folder replaced by a file), naming it.

    Raises:
        UsageError: the blocking paths, relative to ``out``.
    """
    parents = sorted({Path(rel).parent.as_posix() for rel in outputs} - {"."})
    blocked = [b for b in parents if (out / b).exists() and not (out / b).is_dir()]
    if blocked:
        raise UsageError(f"{option} {display(out)}: {named(blocked)} must be folder(s) for this "
                         "run's files but exist as files; move them away, or choose another "
                         "folder")


def removable(folder: Path, listed: Sequence[str], hashes: Mapping[str, str] | None,
              inputs: "Inputs") -> tuple[list[Path], list[str]]:
    """What ``--overwrite`` may delete: ``(files, refused)``.

    ``files`` are the listed plain files inside ``folder`` whose bytes match their record;
    ``refused`` names the listed files present whose content is not what the run recorded
    (changed since, or never recorded). Inputs and paths outside ``folder`` are left alone.
    """
    files, refused = [], []
    for rel in listed:
        path = folder / rel
        if not path.is_file() or path.is_symlink() or not is_inside(path, folder) \
                or inputs.holds(path):
            continue
        if intact(folder, rel, hashes):
            files.append(path)
        else:
            refused.append(rel)
    return files, refused


class Inputs:
    """A command's input files and folders, to tell whether a path is one of them (the
    same file, by device and inode, or a file inside an input folder)."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        self.files: set[tuple[int, int]] = set()
        self.folders: list[Path] = []
        for p in paths:
            p = Path(p)
            try:
                st = p.stat()
            except OSError:
                continue
            if p.is_dir():
                self.folders.append(p.resolve())
            else:
                self.files.add((st.st_dev, st.st_ino))

    def holds(self, path: Path) -> bool:
        """True when ``path`` is one of the inputs or lies in an input folder."""
        try:
            st = path.stat()
        except OSError:
            return False
        if (st.st_dev, st.st_ino) in self.files:
            return True
        return any(is_inside(path, folder) for folder in self.folders)


class FolderLock:
    """An exclusive, non-blocking writer lock on an output folder: ``flock`` on the folder
    itself (nothing is written into it; the OS releases it if the process dies).

    Raises :class:`~scrfd_ref.core.errors.UsageError` naming the folder when another run
    holds it. Without ``fcntl`` (Windows) no lock is taken.
    """

    def __init__(self, folder: Path, option: str = "--out") -> None:
        self.fd: int | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise UsageError(f"{option} {display(folder)}: another scrfd-ref run is writing "
                             "into this folder now; wait for it to finish, or choose another "
                             "folder") from None
        self.fd = fd

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __del__(self) -> None:  # a run dropped without close(): as a file object would
        self.release()


# ----------------------------------------------------------------------------- cache entries

#: the record written beside a cache entry: ``<entry>.sha256.json``
ENTRY_RECORD = ".sha256.json"


def _entry_record(path: Path) -> Path:
    return path.with_name(path.name + ENTRY_RECORD)


def record_entry(path: Path, **about: Any) -> None:
    """Record a cache entry just written: its sha256 and size (and ``about``: what it was
    made from) in ``<entry>.sha256.json``, written atomically after the entry."""
    import json

    from scrfd_ref.formats.files import write_text

    path = Path(path)
    write_text(_entry_record(path), json.dumps(
        {"file": path.name, "sha256": file_digest(path), "size": path.stat().st_size, **about},
        indent=1) + "\n")


def entry_problem(path: Path) -> str | None:
    """Why the cache entry ``path`` is not the file recorded when it was written, or None.

    A missing record (an entry from before records, or a file dropped into the cache),
    a record for another name, another size or another sha256 are all problems."""
    from scrfd_ref.formats.strict import StrictFormatError, json_loads, regular_file_text

    path = Path(path)
    try:
        record = json_loads(regular_file_text(_entry_record(path)))
    except FileNotFoundError:
        return "no record of what was written"
    except (OSError, StrictFormatError) as exc:
        return f"its record is unreadable ({exc})"
    if not isinstance(record, dict) or record.get("file") != path.name:
        return "its record names another file"
    try:
        if record.get("size") != path.stat().st_size or record.get("sha256") != file_digest(path):
            return "its bytes differ from the sha256 recorded when it was written"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    return None


def verified_entry(path: Path, what: str = "cache entry") -> bool:
    """True when the cache entry ``path`` exists and is the file recorded when it was
    written; a damaged or unrecorded entry is removed (with a notice on stderr) so the
    caller builds it again; False when there is none."""
    import sys

    path = Path(path)
    if not path.is_file():
        return False
    problem = entry_problem(path)
    if problem is None:
        return True
    print(f"scrfd-ref: notice: {what} {display(path)}: {problem}; building it again",
          file=sys.stderr)
    path.unlink(missing_ok=True)
    _entry_record(path).unlink(missing_ok=True)
    return False
