"""WIDER FACE validation ground truth: readers for the official files, one typed structure.

Two sources give the same :class:`GroundTruth`:

* the official evaluation files (``eval_tools/ground_truth``): ``wider_face_val.mat``
  (keys ``event_list``, ``file_list``, ``face_bbx_list``; boxes ``x y w h``) and
  ``wider_{easy,medium,hard}_val.mat`` (key ``gt_list``: per image, the 1-based indices of
  the boxes that count in that setting; the other boxes are "don't care").
  Read with :func:`read_wider_mat`.
* the ``wider_face_val_bbx_gt.txt`` text layout (per image: ``event/name.jpg``, the box
  count, then one line per box ``x y w h`` followed by attribute columns, which are
  ignored; an image with 0 boxes may be followed by one all-zero placeholder line, as in
  the original download). The text layout has no easy / medium / hard split: the
  per-setting counted indices are taken from ``wider_{easy,medium,hard}_val.mat`` when
  those files are given (images matched by event and name, box counts checked); when
  they are absent there is no honest easy / medium / hard split, so the ground truth has
  one setting, ``all`` (every box counted), and :attr:`GroundTruth.note` says why.
  Read with :func:`read_wider_txt`.

:func:`load_ground_truth` picks the reader from a folder or file path.

Boxes are kept as written (float64). The official val ground truth contains four
``0 0 0 0`` placeholder boxes, a few zero-width or zero-height boxes and one box of width
-2 (counted in "hard"); none of them can reach IoU 0.5 under the official arithmetic, so
they are kept unchanged rather than rejected.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataMissingError, InputError

SETTINGS: tuple[str, ...] = ("easy", "medium", "hard")
#: the only setting of a text ground truth without the per-setting .mat files
ALL_FACES = "all"
FACE_MAT = "wider_face_val.mat"
SETTING_MAT = "wider_{}_val.mat"
TXT_NAMES: tuple[str, ...] = ("wider_face_val_bbx_gt.txt", "wider_face_val_bbx_gt.derived.txt")


@dataclass(frozen=True, eq=False)
class GroundTruthImage:
    """One annotated image.

    Attributes:
        event: event folder name, e.g. ``"0--Parade"``.
        name: image name without ``.jpg``, e.g. ``"0_Parade_marchingband_1_465"``.
        boxes: ``(n, 4)`` float64 ``x y w h`` (read-only).
        counted: setting -> sorted unique 0-based int64 indices of the boxes that count in
            that setting (read-only arrays; the other boxes are "don't care").
    """

    event: str
    name: str
    boxes: np.ndarray
    counted: Mapping[str, np.ndarray]

    @property
    def key(self) -> tuple[str, str]:
        """``(event, name)``, the key prediction sets use."""
        return (self.event, self.name)


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """A WIDER FACE ground truth: events, images in official order, per-setting indices.

    Attributes:
        events: event names in file order.
        images: every image, grouped by event in ``events`` order (official order).
        settings: the settings every image has counted indices for (``easy``, ``medium``,
            ``hard``; or only ``all`` for a text file without the setting lists).
        source: where it was read from (for messages).
        note: why the settings are not the official three, when they are not.
    """

    events: tuple[str, ...]
    images: tuple[GroundTruthImage, ...]
    settings: tuple[str, ...] = SETTINGS
    source: str = ""
    note: str = ""

    @property
    def num_boxes(self) -> int:
        """Total number of boxes (counted and "don't care")."""
        return int(sum(img.boxes.shape[0] for img in self.images))

    def num_counted(self, setting: str) -> int:
        """Number of boxes that count in ``setting``."""
        return int(sum(img.counted[setting].size for img in self.images))

    def keys(self) -> list[tuple[str, str]]:
        """``(event, name)`` of every image, in order."""
        return [img.key for img in self.images]

    def select(self, events: Iterable[str] | None = None,
               images: Iterable[tuple[str, str]] | None = None) -> "GroundTruth":
        """Return the subset of the given events and/or ``(event, name)`` images.

        Raises:
            InputError: an event or image that is not in this ground truth.
        """
        chosen = list(self.images)
        if events is not None:
            ev = list(dict.fromkeys(events))
            unknown = [e for e in ev if e not in self.events]
            if unknown:
                raise InputError(f"{self.source}: unknown event(s) {', '.join(unknown[:5])}"
                                 f" (the ground truth has {len(self.events)} events)")
            if not ev:
                raise InputError(f"{self.source}: empty event selection")
            keep = set(ev)
            chosen = [img for img in chosen if img.event in keep]
        if images is not None:
            want = list(dict.fromkeys((str(e), str(n)) for e, n in images))
            have = {img.key for img in chosen}
            unknown_imgs = [k for k in want if k not in have]
            if unknown_imgs:
                names = ", ".join("/".join(k) for k in unknown_imgs[:5])
                raise InputError(f"{self.source}: {len(unknown_imgs)} selected image(s) not in "
                                 f"the ground truth (or outside the chosen events): {names}")
            keep_imgs = set(want)
            chosen = [img for img in chosen if img.key in keep_imgs]
        present = {img.event for img in chosen}
        return GroundTruth(events=tuple(e for e in self.events if e in present),
                           images=tuple(chosen), settings=self.settings, source=self.source,
                           note=self.note)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def make_image(event: str, name: str, boxes: np.ndarray,
               counted: Mapping[str, Sequence[int] | np.ndarray]) -> GroundTruthImage:
    """Build a :class:`GroundTruthImage` (copies, converts, freezes the arrays).

    Args:
        event: event name.
        name: image name (a trailing ``.jpg`` is removed).
        boxes: ``(n, 4)`` ``x y w h``.
        counted: setting -> 0-based indices of the counted boxes.

    Raises:
        InputError: wrong box shape or an index outside ``0..n-1``.
    """
    name = name[:-4] if name.lower().endswith(".jpg") else name
    b = np.array(boxes, dtype=np.float64, copy=True)
    if b.size == 0:
        b = np.zeros((0, 4), dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise InputError(f"{event}/{name}: boxes must be (n, 4) x y w h, got shape {b.shape}")
    idx = {}
    for s, v in counted.items():
        a = np.unique(np.asarray(v, dtype=np.int64).ravel())
        if a.size and (a[0] < 0 or a[-1] >= b.shape[0]):
            raise InputError(f"{event}/{name}: {s} index out of range 0..{b.shape[0] - 1}")
        idx[s] = _frozen(a)
    return GroundTruthImage(event=event, name=name, boxes=_frozen(b),
                            counted=idx)


# ----------------------------------------------------------------------------- .mat


def _guarded(fn, path: Path):
    """``fn(path)`` in a forked child process, so a reader crash cannot take this process.

    ``scipy.io.loadmat`` can die of a segmentation fault on a corrupt file (seen with a
    single changed byte); the child's death becomes an InputError naming the file. The
    parsed result comes back pickled (the flat lists and arrays of :func:`_read_face_mat`,
    a few ms). Where ``fork`` is unavailable the reader runs in this process.
    """
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    import scipy.io  # noqa: F401 - imported here, before the fork, never in the child

    if os.name != "posix" or not path.is_file():
        return fn(path)
    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:  # pragma: no cover - a platform without fork
        return fn(path)
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        try:
            return pool.submit(fn, path).result()
        except BrokenProcessPool:
            raise InputError(f"{path}: not a readable MATLAB .mat file (the .mat reader "
                             "crashed on it: truncated or corrupt?)") from None


def _loadmat(path: Path) -> dict:
    """scipy.io.loadmat with clear errors (missing -> DataMissingError, corrupt -> InputError)."""
    if not path.is_file():
        raise DataMissingError(f"ground truth file not found: {path}")
    import scipy.io

    try:
        return scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError/MatReadError...
        raise InputError(f"{path}: not a readable MATLAB .mat file (truncated or corrupt?): "
                         f"{type(exc).__name__}: {exc}") from None


def _key(mat: dict, key: str, path: Path) -> np.ndarray:
    if key not in mat:
        have = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        raise InputError(f"{path}: missing key {key!r} (keys present: {have})")
    return mat[key]


def _cells(arr: object, path: Path, what: str) -> list:
    """Cell array ``(k, 1)`` -> list of its k elements."""
    if not isinstance(arr, np.ndarray) or arr.dtype != object:
        raise InputError(f"{path}: {what} is not a MATLAB cell array")
    return [c for c in arr.ravel()]


def _string(cell: object, path: Path, what: str) -> str:
    a = cell
    while isinstance(a, np.ndarray) and a.dtype == object and a.size == 1:
        a = a.ravel()[0]
    if isinstance(a, np.ndarray) and a.dtype.kind == "U" and a.size == 1:
        return str(a.ravel()[0])
    if isinstance(a, str):
        return a
    raise InputError(f"{path}: {what} is not a string")


def _inner(cell: object, path: Path, what: str) -> list:
    """A cell element that is itself a cell array (``event i``'s list) -> list."""
    a = cell
    if isinstance(a, np.ndarray) and a.dtype == object:
        return [c for c in a.ravel()]
    raise InputError(f"{path}: {what} is not a cell array")


def _numeric(cell: object, path: Path, what: str) -> np.ndarray:
    a = cell
    while isinstance(a, np.ndarray) and a.dtype == object and a.size == 1:
        a = a.ravel()[0]
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "iuf":
        raise InputError(f"{path}: {what} is not a numeric array")
    return a


def _read_face_mat(path: Path) -> tuple[list[str], list[list[str]], list[list[np.ndarray]]]:
    mat = _loadmat(path)
    events_c = _cells(_key(mat, "event_list", path), path, "event_list")
    files_c = _cells(_key(mat, "file_list", path), path, "file_list")
    boxes_c = _cells(_key(mat, "face_bbx_list", path), path, "face_bbx_list")
    if not (len(events_c) == len(files_c) == len(boxes_c)):
        raise InputError(f"{path}: event_list, file_list and face_bbx_list have different "
                         f"lengths ({len(events_c)}, {len(files_c)}, {len(boxes_c)})")
    events = [_string(c, path, f"event_list[{i}]") for i, c in enumerate(events_c)]
    names: list[list[str]] = []
    boxes: list[list[np.ndarray]] = []
    for i, ev in enumerate(events):
        fl = _inner(files_c[i], path, f"file_list[{i}] ({ev})")
        bl = _inner(boxes_c[i], path, f"face_bbx_list[{i}] ({ev})")
        if len(fl) != len(bl):
            raise InputError(f"{path}: event {ev}: {len(fl)} file names but {len(bl)} box lists")
        names.append([_string(c, path, f"file_list[{i}][{j}] ({ev})") for j, c in enumerate(fl)])
        ev_boxes = []
        for j, c in enumerate(bl):
            b = _numeric(c, path, f"face_bbx_list[{i}][{j}] ({ev}/{names[-1][j]})")
            if b.size == 0:
                b = np.zeros((0, 4))
            if b.ndim != 2 or b.shape[1] != 4:
                raise InputError(f"{path}: {ev}/{names[-1][j]}: boxes have shape {b.shape}, "
                                 f"expected (n, 4)")
            ev_boxes.append(b)
        boxes.append(ev_boxes)
    return events, names, boxes


def _read_setting_mat(path: Path) -> tuple[list[str] | None, list[list[str]] | None,
                                           list[list[np.ndarray]]]:
    """``gt_list`` (1-based indices) and, when present, the event / file names."""
    mat = _loadmat(path)
    gl = _cells(_key(mat, "gt_list", path), path, "gt_list")
    lists = []
    for i, c in enumerate(gl):
        per_img = _inner(c, path, f"gt_list[{i}]")
        lists.append([_numeric(x, path, f"gt_list[{i}][{j}]").astype(np.int64).ravel()
                      if np.size(x) else np.zeros(0, np.int64) for j, x in enumerate(per_img)])
    events = names = None
    if "event_list" in mat and "file_list" in mat:
        ev_c = _cells(mat["event_list"], path, "event_list")
        fl_c = _cells(mat["file_list"], path, "file_list")
        events = [_string(c, path, f"event_list[{i}]") for i, c in enumerate(ev_c)]
        names = [[_string(x, path, f"file_list[{i}][{j}]") for j, x in
                  enumerate(_inner(c, path, f"file_list[{i}]"))] for i, c in enumerate(fl_c)]
    return events, names, lists


def _counted_from_1based(idx: np.ndarray, n: int, path: Path, where: str) -> np.ndarray:
    if idx.size and (idx.min() < 1 or idx.max() > n):
        raise InputError(f"{path}: {where}: box index out of range 1..{n} "
                         f"(got {int(idx.min())}..{int(idx.max())})")
    return idx - 1


def setting_mat_paths(folder: Path) -> dict[str, Path]:
    """``{setting: folder/wider_<setting>_val.mat}`` for the settings whose file exists."""
    return {s: folder / SETTING_MAT.format(s) for s in SETTINGS
            if (folder / SETTING_MAT.format(s)).is_file()}


def read_wider_mat(gt_dir: str | Path) -> GroundTruth:
    """Read the official ``wider_face_val.mat`` + ``wider_{easy,medium,hard}_val.mat``.

    Images are paired positionally, as the official tool does; when a setting file also
    carries ``event_list`` / ``file_list`` they must name the same events and images.

    Raises:
        DataMissingError: one of the four files is absent.
        InputError: truncated / corrupt file, missing key, or mismatched event or image
            counts (or names) between the files; the message names the file.
    """
    folder = Path(gt_dir)
    face_path = folder / FACE_MAT
    events, names, boxes = _guarded(_read_face_mat, face_path)
    counted: dict[str, list[list[np.ndarray]]] = {}
    for s in SETTINGS:
        spath = folder / SETTING_MAT.format(s)
        s_events, s_names, lists = _guarded(_read_setting_mat, spath)
        if len(lists) != len(events):
            raise InputError(f"{spath}: gt_list has {len(lists)} events but {face_path.name} "
                             f"has {len(events)}")
        if s_events is not None and s_events != events:
            bad = next(i for i in range(min(len(s_events), len(events)) + 1)
                       if i >= len(s_events) or i >= len(events) or s_events[i] != events[i])
            raise InputError(f"{spath}: event_list differs from {face_path.name} at position "
                             f"{bad + 1}")
        per_event = []
        for i, ev in enumerate(events):
            if len(lists[i]) != len(names[i]):
                raise InputError(f"{spath}: event {ev}: gt_list has {len(lists[i])} images but "
                                 f"{face_path.name} has {len(names[i])} (mismatched image counts)")
            if s_names is not None and i < len(s_names) and s_names[i] != names[i]:
                raise InputError(f"{spath}: event {ev}: file_list differs from {face_path.name}")
            per_event.append([
                _counted_from_1based(lists[i][j], boxes[i][j].shape[0], spath,
                                     f"{ev}/{names[i][j]}") for j in range(len(names[i]))])
        counted[s] = per_event
    images = [
        make_image(ev, names[i][j], boxes[i][j], {s: counted[s][i][j] for s in SETTINGS})
        for i, ev in enumerate(events) for j in range(len(names[i]))
    ]
    _check_unique(images, face_path)
    return GroundTruth(events=tuple(events), images=tuple(images), settings=SETTINGS,
                       source=str(face_path))


def _check_unique(images: Sequence[GroundTruthImage], path: Path) -> None:
    seen: set[tuple[str, str]] = set()
    for img in images:
        if img.key in seen:
            raise InputError(f"{path}: image {img.event}/{img.name} appears twice")
        seen.add(img.key)


# ----------------------------------------------------------------------------- .txt


def _parse_txt(path: Path) -> list[tuple[str, str, np.ndarray]]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise DataMissingError(f"ground truth file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ground truth text: {exc}") from None
    out: list[tuple[str, str, np.ndarray]] = []
    i, n = 0, len(lines)
    while i < n:
        head = lines[i].strip()
        if not head:
            i += 1
            continue
        lineno = i + 1
        if "/" not in head:
            raise InputError(f"{path}:{lineno}: expected an image line 'event/name.jpg', "
                             f"got {head[:60]!r}")
        event, _, fname = head.rpartition("/")
        event = event.rsplit("/", 1)[-1]
        if i + 1 >= n:
            raise InputError(f"{path}:{lineno}: file ends after the image line (no box count)")
        cnt_txt = lines[i + 1].strip()
        try:
            count = int(cnt_txt)
        except ValueError:
            raise InputError(f"{path}:{lineno + 1}: box count is not an integer: "
                             f"{cnt_txt[:60]!r}") from None
        if count < 0:
            raise InputError(f"{path}:{lineno + 1}: negative box count {count}")
        i += 2
        rows = []
        for k in range(count):
            if i >= n:
                raise InputError(f"{path}:{lineno + 1}: count says {count} boxes but the file "
                                 f"ends after {k} (truncated?)")
            parts = lines[i].split()
            if len(parts) < 4:
                raise InputError(f"{path}:{i + 1}: expected 'x y w h ...', got {lines[i][:60]!r}")
            try:
                rows.append([float(p) for p in parts[:4]])
            except ValueError:
                raise InputError(f"{path}:{i + 1}: non-numeric box line {lines[i][:60]!r}") from None
            i += 1
        if count == 0 and i < n:
            # the original file follows a 0-box image with one all-zero placeholder line
            parts = lines[i].split()
            if parts and "/" not in lines[i] and all(_is_zero(p) for p in parts):
                i += 1
        boxes = np.array(rows, dtype=np.float64).reshape(-1, 4)
        if not np.isfinite(boxes).all():
            raise InputError(f"{path}:{lineno}: {head}: non-finite box value")
        out.append((event, fname, boxes))
    if not out:
        raise InputError(f"{path}: no images in ground truth text file")
    return out


def _is_zero(tok: str) -> bool:
    try:
        return float(tok) == 0.0
    except ValueError:
        return False


def read_wider_txt(txt_path: str | Path,
                   setting_mats: Mapping[str, str | Path] | None = None) -> GroundTruth:
    """Read the ``wider_face_val_bbx_gt.txt`` layout.

    Args:
        txt_path: the text file.
        setting_mats: ``{"easy": path, "medium": path, "hard": path}`` of the official
            ``wider_<setting>_val.mat`` files to take the counted indices from (they must
            carry ``event_list`` / ``file_list`` so images can be matched by name, and the
            box counts must agree). ``None`` or empty: one setting, ``all`` (every box
            counted), with a note saying why.

    Raises:
        DataMissingError: the text file (or a given setting file) is absent.
        InputError: malformed text (file and line named), duplicate image, setting files
            that miss images or disagree on box counts, only some of the three settings.
    """
    path = Path(txt_path)
    entries = _parse_txt(path)
    events: list[str] = list(dict.fromkeys(e for e, _, _ in entries))
    counted: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    keys = [(e, f[:-4] if f.lower().endswith(".jpg") else f) for e, f, _ in entries]
    if setting_mats:
        missing = [s for s in SETTINGS if s not in setting_mats]
        if missing:
            raise DataMissingError(f"{path}: setting files given for {', '.join(setting_mats)} "
                                   f"but not for {', '.join(missing)} (give all three or none)")
        nbox = {k: b.shape[0] for k, (_, _, b) in zip(keys, entries)}
        for s in SETTINGS:
            spath = Path(setting_mats[s])
            s_events, s_names, lists = _guarded(_read_setting_mat, spath)
            if s_events is None or s_names is None:
                raise InputError(f"{spath}: needs event_list and file_list to be matched to {path}")
            if len(s_events) != len(lists) or any(len(a) != len(b) for a, b in
                                                  zip(s_names, lists)):
                raise InputError(f"{spath}: gt_list and file_list have mismatched image counts")
            table = {(ev, nm): lists[i][j] for i, ev in enumerate(s_events)
                     for j, nm in enumerate(s_names[i])}
            if len(table) != len(keys):
                raise InputError(f"{spath}: {len(table)} images but {path.name} has {len(keys)} "
                                 f"(mismatched image counts)")
            for k in keys:
                if k not in table:
                    raise InputError(f"{spath}: no entry for {k[0]}/{k[1]} of {path.name}")
                counted.setdefault(k, {})[s] = _counted_from_1based(table[k], nbox[k], spath,
                                                                    "/".join(k))
    settings = SETTINGS if setting_mats else (ALL_FACES,)
    images = []
    for k, (_, _, b) in zip(keys, entries):
        c = counted.get(k) or {ALL_FACES: np.arange(b.shape[0])}
        images.append(make_image(k[0], k[1], b, c))
    _check_unique(images, path)
    by_event = {e: [img for img in images if img.event == e] for e in events}
    ordered = tuple(img for e in events for img in by_event[e])
    note = "" if setting_mats else (
        f"{path.name} has no easy / medium / hard lists and no wider_{{easy,medium,hard}}_val.mat "
        f"beside it: reporting the 'all faces' setting only (every box counted)")
    return GroundTruth(events=tuple(events), images=ordered, settings=settings,
                       source=str(path), note=note)


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Load WIDER FACE ground truth from a folder or a file.

    * a folder with ``wider_face_val.mat``: :func:`read_wider_mat` (needs the three setting
      files too);
    * a ``.txt`` file, or a folder with ``wider_face_val_bbx_gt.txt`` (or the
      ``.derived.txt`` variant): :func:`read_wider_txt`, with counted indices from the
      setting ``.mat`` files beside it when all three are there, else every box counted;
    * a ``wider_face_val.mat`` file: its folder.

    Raises:
        DataMissingError: nothing usable at ``path``.
    """
    p = Path(path)
    if p.is_file():
        if p.suffix.lower() == ".mat":
            return read_wider_mat(p.parent)
        return read_wider_txt(p, setting_mat_paths(p.parent) or None)
    if not p.is_dir():
        raise DataMissingError(f"ground truth not found: {p}")
    if (p / FACE_MAT).is_file():
        return read_wider_mat(p)
    for name in TXT_NAMES:
        if (p / name).is_file():
            return read_wider_txt(p / name, setting_mat_paths(p) or None)
    raise DataMissingError(f"{p}: no {FACE_MAT} or {TXT_NAMES[0]} in this folder")
