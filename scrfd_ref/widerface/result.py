"""The WIDER FACE evaluation's data types: the per-prediction matching and the result.

:class:`Matching` holds the protocol's steps 1-4 for one prediction set, per prediction
(what :func:`~scrfd_ref.widerface.evaluate.evaluate` and the image bootstrap of
:mod:`scrfd_ref.widerface.resample` both sum); :class:`WiderResult` and :class:`PRCurve`
the evaluation's answer. :mod:`scrfd_ref.widerface.evaluate` computes them and re-exports
these names.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

THRESH_NUM = 1000
IOU_THRESHOLD = 0.5


@dataclass(frozen=True, eq=False)
class Matching:
    """The official protocol's steps 1-4 for one prediction set, before any sum over images.

    Everything ``evaluate`` sums, kept per prediction, so that another summation (a
    reweighting of the images: :mod:`scrfd_ref.widerface.resample`) uses the very same
    matches. Predictions are in evaluation order: images in ground-truth order, rows sorted
    stably by descending score within each image.

    Attributes:
        keys: ``(event, name)`` of the evaluated images, in order (``N`` images).
        events: evaluated events, in ground-truth order.
        settings: setting names, in report order.
        missing: evaluated images without an entry in the predictions.
        kernel: ``"cython"`` or ``"numpy"``, the path that matched.
        image: ``(P,)`` int64 index (into ``keys``) of each prediction's image.
        t0: ``(P,)`` int64 first threshold index (``1 - (t0 + 1) / T``) at which the
            prediction counts, after the global min-max normalisation of the scores.
        proposal: setting -> ``(P,)`` bool, the prediction counts as a proposal (its image
            has boxes and it is not dropped on a "don't care" box).
        recalls: setting -> ``(P,)`` bool, the prediction recalls a counted box (the first
            prediction matched to it).
        faces: setting -> ``(N,)`` int64 counted faces per image.
        thresh_num: number of score thresholds ``T``.
        iou_threshold: the match threshold used.
        inverted: predictions with a negative width or height.
        score: ``(P,)`` float64 raw score of each prediction (before the normalisation),
            for a recall at an operating point.
    """

    keys: tuple[tuple[str, str], ...]
    events: tuple[str, ...]
    settings: tuple[str, ...]
    missing: tuple[tuple[str, str], ...]
    kernel: str
    image: np.ndarray
    t0: np.ndarray
    proposal: Mapping[str, np.ndarray]
    recalls: Mapping[str, np.ndarray]
    faces: Mapping[str, np.ndarray]
    thresh_num: int
    iou_threshold: float
    inverted: int
    score: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class PRCurve:
    """The 1000-point curve of one setting (index ``t``: threshold ``1 - (t + 1) / 1000``).

    Attributes:
        thresholds: ``(T,)`` float64 score thresholds, descending.
        proposals: ``(T,)`` int64 predictions counted at each threshold (summed over images).
        recalled: ``(T,)`` int64 counted boxes recalled at each threshold.
        precision: ``(T,)`` float64 ``recalled / proposals`` (0.0 where no proposals).
        recall: ``(T,)`` float64 ``recalled / faces`` (0.0 when no counted faces).
    """

    thresholds: np.ndarray
    proposals: np.ndarray
    recalled: np.ndarray
    precision: np.ndarray
    recall: np.ndarray


@dataclass(frozen=True, eq=False)
class WiderResult:
    """AP per setting and everything needed to report or plot it.

    Attributes:
        ap: setting -> AP (Python float, full precision).
        curves: setting -> :class:`PRCurve`.
        faces: setting -> number of counted faces.
        images: number of evaluated images.
        predictions: number of predictions over the evaluated images.
        events: evaluated events, in ground-truth order.
        missing: ``(event, name)`` of images without a prediction file (only non-empty with
            ``allow_missing``).
        kernel: ``"cython"`` or ``"numpy"``, the path that computed it.
        settings: setting names, in report order (``("all",)`` for a ground truth
            without the easy / medium / hard lists).
        inverted: predictions with a negative width or height (evaluated as they are).
        iou_threshold: the match threshold used.
        thresh_num: the number of score thresholds used.
    """

    ap: Mapping[str, float]
    curves: Mapping[str, PRCurve]
    faces: Mapping[str, int]
    images: int
    predictions: int
    events: tuple[str, ...]
    missing: tuple[tuple[str, str], ...] = ()
    kernel: str = "numpy"
    settings: tuple[str, ...] = ("easy", "medium", "hard")
    iou_threshold: float = IOU_THRESHOLD
    thresh_num: int = THRESH_NUM
    inverted: int = 0

    def to_dict(self) -> dict:
        """JSON-ready dict: ``{"easy": ap, "medium": ap, "hard": ap, "images": n, ...}``."""
        d: dict = {s: float(self.ap[s]) for s in self.settings}
        d.update(images=self.images, predictions=self.predictions, events=list(self.events),
                 faces={s: int(self.faces[s]) for s in self.settings},
                 missing=len(self.missing),
                 missing_first=["/".join(k) for k in self.missing[:10]],
                 iou_threshold=self.iou_threshold, thresholds=self.thresh_num,
                 kernel=self.kernel, settings=list(self.settings), inverted=self.inverted)
        return d

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text; floats are written with full (round-trip) precision."""
        return json.dumps(self.to_dict(), indent=indent)
