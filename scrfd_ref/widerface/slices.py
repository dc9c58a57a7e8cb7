"""Slices of WIDER FACE by face attribute and scale: which faces a detector finds, per kind.

WIDER FACE labels every face with blur (clear / normal / heavy), expression (typical /
exaggerated), illumination (normal / extreme), occlusion (none / partial / heavy), pose
(typical / atypical) and invalid (``wider_face_val.mat``, read into
:attr:`~scrfd_ref.formats.ground_truth_types.GroundTruthImage.attributes`). A **slice** is
one value of one attribute, or one of the three scale ranges of the WIDER FACE paper
(face height: small under 50 px, medium 50-300 px, large 300 px and more, in original
image pixels).

Protocol (:func:`slice_ground_truth`): a slice is evaluated as an extra setting of the
official protocol. Its positives are the faces of the slice **among the faces the
official "hard" setting counts**; every other face is "don't care" (a detection on it is
neither a hit nor a false positive, exactly as the official tool treats the faces a
setting does not count); detections on no face are false positives in every slice. The
AP and the 1000-threshold curve are then the official ones
(:mod:`scrfd_ref.widerface.evaluate`), with the slice's faces as the counted set.

Where this differs from the WIDER FACE paper (Yang et al., CVPR 2016, section 5): the
paper plots detection rate against proposals per image on its own splits and restricts
the occlusion and pose analyses to faces of medium scale; here every slice is judged on
the val faces "hard" counts (faces labelled invalid and faces under about 10 px are
counted in no official setting, so in no slice: "invalid" is read but is no slice), with
the official AP and a recall at the operating point. The scale ranges are the paper's
edges; the three "hard" faces of 9 px height fall in "small".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scrfd_ref.core.errors import UsageError
from scrfd_ref.formats.ground_truth_types import (
    ATTRIBUTES,
    GroundTruth,
    GroundTruthImage,
    make_image,
)

#: the official setting whose counted faces the slices divide
BASE_SETTING = "hard"
#: the WIDER FACE paper's scale ranges: (name, lowest height, height below), px
SCALES: tuple[tuple[str, float, float], ...] = (
    ("small", 0.0, 50.0), ("medium", 50.0, 300.0), ("large", 300.0, math.inf))
#: attributes that are no slice (their faces count in no official setting)
NOT_SLICED = ("invalid",)


@dataclass(frozen=True)
class Slice:
    """One slice: a value of an attribute, or a scale range.

    Attributes:
        name: ``attribute=value`` (``blur=heavy``, ``scale=large``), the setting name.
        attribute: the attribute (``blur`` .. ``pose``) or ``scale``.
        value: the value's name (``heavy``).
        label: the attribute's label code (0, 1, 2); None for a scale range.
        heights: ``(lowest, below)`` face height in px for a scale range, else None.
    """

    name: str
    attribute: str
    value: str
    label: int | None = None
    heights: tuple[float, float] | None = None

    def members(self, image: GroundTruthImage) -> np.ndarray:
        """``(n,)`` bool: the image's boxes that belong to this slice (any setting)."""
        if self.heights is not None:
            h = image.boxes[:, 3]
            return (h >= self.heights[0]) & (h < self.heights[1])
        assert image.attributes is not None
        return image.attributes[self.attribute] == self.label


SLICES: tuple[Slice, ...] = tuple(
    [Slice(f"{a}={v}", a, v, label=i) for a, values in ATTRIBUTES.items()
     if a not in NOT_SLICED for i, v in enumerate(values)]
    + [Slice(f"scale={n}", "scale", n, heights=(lo, hi)) for n, lo, hi in SCALES])
SLICE_NAMES: tuple[str, ...] = tuple(s.name for s in SLICES)


def require_attributes(gt: GroundTruth) -> None:
    """Refuse a ground truth without face labels, in one line naming it and what to give.

    Raises:
        UsageError: ``gt`` has no attributes (a text ground truth) or lacks the ``hard``
            setting the slices divide.
    """
    if not gt.has_attributes:
        raise UsageError(f"{gt.source or 'the ground truth'}: has no face attributes (blur, "
                         "expression, illumination, occlusion, pose); slices need the official "
                         "wider_face_val.mat with its *_label_list keys: give its folder "
                         "(--gt DIR)")
    if BASE_SETTING not in gt.settings:
        raise UsageError(f"{gt.source or 'the ground truth'}: has no '{BASE_SETTING}' setting "
                         f"(settings: {', '.join(gt.settings)}); slices divide the faces "
                         f"'{BASE_SETTING}' counts: give wider_{BASE_SETTING}_val.mat beside it")


def slice_ground_truth(gt: GroundTruth, slices: tuple[Slice, ...] = SLICES) -> GroundTruth:
    """``gt`` with one setting per slice: the slice's faces among those ``hard`` counts.

    Every evaluation function of :mod:`scrfd_ref.widerface` then reports the slices as it
    reports easy / medium / hard (module docstring: the protocol).

    Raises:
        UsageError: as :func:`require_attributes`.
    """
    require_attributes(gt)
    images = []
    for img in gt.images:
        base = np.zeros(img.boxes.shape[0], dtype=bool)
        base[img.counted[BASE_SETTING]] = True
        counted = {s.name: np.flatnonzero(base & s.members(img)) for s in slices}
        images.append(make_image(img.event, img.name, img.boxes, counted, img.attributes))
    return GroundTruth(events=gt.events, images=tuple(images),
                       settings=tuple(s.name for s in slices), source=gt.source,
                       note=gt.note)


def slice_faces(gt: GroundTruth, slices: tuple[Slice, ...] = SLICES) -> dict[str, int]:
    """Faces per slice in ``gt`` (its ``hard`` faces of each slice)."""
    sg = slice_ground_truth(gt, slices)
    return {s.name: sg.num_counted(s.name) for s in slices}


__all__ = ["BASE_SETTING", "SCALES", "SLICES", "SLICE_NAMES", "Slice", "require_attributes",
           "slice_faces", "slice_ground_truth"]
