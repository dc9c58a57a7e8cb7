"""A device's output folder checked as a whole before anything is computed from it.

:func:`check_outputs` pairs every datalist line with its output (file and position on
the batch axis) and validates every file: readable, keys, dtype, rank, shapes that fit
SCRFD at the input size, NaN / Inf counts; and, when an image folder is given, that every
line's original image is there and readable. Every problem is collected, so the user
sees the whole list at once (capped, with a count), and nothing is written while any
file is bad (unless the caller skips the bad entries on purpose).

Pairing rules: the datalist must not repeat a line or an image name; the output files
``output_<n>.npz`` must run ``0 .. n-1`` without gap or repeat; when every file holds one
image, file ``i`` belongs to line ``i``; when files hold batches (``vamp -b B``), the lines
are dealt out in order over the batch axes, which is accepted only when every file but
the last holds the same batch and the batch sizes add up to the line count. Never a
silent cut or shift.

A folder with a dump manifest (``scrfd_dump.json``) is held to it: a complete dump must
still have every image it recorded (files removed, or the datalist cut, are refused) and
the datalist must list the recorded images in the recorded order (a shuffled or swapped
datalist is refused naming the first differing line). An incomplete dump accepted on
purpose (``partial``) pairs the output files that exist with their lines (file ``i`` is
line ``i``: a dump writes one image per file) and says which lines have none yet.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scrfd_ref.core.errors import (
    DataMissingError,
    InputError,
    ScrfdRefError,
    problem_list,
)
from scrfd_ref.formats.device_npz import (
    INPUT_KEY,
    nonfinite_counts,
    npz_array_shape,
    read_datalist,
    read_output_npz,
    scan_output_files,
)
from scrfd_ref.formats.files import display
from scrfd_ref.formats.manifest import DUMP_MANIFEST, list_sha256, read_manifest
from scrfd_ref.formats.run_outputs import hash_problems

DATALIST_NAME = "datalist.txt"


@dataclass(frozen=True)
class Slot:
    """Where datalist line ``index`` (0-based) finds its outputs."""

    index: int
    entry: Path
    file: Path
    position: int


@dataclass
class CheckedOutputs:
    """A validated device output folder.

    Attributes:
        folder: the output folder.
        datalist: the datalist file used.
        slots: one per datalist line, in order (bad ones removed when skipped).
        skipped: ``{line index: reason}`` of entries left out (``skip_bad`` only).
        batches: batch size of each output file, in file order.
        originals: ``{line index: original image path}`` when an image folder was given.
        sizes: ``{line index: (width, height)}`` of those originals.
        unfinished: line indices without an output file yet (``partial`` only).
    """

    folder: Path
    datalist: Path
    slots: list[Slot]
    skipped: dict[int, str] = field(default_factory=dict)
    batches: list[int] = field(default_factory=list)
    originals: dict[int, Path] = field(default_factory=dict)
    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)
    unfinished: list[int] = field(default_factory=list)

    def read(self, slot: Slot) -> list[np.ndarray]:
        """The outputs of one datalist line, batch axis 1."""
        arrays = read_output_npz(slot.file)
        if arrays[0].shape[0] == 1:
            return arrays
        return [a[slot.position:slot.position + 1] for a in arrays]


def find_datalist(folder: Path, datalist: str | Path | None = None) -> Path:
    """The datalist: ``datalist`` if given, else ``folder/datalist.txt`` or beside it."""
    if datalist is not None:
        return Path(datalist)
    for cand in (folder / DATALIST_NAME, folder.parent / DATALIST_NAME):
        if cand.is_file():
            return cand
    raise DataMissingError(f"{display(folder)}: no {DATALIST_NAME} in it or beside it; give "
                           "the datalist the outputs follow")


def _file_problems(path: Path, input_size: tuple[int, int] | None,
                   allow_nonfinite: bool, max_batch: int | None = None
                   ) -> tuple[int | None, str | None, str | None]:
    """``(batch, problem, dtype)`` of one output file (batch None when unreadable)."""
    from scrfd_ref.core.heads import normalize_heads

    try:
        arrays = read_output_npz(path, input_size=input_size, max_batch=max_batch)
    except ScrfdRefError as exc:
        return None, str(exc), None
    batch, dtype = int(arrays[0].shape[0]), str(arrays[0].dtype)
    try:
        normalize_heads(arrays, input_size, where=display(path), check_finite=False)
    except ScrfdRefError as exc:
        return batch, str(exc), dtype
    if not allow_nonfinite:
        bad = nonfinite_counts(arrays)
        if bad:
            return batch, (f"{display(path)}: NaN/Inf values: "
                           + ", ".join(f"{k} {n} of {arrays[int(k.split('_')[1])].size}"
                                       for k, n in bad.items())), dtype
    return batch, None, dtype


def _deal(entries: list[Path], files: list[Path], batches: list[int | None]
          ) -> tuple[list[Slot], str | None]:
    """Slots for every line, or a problem saying why the batches do not add up."""
    if any(b is None for b in batches):
        return [], None  # unreadable files are reported already
    sizes = [int(b) for b in batches]  # type: ignore[arg-type]
    total = sum(sizes)
    regular = all(b == sizes[0] for b in sizes[:-1]) and (not sizes or sizes[-1] <= sizes[0])
    if total != len(entries) or not regular:
        runs: list[list[int]] = []
        for b in sizes:
            if runs and runs[-1][0] == b:
                runs[-1][1] += 1
            else:
                runs.append([b, 1])
        found = ", ".join(f"{n} file(s) of batch {b}" for b, n in runs)
        why = ("the batch sizes vary before the last file" if total == len(entries)
               else f"they hold {total} image(s)")
        return [], (f"the datalist has {len(entries)} line(s) but the {len(files)} output "
                    f"file(s) do not pair with them: {why} ({found})")
    slots = []
    i = 0
    for f, b in zip(files, sizes):
        for pos in range(b):
            slots.append(Slot(i, entries[i], f, pos))
            i += 1
    return slots, None


def _partial_slots(entries: list[Path], files: list[Path], batches: list[int | None]
                   ) -> tuple[list[Slot], list[int], list[str]]:
    """An incomplete dump's slots: output file ``i`` pairs with line ``i`` (one image per
    file); the lines without a file yet; problems (a batched file, a file past the end)."""
    from scrfd_ref.formats.device_npz import OUTPUT_NAME

    slots, problems = [], []
    for f, b in zip(files, batches):
        i = int(OUTPUT_NAME.match(f.name).group(1))  # type: ignore[union-attr]
        if b is not None and b != 1:
            problems.append(f"{display(f.name)}: holds {b} images; an incomplete dump is paired "
                            "file by file (one image each)")
        elif i >= len(entries):
            problems.append(f"{display(f.name)}: no datalist line {i + 1} (the datalist has "
                            f"{len(entries)})")
        else:
            slots.append(Slot(i, entries[i], f, 0))
    done = {s.index for s in slots}
    return slots, [i for i in range(len(entries)) if i not in done], problems


def manifest_problems(folder: Path, datalist: Path, entries: list[Path], files: list[Path],
                      batches: list[int | None], manifest: dict | None) -> list[str]:
    """What a complete dump's manifest says that the folder and datalist contradict: fewer
    images than recorded, or another image list (the first differing line named)."""
    if manifest is None or not manifest.get("complete"):
        return []
    where = display(folder / DUMP_MANIFEST)
    problems = []
    recorded = manifest.get("images", manifest.get("files"))
    held = sum(b for b in batches if b is not None) if None not in batches else len(files)
    if isinstance(recorded, int) and (recorded != len(entries) or recorded != held):
        problems.append(f"{where} records a complete dump of {recorded} image(s) but the folder "
                        f"holds {len(files)} output file(s) ({held} image(s)) and the datalist "
                        f"{len(entries)} line(s): files were removed or the datalist was cut; "
                        "use the whole dump")
        return problems
    want = manifest["identity"].get("image_list_sha256")
    names = [e.name for e in entries]
    if isinstance(want, str) and list_sha256(names) != want:
        listed = manifest.get("image_list")
        if not isinstance(listed, list):  # an older manifest: the folder's own datalist copy
            own = folder / DATALIST_NAME
            listed = None
            if own.is_file():
                try:
                    listed = [e.name for e in read_datalist(own)]
                except ScrfdRefError:
                    listed = None
            if listed is not None and list_sha256(listed) != want:
                listed = None
        first = next((i for i, (a, b) in enumerate(zip(names, listed or [])) if a != b),
                     min(len(names), len(listed or [])))
        if listed is not None and first < len(names) and first < len(listed):
            detail = (f"line {first + 1} ({display(names[first])}) differs from the image list "
                      f"the dump recorded in {where} (line {first + 1}: "
                      f"{display(listed[first])})")
        else:
            detail = (f"its image list differs from the one the dump recorded in {where} "
                      "(image_list_sha256)")
        problems.append(f"datalist {display(datalist)}: {detail}: the outputs would pair with "
                        "the wrong images; give the datalist the dump was made from "
                        f"({display(folder / DATALIST_NAME)})")
    return problems


def check_recorded(outputs_dir: str | Path, datalist: str | Path | None = None, *,
                   partial: bool = False) -> None:
    """The quick part of :func:`check_outputs` (no array is read): a complete dump's
    folder and datalist against its manifest (:func:`manifest_problems`). Nothing to check
    without a manifest, or for an incomplete dump accepted on purpose (``partial``).

    Raises:
        InputError: the problems found.
        ManifestError: the manifest is unreadable or damaged.
    """
    folder = Path(outputs_dir)
    manifest = read_manifest(folder, DUMP_MANIFEST)
    if manifest is None or partial:
        return
    dl = find_datalist(folder, datalist)
    entries = read_datalist(dl)
    files, _ = scan_output_files(folder)
    problems = manifest_problems(folder, dl, entries, files, [None] * len(files), manifest)
    if problems:
        raise problem_list(problems, f"device outputs {display(folder)}")


def _duplicate_contents(files: list[Path]) -> tuple[list[str], dict[str, str]]:
    """Byte-identical outputs (one line each) and every file's sha256 by name."""
    seen: dict[str, Path] = {}
    digests: dict[str, str] = {}
    problems = []
    for f in files:
        try:
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
        except OSError:
            continue
        digests[f.name] = digest
        if digest in seen:
            problems.append(f"{display(f.name)} is byte-identical to {display(seen[digest].name)}: "
                            "a repeated output (every image gives its own outputs)")
        seen.setdefault(digest, f)
    return problems, digests


