"""Reading images with clear errors."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import DataMissingError, InputError


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as BGR ``uint8 (h, w, 3)``.

    Raises:
        DataMissingError: the file does not exist.
        InputError: the file is empty or does not decode as an image.
    """
    p = Path(path)
    if not p.is_file():
        raise DataMissingError(f"image not found: {p}")
    raw = np.fromfile(p, dtype=np.uint8)
    if raw.size == 0:
        raise InputError(f"{p}: image file is empty")
    image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise InputError(f"{p}: file does not decode as an image ({raw.size} bytes)")
    return image
