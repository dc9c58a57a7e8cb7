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
the files the run writes (paths relative to the folder): given when the run starts, or
found when it finishes.

:func:`open_run` decides what a command may do with an output folder: start a new run,
resume the same run, refuse a folder written by another run (naming the differing
fields) unless ``overwrite``, which removes that run's files first: only the files its
manifest lists, never one of the command's inputs; a folder holding run-like files that
no manifest lists is refused, naming them. :func:`read_source` is for consumers: a
folder without a manifest is accepted as unknown provenance (real vamp output), an
incomplete run is refused unless ``allow_incomplete``.

:func:`read_manifest` checks what it reads at the boundary
(:mod:`scrfd_ref.formats.manifest_check`: nesting depth, the type of every field the
commands use, a recorded profile the reference can rebuild); a bad value is named with
the manifest's path and the field.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrfd_ref import __version__
from scrfd_ref.core.errors import ManifestError, UsageError
from scrfd_ref.formats.files import display, is_inside, write_text
from scrfd_ref.formats.manifest_check import MAX_DEPTH, manifest_problem, nesting_depth

MANIFEST_VERSION = 1
DUMP_MANIFEST = "scrfd_dump.json"
RUN_MANIFEST = "scrfd_run.json"
KINDS = ("dump", "wider-run", "npz-decode")
#: files named in a refusal before the rest are only counted
_NAMED = 8


def now() -> str:
    """UTC time stamp ``YYYY-MM-DDTHH:MM:SSZ``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def list_sha256(items: Iterable[str]) -> str:
    """sha256 of a list of strings (one per line), e.g. an image list."""
    h = hashlib.sha256()
    for item in items:
        h.update(item.encode("utf-8", "surrogateescape"))
        h.update(b"\n")
    return h.hexdigest()


def read_manifest(folder: str | Path, name: str) -> dict[str, Any] | None:
    """The manifest ``folder/name``, or None when there is none.

    Raises:
        ManifestError: the file exists but is not a manifest (unreadable, not JSON, not an
            object, missing ``identity`` / ``complete``).
    """
    p = Path(folder) / name
    if not p.exists():
        return None
    from scrfd_ref.formats.strict import StrictFormatError, json_loads, regular_file_text

    try:
        doc = json_loads(regular_file_text(p))
        too_deep = nesting_depth(doc) > MAX_DEPTH
    except RecursionError:
        too_deep = True
    except (OSError, StrictFormatError) as exc:
        raise ManifestError(f"{display(p)}: not a readable manifest ({exc}); move it away or "
                            "use --overwrite to start the run again") from None
    if too_deep:
        raise ManifestError(f"{display(p)}: not a readable manifest (nested too deeply: more "
                            f"than {MAX_DEPTH} levels); move it away or use --overwrite to "
                            "start the run again")
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
                            "fields); move it away or use --overwrite")
    problem = manifest_problem(doc)
    if problem:
        raise ManifestError(f"{display(p)}: {problem} (a damaged manifest: re-run the command "
                            "that wrote it, or move it away)")
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

    ``run_files`` / ``inputs`` / ``foreign`` let :meth:`finish` record the run's files
    when they were not listed when it started (see :func:`open_run`).
    """

    folder: Path
    name: str
    doc: dict[str, Any]
    resumed: bool = False
    run_files: Callable[[Path], list[Path]] | None = None
    inputs: "Inputs | None" = None
    foreign: frozenset[str] = frozenset()

    def update(self, **fields: Any) -> None:
        """Change some top-level fields and rewrite the file."""
        self.doc.update(fields)
        write_manifest(self.folder, self.name, self.doc)

    def finish(self, **counts: Any) -> None:
        """Record counts, the run's files (when not listed at the start), the finish time
        and ``complete: true`` (the run's last act)."""
        self.doc.update(counts)
        if self.run_files is not None:
            inputs = self.inputs or Inputs(())
            found = {_relative(f, self.folder) for f in self.run_files(self.folder)
                     if not inputs.holds(f)}
            self.doc["outputs"] = sorted((found - self.foreign)
                                         | set(self.doc.get("outputs") or ()))
        self.doc["finished"] = now()
        self.doc["complete"] = True
        write_manifest(self.folder, self.name, self.doc)


def _relative(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


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


def _named(names: Sequence[str]) -> str:
    shown = ", ".join(display(n) for n in names[:_NAMED])
    return shown + (f" and {len(names) - _NAMED} more" if len(names) > _NAMED else "")


def _remove_recorded(out: Path, recorded: Sequence[str], inputs: Inputs) -> None:
    """Remove the files an earlier run's manifest lists (plain files inside ``out`` that
    are none of the inputs; anything else a manifest names is left alone)."""
    for rel in recorded:
        f = out / rel
        if f.is_file() and not f.is_symlink() and is_inside(f, out) and not inputs.holds(f):
            f.unlink(missing_ok=True)


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
            manifest lists (``outputs``), never one of ``inputs``.
        run_files: lists the files a run of this kind leaves in a folder.
        option: the command-line option that named ``folder`` (for messages).
        outputs: the files this run writes, relative to ``folder`` (recorded in the
            manifest now, so an interrupted run can be replaced too); None: the files
            ``run_files`` finds when the run finishes, less those that were there before.
        inputs: the command's input files and folders: never removed, never counted as
            another run's files.

    Raises:
        UsageError: the folder holds another run's files (manifest differing, or files
            without a manifest) and ``overwrite`` is not set; the message names the fields.
            With ``overwrite``: the folder holds run-like files that no manifest lists
            (they are named; nothing is removed).
        ManifestError: an unreadable manifest without ``overwrite``.
    """
    out = Path(folder)
    held = Inputs(i for i in inputs if i is not None)
    identity = json.loads(json.dumps(identity))  # plain JSON types, as a reload gives
    existing = None
    try:
        existing = read_manifest(out, name)
    except ManifestError:
        if not overwrite:
            raise
    old_files = [f for f in run_files(out) if not held.holds(f)] if out.is_dir() else []
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
    if not resumed and overwrite:
        unlisted = sorted(present - set(recorded))
        if unlisted:
            raise UsageError(
                f"{option} {display(out)}: holds {len(unlisted)} file(s) that no run manifest "
                f"lists ({_named(unlisted)}); --overwrite removes only the files a run's "
                f"{name} says it wrote: move these away, or choose another folder")
        _remove_recorded(out, recorded, held)
        (out / name).unlink(missing_ok=True)
        recorded = []
    out.mkdir(parents=True, exist_ok=True)
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
                       held, foreign)


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