def check_outputs(outputs_dir: str | Path, datalist: str | Path | None = None, *,
                  input_size: tuple[int, int] | None = None,
                  images_dir: str | Path | None = None, skip_bad: bool = False,
                  allow_nonfinite: bool = False, what: str | None = None,
                  partial: bool = False) -> CheckedOutputs:
    """Validate a device output folder as a whole; see the module docstring.

    Args:
        outputs_dir: folder of ``output_<n>.npz`` files.
        datalist: the datalist the outputs follow (default: ``datalist.txt`` in or beside
            the folder).
        input_size: network input ``(W, H)`` the outputs must fit (None: from the maps).
        images_dir: ``<dir>/<event>/<name>.jpg`` originals every line needs (npz-decode).
        skip_bad: leave out entries whose file or original is bad (listed in ``skipped``)
            instead of failing; problems of the folder as a whole still fail.
        allow_nonfinite: accept NaN / Inf values (the caller gates them).
        what: names the folder in the error (default ``device outputs <folder>``).
        partial: the folder is an incomplete dump accepted on purpose: pair the files
            that exist with their lines (``unfinished`` lists the others).

    Raises:
        DataMissingError: the folder or the datalist does not exist.
        InputError: every problem found, one per line (capped with a count).
        ManifestError: the folder's ``scrfd_dump.json`` is unreadable or damaged.
    """
    folder = Path(outputs_dir)
    if not folder.exists():
        raise DataMissingError(f"device output folder not found: {display(folder)}")
    if not folder.is_dir():
        raise InputError(f"{display(folder)}: is a file; give the folder of output_*.npz files")
    what = what or f"device outputs {display(folder)}"
    dl = find_datalist(folder, datalist)
    entries = read_datalist(dl)
    manifest = read_manifest(folder, DUMP_MANIFEST)
    files, problems = scan_output_files(folder)
    if partial:  # an interrupted dump may miss any file (workers write out of order)
        problems = [p for p in problems if "missing in the sequence" not in p]
    if not files:
        raise InputError(f"{what}: no output_*.npz files")
    repeated, digests = _duplicate_contents(files)
    own_list = [dl.name] if dl.parent == folder else []
    problems += repeated + hash_problems(folder, [f.name for f in files] + own_list, manifest,
                                         digests=digests, complete=not partial,
                                         manifest=DUMP_MANIFEST)
    bad_files: dict[Path, str] = {}
    batches: list[int | None] = []
    dtypes: dict[str, list[str]] = {}
    for f in files:
        batch, problem, dtype = _file_problems(f, input_size, allow_nonfinite,
                                               max(1, len(entries)))
        batches.append(batch)
        if problem:
            bad_files[f] = problem
        elif dtype is not None:   # a bad file is named for its own problem
            dtypes.setdefault(dtype, []).append(f.name)
    if len(dtypes) > 1:  # one device, one output dtype: a file of another build mixed in
        fewest = min(dtypes, key=lambda d: len(dtypes[d]))
        problems.append(f"{display(folder)}: the outputs mix dtypes ("
                        + ", ".join(f"{len(v)} {d}" for d, v in dtypes.items())
                        + f"): {', '.join(dtypes[fewest][:3])} {fewest} among the others; "
                        "one device writes one dtype: use the files of one dump")
    problems += manifest_problems(folder, dl, entries, files, batches, manifest)
    unfinished: list[int] = []
    if partial:
        slots, unfinished, more = _partial_slots(entries, files, batches)
        problems += more
        pairing = None
    else:
        slots, pairing = _deal(entries, files, batches)
    if pairing:
        problems.append(pairing)
    if not partial and not slots and not pairing and len(files) != len(entries):
        problems.append(f"{display(folder)}: {len(files)} output files but {len(entries)} "
                        f"datalist lines in {display(dl)}")
    bad_entries: dict[int, str] = {}
    if not partial and not slots and len(files) == len(entries):  # unreadable: one to one
        slots = [Slot(i, e, f, 0) for i, (e, f) in enumerate(zip(entries, files))]
    for s in slots:
        if s.file in bad_files:
            bad_entries[s.index] = bad_files[s.file]
    originals: dict[int, Path] = {}
    sizes: dict[int, tuple[int, int]] = {}
    if images_dir is not None:
        originals, sizes, missing = _originals(slots, Path(images_dir))
        for i, why in missing.items():
            bad_entries.setdefault(i, why)
    unpaired = [p for f, p in bad_files.items() if all(s.file != f for s in slots)]
    fatal = problems + unpaired
    if fatal or (bad_entries and not skip_bad):
        raise problem_list(fatal + sorted(set(bad_entries.values()), key=list(bad_entries.values()).index),
                     what)
    kept = [s for s in slots if s.index not in bad_entries]
    return CheckedOutputs(folder, dl, kept, dict(sorted(bad_entries.items())),
                          [int(b) for b in batches if b is not None], originals, sizes,
                          unfinished)


