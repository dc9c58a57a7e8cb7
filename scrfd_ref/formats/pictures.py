"""Annotated pictures: detections (boxes, scores, landmarks) drawn on an image."""
from __future__ import annotations

import cv2
import numpy as np

from scrfd_ref.core.detections import Detections

LANDMARK_COLOURS = ((0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 0, 0))


def draw_detections(image: np.ndarray, dets: Detections, colour: tuple[int, int, int] = (0, 200, 0),
                    label: bool = True) -> np.ndarray:
    """Return a copy of BGR ``image`` with boxes, scores and landmarks drawn."""
    out = image.copy()
    thick = max(1, round(max(out.shape[:2]) / 600))
    for i in range(len(dets)):
        x1, y1, x2, y2 = (int(round(float(v))) for v in dets.boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        if label:
            cv2.putText(out, f"{dets.scores[i]:.2f}", (x1, max(y1 - 4, 10)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, colour, thick)
        if dets.landmarks is not None:
            for k, (x, y) in enumerate(dets.landmarks[i]):
                cv2.circle(out, (int(round(float(x))), int(round(float(y)))), thick + 1,
                           LANDMARK_COLOURS[k % 5], -1)
    return out
