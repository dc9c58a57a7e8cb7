"""WIDER FACE ground truth: the readers of the official MATLAB ``.mat`` files.

The official evaluation files (``eval_tools/ground_truth``): ``wider_face_val.mat``
(keys ``event_list``, ``file_list``, ``face_bbx_list``; boxes ``x y w h``; and the six face
labels ``blur_label_list``, ``expression_label_list``, ``illumination_label_list``,
``invalid_label_list``, ``occlusion_label_list``, ``pose_label_list``, per box, read into
``GroundTruthImage.attributes``; a copy without them reads with ``attributes`` None) and
``wider_{easy,medium,hard}_val.mat`` (key ``gt_list``: per image, the 1-based indices of
the boxes that count in that setting; the other boxes are "don't care").
Read with :func:`read_wider_mat`; :mod:`scrfd_ref.formats.ground_truth_txt` takes the
per-setting indices of a text ground truth from the same setting files.

Every ``.mat`` file is parsed in a child process (:func:`_guarded`), so a
``scipy.io.loadmat`` crash on a corrupt file becomes an InputError.

The types and constants come from :mod:`scrfd_ref.formats.ground_truth_types`;
:mod:`scrfd_ref.formats.ground_truth` re-exports the public readers.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scrfd_ref.core.errors import DataMissingError, InputError

if TYPE_CHECKING:
    from scrfd_ref.formats.ground_truth_types import GroundTruth, GroundTruthImage


#: seconds a .mat read may take in its child process before it is called stuck
READ_TIMEOUT_S = 300.0
_CRASHED = ("not a readable MATLAB .mat file (the .mat reader crashed on it: truncated or "
            "corrupt?)")


def _single_threaded() -> bool:
    """True when this process has one OS thread (Linux ``/proc``): only then is a plain
    fork safe. A runtime's native threads (ONNX Runtime's pool, OpenVINO's TBB workers)
    may hold a lock at the fork, and the child deadlocks on it (seen: a .mat read hung
    after an OpenVINO run)."""
    import os

    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _guarded(fn, path: Path):
    """``fn(path)`` in a child process (:func:`_guarded_many` of one call)."""
    return _guarded_many([(fn, path)])[0]


def _call_all(calls):
    """Each ``fn(path)`` of ``calls``: ``("ok", result)`` or ``("error", kind, text)`` for
    the project's own errors (any other exception propagates)."""
    from scrfd_ref.core.errors import ScrfdRefError

    out = []
    for fn, path in calls:
        try:
            out.append(("ok", fn(Path(path))))
        except ScrfdRefError as exc:
            out.append(("error", type(exc).__name__, str(exc)))
    return out


def _guarded_many(calls: Sequence[tuple]) -> list:
    """``[fn(path) for fn, path in calls]`` in one child process, so a reader crash cannot
    take this process.

    ``scipy.io.loadmat`` can die of a segmentation fault on a corrupt file (seen with a
    single changed byte); the child's death becomes an InputError naming the file. The
    parsed results come back pickled (the flat lists and arrays of :func:`_read_face_mat`,
    a few ms). The child is a fork of this process when it has no other thread (fast),
    else a fresh interpreter (``python -c``, about a second: a fork of a multi-threaded
    process can deadlock). The first error, in call order, is raised. Outside POSIX the
    readers run in this process.
    """
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    import scipy.io  # noqa: F401 - imported here, before the fork, never in the child

    if os.name != "posix":
        return [fn(Path(p)) for fn, p in calls]
    try:
        if _single_threaded():
            with ProcessPoolExecutor(max_workers=1,
                                     mp_context=multiprocessing.get_context("fork")) as pool:
                try:
                    results = pool.submit(_call_all, calls).result(timeout=READ_TIMEOUT_S)
                except BrokenProcessPool:
                    raise InputError(f"{Path(calls[0][1])}: {_CRASHED}") from None
        else:
            results = _in_fresh_interpreter(calls, Path(calls[0][1]))
    except InputError:
        if len(calls) == 1:
            raise
        # one of the files crashed the reader: read them one by one to name it
        return [_guarded(fn, Path(p)) for fn, p in calls]
    out = []
    for res in results:
        if res[0] == "error":
            raise {"DataMissingError": DataMissingError}.get(res[1], InputError)(res[2])
        out.append(res[1])
    return out


_CHILD = """
import pickle, sys
from pathlib import Path
from scrfd_ref.formats import ground_truth_mat as m
calls = [(getattr(m, n), Path(p)) for n, p in zip(sys.argv[1::2], sys.argv[2::2])]
sys.stdout.buffer.write(pickle.dumps(m._call_all(calls)))
"""


