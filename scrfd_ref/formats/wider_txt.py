"""WIDER FACE prediction text files: ``<dir>/<event>/<name>.txt``.

Layout (one file per image)::

    <image name>          # "name", "name.jpg", "event/name" or "event/name.jpg"
    <N>                   # number of detections
    x y w h score         # N lines, original pixels, any float format
    ...

Reader (:func:`read_prediction_file`, :func:`read_prediction_dir`): validates that the
count line is a non-negative integer, that exactly N non-blank lines follow (trailing blank
lines are allowed), that each holds exactly 5 finite numbers, and that the name line names
the file (its last path component, less ``.jpg``, equals the file name less ``.txt``; a
directory component before it must equal the event folder). A negative width or height is
accepted as the official WiderFace-Evaluation accepts it (it reads the numbers and
computes ``x2 = x + w``): insightface's own ``tools/test_widerface.py`` writes such rows
for inverted boxes. :func:`count_inverted` counts them so the caller can warn once. Every
error is an :class:`~scrfd_ref.core.errors.InputError` naming the file and, where it applies,
the line; :func:`read_prediction_dir` reads every file and reports every bad one at once.
The reader does not assume any order of the lines.

Writer (:func:`write_predictions`): name line ``event/name``, then the count, then the rows
in descending score order (stable: equal scores keep their input order), every row the
detector produced (negative widths included). Every number is written as
``repr(float(v))``: Python's shortest decimal string that parses back to the same float64
(e.g. ``345.0``, ``0.8127``, ``1e-05``), so ``read(write(x)) == x`` bit for bit (insightface
writes ``%.5f`` / ``%g``, which rounds); :func:`format_rows` writes those bytes through
orjson, 15x faster than ``repr`` itself. The file is written atomically with the user's
umask, so a reader never sees a half-written file.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import orjson

from scrfd_ref.core.detections import Detections
from scrfd_ref.core.errors import DataMissingError, InputError
from scrfd_ref.formats.files import write_bytes

PredictionKey = tuple[str, str]


def _strip_jpg(name: str) -> str:
    return name[:-4] if name.lower().endswith(".jpg") else name


def image_name_of(path: str | Path) -> str:
    """Image name a prediction file stands for: file name less ``.txt`` (and ``.jpg``)."""
    stem = Path(path).name
    stem = stem[:-4] if stem.lower().endswith(".txt") else stem
    return _strip_jpg(stem)


def _check_name_line(line: str, path: Path, event: str | None, name: str) -> None:
    text = line.strip()
    if not text:
        raise InputError(f"{path}:1: empty image name line")
    parts = [p for p in text.replace("\\", "/").split("/") if p]
    if _strip_jpg(parts[-1]) != name:
        raise InputError(f"{path}:1: name line {text!r} does not match the file name {name!r}")
    if event is not None and len(parts) >= 2 and parts[-2] != event:
        raise InputError(f"{path}:1: name line {text!r} names event {parts[-2]!r} but the file "
                         f"is in folder {event!r}")


def parse_prediction_text(text: str, path: str | Path = "<text>", *, event: str | None = None,
                          name: str | None = None) -> np.ndarray:
    """Parse the text of one prediction file into an ``(n, 5)`` float64 array.

    Args:
        text: file content.
        path: file name used in error messages.
        event: event folder the file is in (checked against an ``event/`` prefix of the
            name line); ``None`` to skip that check.
        name: expected image name (less ``.jpg``); ``None`` to skip the name check.

    Returns:
        ``(n, 5)`` float64 ``x y w h score`` in file order.

    Raises:
        InputError: any deviation from the layout, naming the file and line.
    """
    p = Path(path)
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise InputError(f"{p}:1: empty file or empty image name line")
    if name is not None:
        _check_name_line(lines[0], p, event, name)
    if len(lines) < 2 or not lines[1].strip():
        raise InputError(f"{p}:2: missing detection count line")
    try:
        count = int(lines[1].strip())
    except ValueError:
        raise InputError(f"{p}:2: detection count is not an integer: {lines[1].strip()[:60]!r}") from None
    if count < 0:
        raise InputError(f"{p}:2: negative detection count {count}")
    body = lines[2:]
    while body and not body[-1].strip():
        body.pop()
    if len(body) != count:
        raise InputError(f"{p}:2: count line says {count} detections but {len(body)} lines follow")
    if count == 0:
        return np.zeros((0, 5), dtype=np.float64)
    tokens: list[str] = []
    for k, line in enumerate(body):
        parts = line.split()
        if len(parts) != 5:
            raise InputError(f"{p}:{k + 3}: expected 5 numbers 'x y w h score', got {len(parts)}: "
                             f"{line.strip()[:60]!r}")
        tokens.extend(parts)
    try:
        arr = np.array([float(t) for t in tokens], dtype=np.float64).reshape(count, 5)
    except ValueError:
        for k, line in enumerate(body):
            for t in line.split():
                try:
                    float(t)
                except ValueError:
                    raise InputError(f"{p}:{k + 3}: non-numeric value {t[:30]!r} in "
                                     f"{line.strip()[:60]!r}") from None
        raise  # pragma: no cover - every ValueError comes from one token above
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(f"{p}:{k + 3}: non-finite value (nan/inf) in {body[k].strip()[:60]!r}")
    return arr


def count_inverted(rows: np.ndarray) -> int:
    """Rows with a negative width or height (kept, as the official evaluation keeps them)."""
    a = np.asarray(rows)
    return int(np.count_nonzero((a[:, 2] < 0) | (a[:, 3] < 0))) if a.size else 0


def read_prediction_file(path: str | Path, event: str | None = None) -> np.ndarray:
    """Read and validate one ``<name>.txt`` prediction file.

    Args:
        path: the file.
        event: its event folder name (default: the parent folder's name).

    Returns:
        ``(n, 5)`` float64 ``x y w h score`` in file order.

    Raises:
        DataMissingError: the file does not exist.
        InputError: malformed content (file and line named).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataMissingError(f"prediction file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read prediction file: {exc}") from None
    if "\0" in text:
        raise InputError(f"{p}: holds NUL bytes (a binary file, not a prediction file)")
    return parse_prediction_text(text, p, event=event if event is not None else p.parent.name,
                                 name=image_name_of(p))


def list_event_dirs(pred_dir: str | Path) -> list[str]:
    """Sorted names of the sub-folders (events) of a prediction folder."""
    root = Path(pred_dir)
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def read_prediction_dir(pred_dir: str | Path, events: Iterable[str] | None = None, *,
                        missing_ok: bool = False) -> dict[PredictionKey, np.ndarray]:
    """Read every ``<event>/<name>.txt`` of a prediction folder.

    Only ``*.txt`` files directly inside event folders are read (hidden files and other
    names are ignored, so a writer's temporary files never count).

    Args:
        pred_dir: the prediction folder.
        events: event folders to read; ``None``: every sub-folder.
        missing_ok: with ``events`` given, skip absent event folders instead of failing.

    Returns:
        ``{(event, name): (n, 5) float64}``; names are less ``.txt`` / ``.jpg``.

    Raises:
        DataMissingError: ``pred_dir`` does not exist.
        InputError: ``pred_dir`` is not a folder, has no event folders or no ``.txt``
            files, a requested event folder is missing, two files stand for the same image
            (``a.txt`` and ``a.jpg.txt``, or one name in two event folders), or a file is
            malformed.
    """
    root = Path(pred_dir)
    if not root.exists():
        raise DataMissingError(f"prediction folder not found: {root}")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (expected <dir>/<event>/<name>.txt)")
    if events is None:
        names = list_event_dirs(root)
        if not names:
            raise InputError(f"{root}: empty prediction folder (no event sub-folders)")
    else:
        names = list(dict.fromkeys(events))
        absent = [e for e in names if not (root / e).is_dir()]
        if absent and not missing_ok:
            raise InputError(f"{root}: missing event folder(s) {', '.join(absent[:5])}"
                             f"{' ...' if len(absent) > 5 else ''} ({root / absent[0]})")
        names = [e for e in names if e not in absent]
    out: dict[PredictionKey, np.ndarray] = {}
    where: dict[str, Path] = {}
    problems: list[str] = []
    named = [f for ev in names for f in sorted((root / ev).iterdir())
             if not f.name.startswith(".") and f.suffix.lower() == ".txt"]
    files = [f for f in named if f.is_file()]
    problems += [f"{f}: not a regular file (a folder, FIFO or device under a prediction "
                 "file's name); move it away" for f in named if not f.is_file()]
    problems += _recorded_content_problems(root, files)
    for f in files:
        ev = f.parent.name
        name = image_name_of(f)
        if name in where:
            problems.append(f"{f}: a second prediction file for image {name!r} (also "
                            f"{where[name]}): each image must be named once")
            continue
        where[name] = f
        try:
            out[(ev, name)] = read_prediction_file(f, ev)
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        from scrfd_ref.core.errors import problem_list

        raise problem_list(problems, f"prediction folder {root}")
    if not out and (events is None or not missing_ok):
        raise InputError(f"{root}: no prediction files (<event>/<name>.txt) found")
    return out


def _recorded_content_problems(root: Path, files: list[Path]) -> list[str]:
    """Prediction files that disagree with the sha256 the folder's ``scrfd_run.json``
    recorded when ``wider-run`` / ``npz-decode`` wrote them (edited or added since)."""
    from scrfd_ref.formats.manifest import RUN_MANIFEST, read_manifest
    from scrfd_ref.formats.run_outputs import hash_problems

    doc = read_manifest(root, RUN_MANIFEST)
    if doc is None:
        return []
    return hash_problems(root, [f.relative_to(root).as_posix() for f in files], doc,
                         complete=bool(doc.get("complete")), manifest=RUN_MANIFEST)


def _validate_dets(dets: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(dets, dtype=np.float64)
    if a.size == 0:
        return np.zeros((0, 5), dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 5:
        raise InputError(f"{what}: detections must be (n, 5) x y w h score, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{what}: detections contain nan or inf")
    return a


# |v| in [1e-4, 1e16) (or 0): repr() writes plain decimal digits, and so does orjson, with
# the same shortest round-trip digits; outside it the two spell exponents differently
# (``1e-05`` / ``1e-5``, ``1e+16``), so a file holding such a value is formatted by repr()
_PLAIN_MIN, _PLAIN_MAX = 1e-4, 1e16
_COMMA, _SPACE, _NEWLINE = ord(","), ord(" "), ord("\n")


def format_rows(rows: np.ndarray) -> bytes:
    """``(n, 5)`` float64 rows as ``n`` lines of 5 space-separated ``repr(float(v))``.

    Byte for byte what ``("%r %r %r %r %r\\n" * n) % tuple(rows.ravel().tolist())``
    writes, about 15x faster: the shortest round-trip digits come from orjson (Ryu), which
    agrees with CPython's ``repr`` wherever both write plain decimals; rows holding a value
    whose ``repr`` uses an exponent (``0 < |v| < 1e-4`` or ``|v| >= 1e16``) go through
    ``repr`` itself. Rows must be finite (see :func:`format_predictions`).
    """
    a = np.ascontiguousarray(rows, dtype=np.float64)
    if a.size == 0:
        return b""
    mag = np.abs(a)
    if ((mag < _PLAIN_MIN) & (mag != 0.0)).any() or (mag >= _PLAIN_MAX).any():
        return (("%r %r %r %r %r\n" * len(a)) % tuple(a.ravel().tolist())).encode("ascii")
    # b"[v,v,v,v,v,v,...]": the commas become spaces, every fifth one a line end
    text = bytearray(orjson.dumps(a.ravel(), option=orjson.OPT_SERIALIZE_NUMPY))
    chars = np.frombuffer(text, dtype=np.uint8)
    commas = np.flatnonzero(chars == _COMMA)
    chars[commas] = _SPACE
    chars[commas[4::5]] = _NEWLINE
    text[-1] = _NEWLINE
    return bytes(memoryview(text)[1:])


def prediction_bytes(event: str, name: str, dets_xywh_score: np.ndarray) -> bytes:
    """The bytes :func:`write_predictions` writes (rows in descending score order, stable).

    Raises:
        InputError: ``dets`` not ``(n, 5)`` or non-finite.
    """
    name = _strip_jpg(name)
    a = _validate_dets(dets_xywh_score, f"{event}/{name}")
    a = a[np.argsort(-a[:, 4], kind="stable")]
    return f"{event}/{name}\n{len(a)}\n".encode() + format_rows(a)


def format_predictions(event: str, name: str, dets_xywh_score: np.ndarray) -> str:
    """The text :func:`write_predictions` writes (rows in descending score order, stable).

    Raises:
        InputError: ``dets`` not ``(n, 5)`` or non-finite.
    """
    return prediction_bytes(event, name, dets_xywh_score).decode()


def write_predictions(out_dir: str | Path, event: str, name: str,
                      dets_xywh_score: np.ndarray, *, fsync: bool = False) -> Path:
    """Write ``<out_dir>/<event>/<name>.txt`` atomically (temp file + ``os.replace``).

    Readers (and a resumed run) see either no file or the complete file, also when the
    writing process is killed. ``fsync=True`` also flushes the data to disk before the
    rename, so the file survives a power loss too (costs a few ms per file).

    Args:
        out_dir: prediction folder (created if needed).
        event: event folder name.
        name: image name (``.jpg`` optional, removed).
        dets_xywh_score: ``(n, 5)`` ``x y w h score`` in original pixels.
        fsync: flush to disk before the rename.

    Returns:
        Path of the written file.

    Raises:
        InputError: invalid detections (see :func:`format_predictions`).
    """
    name = _strip_jpg(name)
    data = prediction_bytes(event, name, dets_xywh_score)
    return write_bytes(Path(out_dir) / event / f"{name}.txt", data, fsync=fsync)


def wider_rows(dets: Detections) -> tuple[np.ndarray, int]:
    """``(n, 5)`` x y w h score rows for a WIDER txt file, and how many are inverted.

    Every detection is kept, as insightface's ``tools/test_widerface.py`` writes them
    (``w = x2 - x1``, ``h = y2 - y1``): a box with ``x2 < x1`` or ``y2 < y1`` (negative
    extents, or a degenerate box one float32 ulp inverted) keeps its negative width or
    height, which the official evaluation reads as it is. The count is returned so the
    run summary can say how many there were.
    """
    rows = dets.to_xywh_score()
    inverted = (rows[:, 2] < 0) | (rows[:, 3] < 0)
    return rows, int(np.count_nonzero(inverted))
