"""Run manifests: what made an output folder, and whether the run finished.

A device dump folder holds ``scrfd_dump.json``; the prediction folder of ``wider-run`` and
``npz-decode`` holds ``scrfd_run.json``. A manifest is a JSON object::

    {"manifest": 1, "kind": "dump" | "wider-run" | "npz-decode",
     "tool": "scrfd-ref 0.1.0",
     "identity": {...every setting that makes two runs the same run...},
     "started": "2026-11-27T15:00:00Z", "finished": null | "...",
     "complete": false | true, ...counts...}

``identity`` holds the model sha256 and variant, backend, dtype, the full profile
(geometry and thresholds), vdsp params when given and the image list sha256, as each
command defines it. The manifest is written first with ``complete: false`` and rewritten
with ``complete: true`` as the run's last act, atomically both times. ``outputs`` lists
the files the run writes (relative paths), ``sha256`` the content of each as written
(:mod:`scrfd_ref.formats.run_outputs`: a resume keeps only files that still match,
consumers refuse files that do not, ``--overwrite`` deletes only those that do).

:func:`open_run` decides what a command may do with an output folder (holding the
folder's writer lock, so two runs never write into one folder at once): start a new run,
resume the same run, refuse a folder written by another run (naming the differing fields)
unless ``overwrite``. :func:`read_source` is for consumers: a folder without a manifest is
accepted as unknown provenance (real vamp output), an incomplete run is refused unless
``allow_incomplete``. :func:`read_manifest` checks what it reads at the boundary
(:mod:`scrfd_ref.formats.manifest_check`); a bad value is named with the path and field.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scrfd_ref import __version__
from scrfd_ref.core.errors import ManifestError, UsageError
from scrfd_ref.formats.files import display, file_digest, make_dir, write_text
from scrfd_ref.formats.manifest_check import (  # noqa: F401 - list_sha256 re-exported
    MANIFEST_VERSION,
    MAX_DEPTH,
    list_sha256,
    manifest_problem,
    nesting_depth,
)
from scrfd_ref.formats.run_outputs import (
    FolderLock,
    check_folders_free,
    Inputs,
    intact,
    named,
    recorded_hashes,
    removable,
)

DUMP_MANIFEST = "scrfd_dump.json"
RUN_MANIFEST = "scrfd_run.json"
KINDS = ("dump", "wider-run", "npz-decode", "localize-cut", "localize-run")
#: seconds between two saves of a running manifest's sha256 table
FLUSH_SECONDS = 2.0


def now() -> str:
    """UTC time stamp ``YYYY-MM-DDTHH:MM:SSZ``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_manifest(folder: str | Path, name: str, *, writer: bool = False
                  ) -> dict[str, Any] | None:
    """The manifest ``folder/name``, or None when there is none (``writer``: read by the
    command that would write the folder, so the advice is ``--overwrite``; else by a
    consumer of it).

    Raises:
        ManifestError: the file exists but is not a manifest (unreadable, not JSON, not an
            object, missing ``identity`` / ``complete``).
    """
    p = Path(folder) / name
    if not p.exists():
        return None
    advice = ("move it away or use --overwrite to start the run again" if writer else
              "re-run the command that wrote the folder, or move the file away (the folder "
              "is then read as of unknown provenance)")
    from scrfd_ref.formats.strict import StrictFormatError, json_loads, regular_file_text

    try:
        doc = json_loads(regular_file_text(p))
        too_deep = nesting_depth(doc) > MAX_DEPTH
    except RecursionError:
        too_deep = True
    except (OSError, StrictFormatError) as exc:
        raise ManifestError(f"{display(p)}: not a readable manifest ({exc}); {advice}") from None
    if too_deep:
        raise ManifestError(f"{display(p)}: not a readable manifest (nested too deeply: more "
                            f"than {MAX_DEPTH} levels); {advice}")
    if not isinstance(doc, dict):
        raise ManifestError(f"{display(p)}: not a manifest (a JSON object is expected)")
    if "identity" not in doc and name == DUMP_MANIFEST and isinstance(doc.get("profile"), dict) \
            and isinstance(doc.get("files"), int):
        # a first-wave scrfd_dump.json: written once, after the last file (so complete)
        backend = doc.get("backend")
        doc = {"manifest": 0, "kind": "dump", "legacy": True, "complete": True,
               "identity": {"variant": doc.get("variant"), "dtype": doc.get("dtype"),
                            "output_dtype": doc.get("output_dtype"),
                            "backend": backend.get("backend") if isinstance(backend, dict)
                            else backend, "profile": doc["profile"]},
               "files": doc["files"]}
    if "identity" not in doc or not isinstance(doc.get("identity"), dict) \
            or not isinstance(doc.get("complete"), bool):
        raise ManifestError(f"{display(p)}: not a scrfd-ref manifest (no identity / complete "
                            f"fields); {advice}")
    problem = manifest_problem(doc)
    if problem:
        raise ManifestError(f"{display(p)}: {problem} (a damaged manifest); {advice}")
    return doc