def _in_fresh_interpreter(calls: Sequence[tuple], where) -> list:
    """:func:`_call_all` of ``calls`` (readers of this module, by name) in ``python -c``;
    its crash or hang an InputError naming ``where``."""
    import pickle
    import subprocess
    import sys

    argv = [x for fn, p in calls for x in (fn.__name__, str(p))]
    try:
        res = subprocess.run([sys.executable, "-c", _CHILD, *argv], capture_output=True,
                             timeout=READ_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InputError(f"{where}: the .mat reader took over {READ_TIMEOUT_S:g} s") from None
    if res.returncode != 0 or not res.stdout:
        raise InputError(f"{where}: {_CRASHED}")
    return pickle.loads(res.stdout)   # written by our own child process above


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


def _read_labels(mat: dict, path: Path, events: list[str], names: list[list[str]],
                 boxes: list[list[np.ndarray]]) -> list[list[dict[str, np.ndarray]]] | None:
    """The six ``<attribute>_label_list`` cell arrays (per event, per image, ``(n, 1)``
    uint8), as ``[event][image] -> {attribute: (n,) labels}``; None when the file has none
    of them (a reduced copy); an InputError when it has some but not all, or a list that
    does not match the boxes."""
    from scrfd_ref.formats.ground_truth_types import ATTRIBUTES

    keys = {a: f"{a}_label_list" for a in ATTRIBUTES}
    present = [a for a, k in keys.items() if k in mat]
    if not present:
        return None
    if len(present) != len(keys):
        lacking = ", ".join(k for a, k in keys.items() if a not in present)
        raise InputError(f"{path}: has face labels but not {lacking}")
    out = [[{} for _ in ev_names] for ev_names in names]
    for a, k in keys.items():
        cells = _cells(mat[k], path, k)
        if len(cells) != len(events):
            raise InputError(f"{path}: {k} has {len(cells)} events, face_bbx_list "
                             f"{len(events)}")
        for i, ev in enumerate(events):
            per_img = _inner(cells[i], path, f"{k}[{i}] ({ev})")
            if len(per_img) != len(names[i]):
                raise InputError(f"{path}: {k}, event {ev}: {len(per_img)} images, "
                                 f"file_list {len(names[i])}")
            for j, c in enumerate(per_img):
                n = boxes[i][j].shape[0]
                v = _numeric(c, path, f"{k}[{i}][{j}] ({ev}/{names[i][j]})") if np.size(c) \
                    else np.zeros(0, np.uint8)
                if v.size != n:
                    raise InputError(f"{path}: {ev}/{names[i][j]}: {v.size} {a} labels for "
                                     f"{n} boxes")
                values = ATTRIBUTES[a]
                known = np.isin(v, np.arange(len(values)))
                if not known.all():   # named here with the file (make_image would not)
                    bad = v[~known].ravel()[0]
                    raise InputError(f"{path}: {ev}/{names[i][j]}: {k} holds {bad:g}; {a} "
                                     f"labels are 0..{len(values) - 1} ({' / '.join(values)}): "
                                     "give the official wider_face_val.mat")
                out[i][j][a] = v.ravel()
    return out


def _read_face_mat(path: Path) -> tuple[list[str], list[list[str]], list[list[np.ndarray]],
                                        list[list[dict[str, np.ndarray]]] | None]:
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
    return events, names, boxes, _read_labels(mat, path, events, names, boxes)


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
    from scrfd_ref.formats.ground_truth_types import SETTING_MAT, SETTINGS

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
    from scrfd_ref.formats.ground_truth_types import (
        FACE_MAT,
        SETTING_MAT,
        SETTINGS,
        GroundTruth,
        make_image,
    )

    folder = Path(gt_dir)
    face_path = folder / FACE_MAT
    setting_paths = [folder / SETTING_MAT.format(s) for s in SETTINGS]
    face, *settings = _guarded_many([(_read_face_mat, face_path)]
                                    + [(_read_setting_mat, p) for p in setting_paths])
    events, names, boxes, labels = face
    counted: dict[str, list[list[np.ndarray]]] = {}
    for s, spath, (s_events, s_names, lists) in zip(SETTINGS, setting_paths, settings):
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
        make_image(ev, names[i][j], boxes[i][j], {s: counted[s][i][j] for s in SETTINGS},
                   None if labels is None else labels[i][j])
        for i, ev in enumerate(events) for j in range(len(names[i]))
    ]
    _check_unique(images, face_path)
    check_settings_nest(images, folder)
    return GroundTruth(events=tuple(events), images=tuple(images), settings=SETTINGS,
                       source=str(face_path))


def check_settings_nest(images: Sequence[GroundTruthImage], path: Path) -> None:
    """The WIDER settings nest (every face counted in easy counts in medium, every one in
    medium counts in hard): the format's promise, and what a shuffled or hand-edited
    setting file breaks silently (the AP of a setting would then judge other faces).

    Raises:
        InputError: the first image where a smaller setting counts a face the larger one
            does not, named with the setting and box numbers (1-based, as in the files).
    """
    order = [s for s in ("easy", "medium", "hard") if images and s in images[0].counted]
    for img in images:
        for small, large in zip(order, order[1:]):
            extra = np.setdiff1d(img.counted[small], img.counted[large])
            if extra.size:
                boxes = ", ".join(str(int(i) + 1) for i in extra[:5])
                raise InputError(f"{path}: {img.event}/{img.name}: box(es) {boxes} count in "
                                 f"{small} but not in {large}; the WIDER settings nest (easy "
                                 f"within medium within hard): a setting file is not the "
                                 "official one")


def _check_unique(images: Sequence[GroundTruthImage], path: Path) -> None:
    seen: set[tuple[str, str]] = set()
    for img in images:
        if img.key in seen:
            raise InputError(f"{path}: image {img.event}/{img.name} appears twice")
        seen.add(img.key)


__all__ = ["check_settings_nest", "read_wider_mat", "setting_mat_paths"]
