"""Candidates in input pixels -> final detections in original pixels (one profile).

Steps, all driven by :class:`scrfd_ref.core.profiles.Profile` fields: map boxes back
according to ``box_mode``, map landmarks back, greedy NMS at ``nms_thr`` in the profile's
``nms_convention``, then the optional ``max_num`` selection.
"""
from __future__ import annotations

import numpy as np

from scrfd_ref.core.decode import Candidates
from scrfd_ref.core.detections import Detections
from scrfd_ref.core.nms import nms_sorted, select_max_num
from scrfd_ref.core.preprocess import Transform
from scrfd_ref.core.profiles import Profile


def finish_boxes(boxes: np.ndarray, t: Transform, box_mode: str) -> np.ndarray:
    """Map ``(n, 4)`` input-pixel boxes to original pixels as ``box_mode`` says.

    ``float``: map back only. ``clamp_resized``: clamp to the resized image region
    (mmdet ``max_shape``), then map back. ``clip_round``: map back, clip to
    ``[0, w] x [0, h]``, round to integers (half to even).
    """
    if box_mode == "clamp_resized":
        boxes = boxes.copy()
        np.clip(boxes[:, 0::2], np.float32(t.offset_x), np.float32(t.offset_x + t.resized_w),
                out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], np.float32(t.offset_y), np.float32(t.offset_y + t.resized_h),
                out=boxes[:, 1::2])
    out = t.boxes_to_original(boxes)
    if box_mode == "clip_round":
        np.clip(out[:, 0::2], np.float32(0), np.float32(t.orig_w), out=out[:, 0::2])
        np.clip(out[:, 1::2], np.float32(0), np.float32(t.orig_h), out=out[:, 1::2])
        np.rint(out, out=out)
    return out


def postprocess(cands: Candidates, t: Transform, profile: Profile) -> Detections:
    """Turn one image's score-sorted candidates into final :class:`Detections`."""
    if len(cands) == 0:
        return Detections.empty(cands.kps is not None)
    boxes = finish_boxes(cands.boxes, t, profile.box_mode)
    keep = nms_sorted(boxes, profile.nms_thr, convention=profile.nms_convention)
    boxes, scores = boxes[keep], cands.scores[keep]
    kps = None if cands.kps is None else t.points_to_original(cands.kps[keep])
    if profile.max_num > 0:
        # insightface returns the selection in ranking order; the reference keeps the
        # same set but in descending score order (the JSON contract's order)
        sel = np.sort(select_max_num(boxes, profile.max_num, (t.orig_w, t.orig_h),
                                     profile.max_num_metric))
        boxes, scores = boxes[sel], scores[sel]
        kps = None if kps is None else kps[sel]
    return Detections(boxes, scores, kps)