def write_manifest(folder: str | Path, name: str, doc: Mapping[str, Any]) -> Path:
    """Write ``doc`` as ``folder/name`` atomically."""
    return write_text(Path(folder) / name, json.dumps(doc, indent=2, sort_keys=False) + "\n")


def differences(recorded: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields where two identities differ."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        out = []
        for k in sorted(set(recorded) | set(current), key=str):
            out += differences(recorded.get(k), current.get(k), f"{prefix}{k}.")
        return out
    if isinstance(recorded, (list, tuple)) and isinstance(current, (list, tuple)):
        if [*recorded] == [*current]:
            return []
    elif recorded == current:
        return []
    return [prefix.rstrip(".")]


def describe_difference(recorded: Mapping[str, Any], current: Mapping[str, Any],
                        fields: Sequence[str], limit: int = 4) -> str:
    """``profile.pad_value (recorded 114.0, now 127.5), ...``."""
    def get(doc: Mapping[str, Any], dotted: str) -> Any:
        cur: Any = doc
        for part in dotted.split("."):
            cur = cur.get(part) if isinstance(cur, Mapping) else None
        return cur

    def short(v: Any) -> str:
        text = json.dumps(v) if not isinstance(v, str) else v
        return text if len(text) <= 24 else text[:12] + "..."

    shown = [f"{f} (recorded {short(get(recorded, f))}, now {short(get(current, f))})"
             for f in fields[:limit]]
    more = f" and {len(fields) - limit} more" if len(fields) > limit else ""
    return ", ".join(shown) + more


@dataclass
class RunManifest:
    """An open manifest of a run in progress; :meth:`finish` marks it complete.

    The run holds its folder's writer lock (:class:`~scrfd_ref.formats.run_outputs.
    FolderLock`) until :meth:`finish` or :meth:`close` (use it as a context manager: an
    error or Ctrl-C then still saves the hashes recorded so far and releases the lock).
    Writers call :meth:`record` after each file they write; the manifest's ``sha256``
    table is saved at most every :data:`FLUSH_SECONDS` and at the end.
    ``run_files`` / ``inputs`` / ``foreign`` let :meth:`finish` record the run's files
    when they were not listed when it started (see :func:`open_run`).
    """

    folder: Path
    name: str
    doc: dict[str, Any]
    resumed: bool = False
    run_files: Callable[[Path], list[Path]] | None = None
    inputs: Inputs | None = None
    foreign: frozenset[str] = frozenset()
    lock: FolderLock | None = None
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _saved: float = field(default_factory=time.monotonic, repr=False)

    def __enter__(self) -> "RunManifest":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, **fields: Any) -> None:
        """Change some top-level fields and rewrite the file."""
        with self._guard:
            self.doc.update(fields)
            self._save()

    def _save(self) -> None:
        write_manifest(self.folder, self.name, self.doc)
        self._saved = time.monotonic()

    def record(self, path: Path) -> None:
        """Record the sha256 of a file this run has just written (thread-safe)."""
        digest = file_digest(path)
        with self._guard:
            self.doc.setdefault("sha256", {})[_relative(path, self.folder)] = digest
            if time.monotonic() - self._saved > FLUSH_SECONDS:
                self._save()

    def intact(self, rel: str) -> bool:
        """True when the run's file ``rel`` is on disk with the bytes it recorded."""
        return intact(self.folder, rel, recorded_hashes(self.doc))

    def keep(self, rels: Sequence[str], resume: bool = True) -> set[str]:
        """Of a resumed run's files ``rels``, those to keep (recorded and unchanged); a
        notice on stderr counts the files present that will be computed again."""
        if not (resume and self.resumed):
            return set()
        hashes = recorded_hashes(self.doc)   # once: a resume may check thousands of files
        kept = {r for r in rels if intact(self.folder, r, hashes)}
        stale = [r for r in rels if r not in kept and (self.folder / r).exists()]
        if stale:
            print(f"scrfd-ref: notice: {display(self.folder)}: {len(stale)} file(s) of the "
                  f"interrupted run do not match the sha256 {self.name} recorded (or were "
                  f"written after its last update): computing them again ({named(stale)})",
                  file=sys.stderr)
        return kept

    def close(self) -> None:
        """Save what was recorded and release the folder's lock (idempotent)."""
        if self.lock is not None:
            with self._guard:
                self._save()
            self.lock.release()
            self.lock = None

    def finish(self, **counts: Any) -> None:
        """Record counts, the run's files (when not listed at the start) and their sha256,
        the finish time and ``complete: true`` (the run's last act); release the lock."""
        self.doc.update(counts)
        if self.run_files is not None:
            inputs = self.inputs or Inputs(())
            found = {_relative(f, self.folder) for f in self.run_files(self.folder)
                     if not inputs.holds(f)}
            self.doc["outputs"] = sorted((found - self.foreign)
                                         | set(self.doc.get("outputs") or ()))
        hashes = self.doc.setdefault("sha256", {})
        for rel in self.doc.get("outputs") or ():
            # every file is this run's by now: a resumed run kept only intact files
            if rel not in hashes and (self.folder / rel).is_file():
                hashes[rel] = file_digest(self.folder / rel)
        self.doc["sha256"] = dict(sorted(hashes.items()))
        self.doc["finished"] = now()
        self.doc["complete"] = True
        with self._guard:
            self._save()
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def _relative(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def open_run(folder: str | Path, name: str, kind: str, identity: Mapping[str, Any], *,
             overwrite: bool = False, run_files: Callable[[Path], list[Path]],
             option: str = "--out", outputs: Sequence[str] | None = None,
             inputs: Sequence[str | os.PathLike[str]] = ()) -> RunManifest:
    """Start or resume a run writing into ``folder``; write its manifest (incomplete).

    Args:
        folder: the output folder (created).
        name: :data:`DUMP_MANIFEST` or :data:`RUN_MANIFEST`.
        kind: one of :data:`KINDS`.
        identity: the settings that make two runs the same run.
        overwrite: remove the files of a different earlier run first: only those its
            manifest lists (``outputs``) and recorded with a sha256 their bytes still
            match, never one of ``inputs``.
        run_files: lists the files a run of this kind leaves in a folder.
        option: the command-line option that named ``folder`` (for messages).
        outputs: the files this run writes, relative to ``folder`` (recorded in the
            manifest now, so an interrupted run can be replaced too); None: the files
            ``run_files`` finds when the run finishes, less those that were there before.
        inputs: the command's input files and folders: never removed, never counted as
            another run's files.

    Raises:
        UsageError: another run is writing into the folder now; the folder holds another
            run's files (manifest differing, or files without a manifest) and
            ``overwrite`` is not set; the message names the fields. With ``overwrite``:
            the folder holds run-like files that no manifest lists, or listed files whose
            bytes are not the ones recorded (they are named; nothing is removed).
        ManifestError: an unreadable manifest without ``overwrite``.
    """
    out = Path(folder)
    held = Inputs(i for i in inputs if i is not None)
    identity = json.loads(json.dumps(identity))  # plain JSON types, as a reload gives
    make_dir(out, option)
    lock = FolderLock(out, option)
    try:
        return _open_locked(out, name, kind, identity, overwrite, run_files, option, outputs,
                            held, lock)
    except BaseException:
        lock.release()
        raise


def _open_locked(out: Path, name: str, kind: str, identity: dict[str, Any], overwrite: bool,
                 run_files: Callable[[Path], list[Path]], option: str,
                 outputs: Sequence[str] | None, held: Inputs, lock: FolderLock) -> RunManifest:
    existing = None
    unreadable = None
    try:
        existing = read_manifest(out, name, writer=True)
    except ManifestError as exc:
        if not overwrite:
            raise
        unreadable = str(exc)
    old_files = [f for f in run_files(out) if not held.holds(f)]
    present = {_relative(f, out) for f in old_files}
    recorded = list(existing.get("outputs") or ()) if existing is not None else []
    resumed = False
    if existing is not None and existing.get("kind") == kind:
        diff = differences(existing["identity"], identity)
        if not diff:
            resumed = True
            if "outputs" not in existing:  # written before runs listed their files
                recorded = sorted(present)
        elif not overwrite:
            raise UsageError(
                f"{option} {display(out)}: holds a different {kind} run: "
                f"{describe_difference(existing['identity'], identity, diff)}; use --overwrite "
                "to replace it, or another folder")
    elif existing is not None and not overwrite:
        raise UsageError(f"{option} {display(out)}: holds a {existing.get('kind')} run, not a "
                         f"{kind} run; use another folder (or --overwrite)")
    elif existing is None and old_files and not overwrite:
        raise UsageError(f"{option} {display(out)}: holds {len(old_files)} file(s) of an "
                         f"unknown run (no {name}), e.g. {display(old_files[0].name)}; use "
                         "--overwrite to replace them, or another folder")
    check_folders_free(out, outputs or (), option)
    if not resumed and overwrite:
        _overwrite(out, name, option, present, recorded, existing, unreadable, held)
        recorded = []
    if resumed:
        doc = dict(existing)  # type: ignore[arg-type]
        doc.update(complete=False, finished=None, resumed=now(), tool=f"scrfd-ref {__version__}")
    else:
        doc = {"manifest": MANIFEST_VERSION, "kind": kind, "tool": f"scrfd-ref {__version__}",
               "identity": identity, "started": now(), "finished": None, "complete": False}
    doc["outputs"] = sorted(set(recorded) | set(outputs or ()))
    write_manifest(out, name, doc)
    foreign = frozenset(present - set(recorded)) if resumed else frozenset()
    return RunManifest(out, name, doc, resumed, run_files if outputs is None else None,
                       held, foreign, lock)


def _overwrite(out: Path, name: str, option: str, present: set[str], recorded: list[str],
               existing: Mapping[str, Any] | None, unreadable: str | None,
               held: Inputs) -> None:
    """Delete an earlier run's files for ``--overwrite``, or refuse naming what is not its
    own (files no manifest lists, listed files whose bytes are not the recorded ones)."""
    unlisted = sorted(present - set(recorded))
    if unlisted:
        why = (f"; its {name} is unreadable ({unreadable.split(': ', 1)[-1]}), so no file is "
               "known as that run's" if unreadable else "")
        raise UsageError(
            f"{option} {display(out)}: holds {len(unlisted)} file(s) that no run manifest "
            f"lists ({named(unlisted)}){why}; --overwrite removes only the files a run's "
            f"{name} says it wrote: move these away, or choose another folder")
    files, refused = removable(out, recorded, recorded_hashes(existing), held)
    if refused:
        raise UsageError(
            f"{option} {display(out)}: {len(refused)} file(s) the earlier run lists are not "
            f"the bytes it recorded ({named(refused)}): changed since, or never recorded "
            f"with a sha256 in {name}; --overwrite deletes only a run's own unchanged files: "
            "move these away, or choose another folder")
    for f in files:
        f.unlink(missing_ok=True)
    (out / name).unlink(missing_ok=True)


@dataclass(frozen=True)
class Source:
    """What a consumer learned about an input folder's provenance."""

    manifest: dict[str, Any] | None
    notice: str | None

    @property
    def identity(self) -> dict[str, Any]:
        """The recorded identity (empty for unknown provenance)."""
        return dict(self.manifest["identity"]) if self.manifest else {}


def read_source(folder: str | Path, name: str, *, allow_incomplete: bool = False,
                option: str = "--outputs") -> Source:
    """Read the manifest of an input folder for a consumer.

    Returns a :class:`Source`; ``notice`` says when the folder has no manifest (unknown
    provenance, e.g. real vamp output) or was accepted although incomplete.

    Raises:
        ManifestError: the run is marked incomplete and ``allow_incomplete`` is not set, or
            the manifest is unreadable.
    """
    doc = read_manifest(folder, name)
    if doc is None:
        return Source(None, f"{option} {display(folder)}: no {name}: unknown provenance "
                            "(accepted as a device's own output)")
    if not doc["complete"]:
        if not allow_incomplete:
            raise ManifestError(f"{option} {display(folder)}: the run that wrote it did not "
                                f"finish ({name} says complete: false, started "
                                f"{doc.get('started')}); finish it (run it again to resume) "
                                "or pass --allow-incomplete")
        return Source(doc, f"{option} {display(folder)}: incomplete run accepted "
                           "(--allow-incomplete)")
    return Source(doc, None)
