"""Header reads of :mod:`scrfd_ref.formats.images`: from a path or from bytes already read,
and safe from several threads at once (the pixel-limit swap of Pillow's global)."""
from __future__ import annotations

import threading

import cv2
import numpy as np
from PIL import Image

from scrfd_ref.formats.images import image_size, read_image


def _jpeg(tmp_path, w: int, h: int):
    path = tmp_path / f"im_{w}x{h}.jpg"
    image = np.random.default_rng(w * h).integers(0, 255, (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


def test_image_size_from_a_path_bytes_or_an_array_agree(tmp_path):
    path = _jpeg(tmp_path, 37, 21)
    raw = path.read_bytes()
    assert image_size(path) == image_size(str(path)) == (37, 21)
    assert image_size(raw) == image_size(np.frombuffer(raw, np.uint8)) == (37, 21)
    assert image_size(b"not an image") is None
    assert read_image(path).shape == (21, 37, 3)


def test_concurrent_header_reads_leave_pillows_limit_as_it_was(tmp_path):
    paths = [_jpeg(tmp_path, 16 + i, 9 + i) for i in range(4)]
    before = Image.MAX_IMAGE_PIXELS
    sizes: list[tuple[int, int] | None] = []

    def reader(path):
        for _ in range(200):
            sizes.append(image_size(path))

    threads = [threading.Thread(target=reader, args=(p,)) for p in paths * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Image.MAX_IMAGE_PIXELS == before
    assert None not in sizes and len(sizes) == 1600
