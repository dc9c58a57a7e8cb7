"""WIDER FACE ground truth: the reader of the ``wider_face_val_bbx_gt.txt`` text layout.

Per image: ``event/name.jpg``, the box count, then one line per box ``x y w h`` followed
by attribute columns, which are ignored; an image with 0 boxes may be followed by one
all-zero placeholder line, as in the original download. The text layout has no easy /
medium / hard split: the per-setting counted indices are taken from
``wider_{easy,medium,hard}_val.mat`` when those files are given (images matched by event
and name, box counts checked); when they are absent there is no honest easy / medium /
hard split, so the ground truth has one setting, ``all`` (every box counted), and
:attr:`~scrfd_ref.formats.ground_truth.GroundTruth.note` says why.
Read with :func:`read_wider_txt`.

The types and constants come from :mod:`scrfd_ref.formats.ground_truth_types`;
:mod:`scrfd_ref.formats.ground_truth` re-exports the public readers.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scrfd_ref.core.errors import DataMissingError, InputError
from scrfd_ref.formats.ground_truth_mat import (
    _check_unique,
    check_settings_nest,
    _counted_from_1based,
    _guarded_many,
    _read_setting_mat,
)

if TYPE_CHECKING:
    from scrfd_ref.formats.ground_truth_types import GroundTruth


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
    from scrfd_ref.formats.ground_truth_types import ALL_FACES, SETTINGS, GroundTruth, make_image

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
        spaths = [Path(setting_mats[s]) for s in SETTINGS]
        read = _guarded_many([(_read_setting_mat, p) for p in spaths])
        for s, spath, (s_events, s_names, lists) in zip(SETTINGS, spaths, read):
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
    if setting_mats:
        check_settings_nest(images, Path(setting_mats["easy"]).parent)
    by_event = {e: [img for img in images if img.event == e] for e in events}
    ordered = tuple(img for e in events for img in by_event[e])
    note = "" if setting_mats else (
        f"{path.name} has no easy / medium / hard lists and no wider_{{easy,medium,hard}}_val.mat "
        f"beside it: reporting the 'all faces' setting only (every box counted)")
    return GroundTruth(events=tuple(events), images=ordered, settings=settings,
                       source=str(path), note=note)


__all__ = ["read_wider_txt"]
