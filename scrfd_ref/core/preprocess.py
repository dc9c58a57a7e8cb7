"""Image -> network input: letterbox, normalise, batch; and the inverse transform.

Input images are BGR ``uint8`` arrays ``(h, w, 3)`` as ``cv2.imread`` returns them.
The network input is NCHW float32 RGB ``(pixel - 127.5) / 128``. Every letterbox kind
of :mod:`scrfd_ref.core.profiles` is reproduced exactly (same new size, same placement,
same interpolation on ``uint8``, same pad value), and the returned :class:`Transform`
maps points between input and original pixels with the flow's own arithmetic
(float32 division by the flow's scale), so detections map back bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from scrfd_ref.core.errors import InputError
from scrfd_ref.core.profiles import Profile

MEAN = 127.5
STD = 128.0


@dataclass(frozen=True)
class Transform:
    """Geometry of one letterboxed image.

    ``input = original * scale + offset`` per axis; the resized image occupies
    ``[offset_x, offset_x + resized_w) x [offset_y, offset_y + resized_h)`` of the input.
    """

    orig_w: int
    orig_h: int
    input_w: int
    input_h: int
    resized_w: int
    resized_h: int
    scale_x: float
    scale_y: float
    offset_x: int = 0
    offset_y: int = 0

    def points_to_original(self, points: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` input-pixel points to original pixels (float32).

        ``(p - offset) / scale`` in float32, the way every flow divides.
        """
        pts = np.asarray(points, dtype=np.float32)
        out = np.empty_like(pts)
        if self.offset_x or self.offset_y:
            out[..., 0] = (pts[..., 0] - np.float32(self.offset_x)) / np.float32(self.scale_x)
            out[..., 1] = (pts[..., 1] - np.float32(self.offset_y)) / np.float32(self.scale_y)
        else:
            out[..., 0] = pts[..., 0] / np.float32(self.scale_x)
            out[..., 1] = pts[..., 1] / np.float32(self.scale_y)
        return out

    def points_to_input(self, points: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` original-pixel points to input pixels (float64)."""
        pts = np.asarray(points, dtype=np.float64)
        out = np.empty_like(pts)
        out[..., 0] = pts[..., 0] * self.scale_x + self.offset_x
        out[..., 1] = pts[..., 1] * self.scale_y + self.offset_y
        return out

    def boxes_to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(n, 4)`` x1 y1 x2 y2 input boxes to original pixels (float32)."""
        boxes = np.asarray(boxes, dtype=np.float32)
        return self.points_to_original(boxes.reshape(-1, 2, 2)).reshape(boxes.shape)


def letterbox_geometry(orig_size: tuple[int, int], input_size: tuple[int, int],
                       kind: str) -> Transform:
    """Compute the letterbox of an ``orig_size=(w, h)`` image into ``input_size=(W, H)``.

    ``kind`` is one of ``insightface``, ``wider``, ``centered``, ``stretch`` (see
    :mod:`scrfd_ref.core.profiles` for their exact arithmetic).
    """
    w, h = int(orig_size[0]), int(orig_size[1])
    in_w, in_h = int(input_size[0]), int(input_size[1])
    if w <= 0 or h <= 0:
        raise InputError(f"image size {w}x{h} is empty")
    if kind == "insightface":
        im_ratio = float(h) / w
        model_ratio = float(in_h) / in_w
        if im_ratio > model_ratio:
            new_h = in_h
            new_w = int(new_h / im_ratio)
        else:
            new_w = in_w
            new_h = int(new_w * im_ratio)
        new_w, new_h = max(new_w, 1), max(new_h, 1)
        det_scale = float(new_h) / h
        return Transform(w, h, in_w, in_h, new_w, new_h, det_scale, det_scale)
    if kind == "stretch":
        return Transform(w, h, in_w, in_h, in_w, in_h, in_w / w, in_h / h)
    if kind in ("wider", "centered", "bottomright"):
        scale = min(in_w / w, in_h / h)
        new_w = max(min(int(w * scale + 0.5), in_w), 1)
        new_h = max(min(int(h * scale + 0.5), in_h), 1)
        ox, oy = {"wider": (0, 0), "centered": ((in_w - new_w) // 2, (in_h - new_h) // 2),
                  "bottomright": (in_w - new_w, in_h - new_h)}[kind]
        return Transform(w, h, in_w, in_h, new_w, new_h, new_w / w, new_h / h, ox, oy)
    raise InputError(f"unknown letterbox kind {kind!r}")


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Return ``image`` as a BGR ``uint8 (h, w, 3)`` array or raise a clear InputError.

    Grey ``(h, w)`` and BGRA ``(h, w, 4)`` images are converted to BGR.
    """
    if not isinstance(image, np.ndarray):
        raise InputError(f"{name}: expected a numpy array, got {type(image).__name__}")
    if image.size == 0:
        raise InputError(f"{name}: image is empty (shape {image.shape})")
    if image.dtype != np.uint8:
        raise InputError(f"{name}: expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise InputError(f"{name}: expected an (h, w, 3) BGR image, got shape {image.shape}")


def normalize_into(dst: np.ndarray, bgr: np.ndarray, profile: Profile | None = None) -> None:
    """Write the normalised ``(3, h, w)`` planes of a BGR ``(h, w, 3)`` uint8 image into ``dst``.

    SCRFD's own pixels (RGB, ``(x - 127.5) / 128``, the default): float32
    ``(x - 127.5) * (1/128)`` per plane, in place, bit-identical to the
    ``cv2.dnn.blobFromImage`` call insightface itself uses (exact for uint8 pixels since
    1/128 is a power of two). Any other
    preparation of ``profile`` (channel order, per-channel mean / std, ``/ 255``) in
    float32: ``blobFromImage`` for the channel order, mean and a common scale, then a
    per-channel division when the stds differ.
    """
    if profile is None or profile.scrfd_pixels:
        # the same float32 arithmetic as blobFromImage, written straight into dst (no
        # temporary blob, ~8x faster): uint8 - 127.5 and the scale 2**-7 are exact
        for plane, channel in zip(dst, cv2.split(bgr)[::-1]):
            np.subtract(channel, np.float32(MEAN), out=plane, dtype=np.float32)
        dst *= np.float32(1.0 / STD)
        return
    swap = profile.channel_order == "rgb"
    if profile.norm == "div255":
        dst[...] = cv2.dnn.blobFromImage(bgr, 1.0 / 255.0, None, (0, 0, 0), swapRB=swap)[0]
        return
    if profile.norm == "div255_minusmean_divstd":
        plane = cv2.dnn.blobFromImage(bgr, 1.0 / 255.0, None, (0, 0, 0), swapRB=swap)[0]
        plane -= np.asarray(profile.mean, np.float32)[:, None, None]
    else:
        plane = cv2.dnn.blobFromImage(bgr, 1.0, None, profile.mean, swapRB=swap)[0]
    dst[...] = plane / np.asarray(profile.std, np.float32)[:, None, None]


def pad_planes(profile: Profile) -> np.ndarray:
    """``(3, 1, 1)`` float32: the normalised value of the pad pixel in each plane."""
    out = np.empty((3, 1, 1), np.float32)
    if profile.scrfd_pixels:
        out[...] = np.float32((profile.pad_value - MEAN) / STD)
        return out
    x = np.float32(profile.pad_value)
    if profile.norm == "div255":
        out[...] = x / np.float32(255.0)
        return out
    base = x / np.float32(255.0) if profile.norm == "div255_minusmean_divstd" else x
    out[:, 0, 0] = (base - np.asarray(profile.mean, np.float32)) / np.asarray(profile.std,
                                                                                 np.float32)
    return out


_CV_INTERPOLATION = {"bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST,
                     "bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4,
                     "area": cv2.INTER_AREA}


def resize(image: np.ndarray, size: tuple[int, int], interpolation: str = "bilinear"
           ) -> np.ndarray:
    """Resize a uint8 image to ``size = (w, h)`` with the profile's interpolation
    (OpenCV's, or Pillow's for the ``*_pillow`` kinds)."""
    if interpolation in _CV_INTERPOLATION:
        return cv2.resize(image, size, interpolation=_CV_INTERPOLATION[interpolation])
    from PIL import Image

    resample = {"bilinear_pillow": Image.BILINEAR, "bicubic_pillow": Image.BICUBIC}
    if interpolation not in resample:
        raise InputError(f"unknown interpolation {interpolation!r}")
    return np.asarray(Image.fromarray(image).resize(size, resample[interpolation]))


def letterbox_into(dst: np.ndarray, image: np.ndarray, profile: Profile) -> Transform:
    """Letterbox + normalise one BGR image into ``dst (3, H, W)``; return its transform."""
    image = check_image(image)
    h, w = image.shape[:2]
    t = letterbox_geometry((w, h), profile.input_size, profile.letterbox)
    if (t.resized_w, t.resized_h) == (w, h):
        resized = image
    else:
        resized = resize(image, (t.resized_w, t.resized_h), profile.interpolation)
    top, left = t.offset_y, t.offset_x
    bottom, right = top + t.resized_h, left + t.resized_w
    pad = pad_planes(profile)          # only the border: the image covers the rest
    dst[:, :top] = pad
    dst[:, bottom:] = pad
    dst[:, top:bottom, :left] = pad
    dst[:, top:bottom, right:] = pad
    normalize_into(dst[:, top:bottom, left:right], resized, profile)
    return t


def preprocess(images: Sequence[np.ndarray] | np.ndarray, profile: Profile
               ) -> tuple[np.ndarray, list[Transform]]:
    """Letterbox and normalise a batch of BGR images.

    Args:
        images: one ``(h, w, 3)`` image or a sequence of them (sizes may differ).
        profile: gives the input size, letterbox kind and pad value.

    Returns:
        ``blob (B, 3, H, W)`` float32 (RGB unless the profile says otherwise) and one
        :class:`Transform` per image.
    """
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):
        images = [images]
    if len(images) == 0:
        raise InputError("no images to preprocess")
    in_w, in_h = profile.input_size
    blob = np.empty((len(images), 3, in_h, in_w), dtype=np.float32)
    transforms = [letterbox_into(blob[i], img, profile) for i, img in enumerate(images)]
    return blob, transforms
