"""The types and constants of WIDER FACE ground truth, shared by both readers
(:mod:`scrfd_ref.formats.ground_truth_mat`, :mod:`scrfd_ref.formats.ground_truth_txt`) and
the loader (:mod:`scrfd_ref.formats.ground_truth`, which re-exports them): an annotated
image, the whole ground truth with its per-setting counted indices, and :func:`make_image`,
the one place such an image is built and frozen.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from scrfd_ref.core.errors import InputError

SETTINGS: tuple[str, ...] = ("easy", "medium", "hard")
#: the only setting of a text ground truth without the per-setting .mat files
ALL_FACES = "all"
FACE_MAT = "wider_face_val.mat"
SETTING_MAT = "wider_{}_val.mat"
TXT_NAMES: tuple[str, ...] = ("wider_face_val_bbx_gt.txt", "wider_face_val_bbx_gt.derived.txt")
#: the six face labels of WIDER FACE (``<name>_label_list`` in ``wider_face_val.mat``), each
#: with its values' names in label order (0, 1, 2)
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "blur": ("clear", "normal", "heavy"),
    "expression": ("typical", "exaggerated"),
    "illumination": ("normal", "extreme"),
    "invalid": ("valid", "invalid"),
    "occlusion": ("none", "partial", "heavy"),
    "pose": ("typical", "atypical"),
}


@dataclass(frozen=True, eq=False)
class GroundTruthImage:
    """One annotated image.

    Attributes:
        event: event folder name, e.g. ``"0--Parade"``.
        name: image name without ``.jpg``, e.g. ``"0_Parade_marchingband_1_465"``.
        boxes: ``(n, 4)`` float64 ``x y w h`` (read-only).
        counted: setting -> sorted unique 0-based int64 indices of the boxes that count in
            that setting (read-only arrays; the other boxes are "don't care").
        attributes: :data:`ATTRIBUTES` name -> ``(n,)`` uint8 label of each box (read-only),
            or None when the source has no face labels (a text ground truth).
    """

    event: str
    name: str
    boxes: np.ndarray
    counted: Mapping[str, np.ndarray]
    attributes: Mapping[str, np.ndarray] | None = None

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
    def has_attributes(self) -> bool:
        """Every image carries the six face labels (:data:`ATTRIBUTES`)."""
        return bool(self.images) and all(img.attributes is not None for img in self.images)

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
               counted: Mapping[str, Sequence[int] | np.ndarray],
               attributes: Mapping[str, Sequence[int] | np.ndarray] | None = None
               ) -> GroundTruthImage:
    """Build a :class:`GroundTruthImage` (copies, converts, freezes the arrays).

    Args:
        event: event name.
        name: image name (a trailing ``.jpg`` is removed).
        boxes: ``(n, 4)`` ``x y w h``.
        counted: setting -> 0-based indices of the counted boxes.
        attributes: every :data:`ATTRIBUTES` name -> ``(n,)`` labels, or None.

    Raises:
        InputError: wrong box shape, an index outside ``0..n-1``, or labels missing, of
            another length than the boxes or outside the attribute's values.
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
    return GroundTruthImage(event=event, name=name, boxes=_frozen(b), counted=idx,
                            attributes=None if attributes is None
                            else _labels(event, name, b.shape[0], attributes))


def _labels(event: str, name: str, n: int,
            attributes: Mapping[str, Sequence[int] | np.ndarray]) -> dict[str, np.ndarray]:
    """The six label arrays of one image, checked against :data:`ATTRIBUTES`."""
    missing = [a for a in ATTRIBUTES if a not in attributes]
    if missing:
        raise InputError(f"{event}/{name}: no {', '.join(missing)} labels")
    out = {}
    for a, values in ATTRIBUTES.items():
        v = np.asarray(attributes[a]).ravel()
        if v.size != n:
            raise InputError(f"{event}/{name}: {v.size} {a} labels for {n} boxes")
        if v.size and (not np.issubdtype(v.dtype, np.number) or v.min() < 0
                       or v.max() >= len(values) or not np.all(v == np.round(v))):
            raise InputError(f"{event}/{name}: {a} labels must be 0..{len(values) - 1} "
                             f"({' / '.join(values)})")
        out[a] = _frozen(v.astype(np.uint8))
    return out
