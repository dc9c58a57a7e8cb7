"""Real inputs of timed runs: the images of the pipeline mode, and the same images as
network blobs for a compliance run.

A compliance run (``PerfSettings.keep_outputs > 0``) times ``backend.run`` on real images
rather than the random blob, so that the outputs kept while timing can be compared with an
untimed run on the same inputs (:mod:`scrfd_ref.conformance.perf_compliance`): a runtime
that computes something else on real data cannot hide behind noise inputs.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from scrfd_ref.core.errors import InputError
from scrfd_ref.perf.settings import PerfSettings

#: at most this many distinct blobs a compliance run cycles through (memory: a 640x640
#: batch-1 blob is 4.9 MB)
MAX_BLOBS = 8

_BLOB_CACHE: dict[tuple, list[np.ndarray]] = {}

_IMAGE_CACHE: dict[tuple[Any, ...], list[np.ndarray]] = {}


def pipeline_images(settings: PerfSettings) -> list[np.ndarray]:
    """The BGR images of the pipeline mode: ``settings.images``, else the first
    ``max_images`` WIDER val images of the data directory, else random images
    (720x1280, seeded). Read once per process.

    Raises:
        DataMissingError / InputError: an explicit image is missing or unreadable.
    """
    key = (settings.images, settings.data_dir, settings.max_images, settings.seed)
    if key not in _IMAGE_CACHE:
        images = _load_images(settings)
        _IMAGE_CACHE.clear()  # keep one image set per process, not every one ever used
        _IMAGE_CACHE[key] = images
    return _IMAGE_CACHE[key]


def default_image_paths(data_dir: str | None, limit: int) -> list[Path]:
    """The first ``limit`` WIDER val images (sorted ``event/name``) of the data directory."""
    from scrfd_ref.formats import datadir as data_mod

    root = data_mod.widerface_dir(data_mod.data_dir(data_dir)) / "WIDER_val" / "images"
    return sorted(root.glob("*/*.jpg"))[:limit] if root.is_dir() else []


def _load_images(settings: PerfSettings) -> list[np.ndarray]:
    from scrfd_ref.formats.images import read_image

    paths = ([Path(p) for p in settings.images] if settings.images
             else default_image_paths(settings.data_dir, settings.max_images))
    if paths:
        return [read_image(p) for p in paths]
    rng = np.random.default_rng(settings.seed)
    return [rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8) for _ in range(4)]



def real_blobs(settings: PerfSettings) -> list[np.ndarray]:
    """The timed inputs of a compliance run: ``(batch, 3, H, W)`` float32 blobs.

    The pipeline images (:func:`pipeline_images`: ``images``, else
    the first WIDER val images of the data directory, else seeded random images),
    letterboxed and normalised with ``settings.profile`` at the shape's ``H x W``; blob
    ``k`` holds images ``k * batch .. k * batch + batch - 1`` (modulo the image count);
    ``min(MAX_BLOBS, ceil(images / batch))`` blobs. Cached per process.

    Raises:
        InputError: a shape without 3 channels; unreadable images.
    """
    from scrfd_ref.core.preprocess import preprocess
    from scrfd_ref.core.profiles import get_profile
    c, h, w = settings.shape
    if c != 3:
        raise InputError(f"real inputs need 3 channels, shape has {c}")
    key = (settings.images, settings.data_dir, settings.max_images, settings.seed,
           settings.shape, settings.batch, repr(settings.profile))
    if key not in _BLOB_CACHE:
        images = pipeline_images(settings)
        profile = get_profile(settings.profile).replace(input_size=(w, h))
        n, b = len(images), settings.batch
        blobs = []
        for k in range(min(MAX_BLOBS, math.ceil(n / b))):
            blob, _ = preprocess([images[(k * b + j) % n] for j in range(b)], profile)
            blobs.append(np.ascontiguousarray(blob, dtype=np.float32))
        _BLOB_CACHE.clear()
        _BLOB_CACHE[key] = blobs
    return _BLOB_CACHE[key]


__all__ = ["MAX_BLOBS", "default_image_paths", "pipeline_images", "real_blobs"]
