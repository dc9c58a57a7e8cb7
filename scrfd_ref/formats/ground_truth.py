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
the types, the constants and the loader; the readers live in the two modules above and
are re-exported here.

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

from scrfd_ref.core.errors import DataMissingError, InputError

# the readers import this module's names inside their functions, never at import time,
# so importing them here (to re-export them) makes no import cycle
from scrfd_ref.formats.ground_truth_mat import read_wider_mat, setting_mat_paths
from scrfd_ref.formats.ground_truth_txt import read_wider_txt

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


__all__ = ["ALL_FACES", "FACE_MAT", "SETTINGS", "SETTING_MAT", "TXT_NAMES", "GroundTruth",
           "GroundTruthImage", "load_ground_truth", "make_image", "read_wider_mat",
           "read_wider_txt", "setting_mat_paths"]
