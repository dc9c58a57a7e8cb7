"""Final detections of one image, in original image pixels."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Detections of one image in descending score order.

    Attributes:
        boxes: ``(n, 4)`` float32 x1 y1 x2 y2 in original pixels.
        scores: ``(n,)`` float32.
        landmarks: ``(n, 5, 2)`` float32 (x, y) points, or None for models without them.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls, landmarks: bool) -> "Detections":
        """No detections (with an empty landmark array when the model has landmarks)."""
        return cls(np.empty((0, 4), np.float32), np.empty((0,), np.float32),
                   np.empty((0, 5, 2), np.float32) if landmarks else None)

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready list: ``{"box": [x1, y1, x2, y2], "score": s, "landmarks": [[x, y]*5] | None}``.

        Floats are the float32 values widened to Python floats (exact, round-trippable).
        """
        records = []
        for i in range(len(self)):
            records.append({
                "box": [float(v) for v in self.boxes[i]],
                "score": float(self.scores[i]),
                "landmarks": None if self.landmarks is None
                else [[float(x), float(y)] for x, y in self.landmarks[i]],
            })
        return records

    def to_xywh_score(self) -> np.ndarray:
        """``(n, 5)`` float64 ``x y w h score`` rows, the WIDER FACE prediction layout."""
        b = self.boxes.astype(np.float64)
        out = np.empty((len(self), 5), dtype=np.float64)
        out[:, 0:2] = b[:, 0:2]
        out[:, 2:4] = b[:, 2:4] - b[:, 0:2]
        out[:, 4] = self.scores
        return out
