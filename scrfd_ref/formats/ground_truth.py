"""WIDER FACE validation ground truth: one typed structure, and the loader that picks a reader.

Two sources give the same :class:`GroundTruth`:

* the official evaluation files (``eval_tools/ground_truth``): ``wider_face_val.mat`` and
  ``wider_{easy,medium,hard}_val.mat``. Read with :func:`read_wider_mat`
  (:mod:`scrfd_ref.formats.ground_truth_mat`, which describes the keys).
* the ``wider_face_val_bbx_gt.txt`` text layout, which has no easy / medium / hard
  split of its own: the per-setting indices come from the setting ``.mat`` files when
  they are given, else the ground truth has one setting, ``all`` (every box counted),
  and :attr:`GroundTruth.note` says why. Read with :func:`read_wider_txt`
  (:mod:`scrfd_ref.formats.ground_truth_txt`, which describes the layout).

:func:`load_ground_truth` picks the reader from a folder or file path. This module keeps
the loader; the types and constants live in :mod:`scrfd_ref.formats.ground_truth_types`
and the readers in the two modules above; all are re-exported here.

Boxes are kept as written (float64). The official val ground truth contains four
``0 0 0 0`` placeholder boxes, a few zero-width or zero-height boxes and one box of width
-2 (counted in "hard"); none of them can reach IoU 0.5 under the official arithmetic, so
they are kept unchanged rather than rejected.
"""
from __future__ import annotations

from pathlib import Path

from scrfd_ref.core.errors import DataMissingError, InputError
from scrfd_ref.formats.files import display
from scrfd_ref.formats.ground_truth_mat import read_wider_mat, setting_mat_paths
from scrfd_ref.formats.ground_truth_txt import read_wider_txt
from scrfd_ref.formats.ground_truth_types import (
    ALL_FACES,
    FACE_MAT,
    SETTING_MAT,
    SETTINGS,
    TXT_NAMES,
    GroundTruth,
    GroundTruthImage,
    make_image,
)


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Load WIDER FACE ground truth from a folder or a file, with a note on boxes of a
    negative width or height (the official files hold one; kept and counted as the official
    evaluation does, never silently). See :func:`_load`."""
    import dataclasses

    gt = _load(path)
    bad = sum(int(((img.boxes[:, 2] < 0) | (img.boxes[:, 3] < 0)).sum()) for img in gt.images)
    if not bad:
        return gt
    note = (f"{bad} ground-truth box(es) with a negative width or height in {gt.source}: kept "
            "and matched as the official evaluation does")
    return dataclasses.replace(gt, note="; ".join(n for n in (gt.note, note) if n))


def _load(path: str | Path) -> GroundTruth:
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
    if p.exists() and not p.is_file() and not p.is_dir():
        raise InputError(f"{display(p)}: not a regular file (a FIFO or a device); give the "
                         "ground-truth file or its folder")
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


__all__ = ["ALL_FACES", "FACE_MAT", "SETTINGS", "SETTING_MAT", "TXT_NAMES", "GroundTruth",
           "GroundTruthImage", "load_ground_truth", "make_image", "read_wider_mat",
           "read_wider_txt", "setting_mat_paths"]