def index_images(images_dir: str | Path) -> dict[str, Path]:
    """Map image name (no extension) -> path for ``<images_dir>/<event>/*.jpg``.

    Raises:
        DataMissingError: the folder does not exist.
        InputError: one name in two event folders.
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise DataMissingError(f"image folder not found: {display(root)}")
    index: dict[str, Path] = {}
    for event in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in sorted(event.glob("*.jpg")):
            if img.stem in index:
                raise InputError(f"{display(root)}: image name {display(img.stem)} appears in "
                                 f"two events ({index[img.stem].parent.name}, {event.name})")
            index[img.stem] = img
    return index


def _originals(slots: list[Slot], images_dir: Path
               ) -> tuple[dict[int, Path], dict[int, tuple[int, int]], dict[int, str]]:
    """Each line's original image (found by name) and its size, checked from its header."""
    from scrfd_ref.formats.images import read_image_size

    index = index_images(images_dir)
    found: dict[int, Path] = {}
    sizes: dict[int, tuple[int, int]] = {}
    missing: dict[int, str] = {}
    for s in slots:
        original = index.get(s.entry.stem)
        if original is None:
            missing[s.index] = (f"{display(s.entry)}: original image {display(s.entry.stem)}.jpg "
                                f"not found under {display(images_dir)}")
            continue
        try:
            w, h = read_image_size(original)
        except ScrfdRefError as exc:
            missing[s.index] = f"original image of line {s.index + 1}: {exc}"
            continue
        shape = npz_array_shape(s.entry, INPUT_KEY) if s.entry.is_file() else None
        if shape is not None and len(shape) == 3 and (shape[2], shape[1]) != (w, h):
            missing[s.index] = (f"{display(s.entry)}: input is {shape[2]}x{shape[1]} but the "
                                f"original {display(original)} is {w}x{h}: wrong pairing?")
            continue
        found[s.index] = original
        sizes[s.index] = (w, h)
    return found, sizes, missing
