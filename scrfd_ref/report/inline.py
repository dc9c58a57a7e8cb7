"""Pictures inlined into a self-contained HTML page as ``data:`` URIs.

A report folder holds its pictures (PR curves, worst-image overlays) beside ``report.json``,
which names them. :func:`inline_picture` reads one back by its file name from that folder
only (a name pointing elsewhere, a missing or unreadable file, or a file that is not a PNG
or JPEG is reported as missing with the reason, never raised), and returns it as a
``data:`` URI. A photo-sized PNG above ``max_bytes`` is re-encoded as JPEG for the page;
the PNG beside the report keeps every pixel.
"""
from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path, PurePath

#: pictures larger than this (bytes) are re-encoded as JPEG before inlining
MAX_INLINE_BYTES = 400_000
#: files larger than this are never read (not a picture a report writes)
MAX_READ_BYTES = 64_000_000
_MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


@dataclass(frozen=True)
class InlinePicture:
    """One picture of a report: its file name, and its ``data:`` URI or why there is none.

    Attributes:
        name: the file name the report recorded (shown to the reader).
        uri: ``data:image/...;base64,...``, or ``None`` when the picture is missing.
        problem: why ``uri`` is ``None`` (empty when it is set).
        size: bytes of the inlined data (0 when missing).
    """

    name: str
    uri: str | None
    problem: str = ""
    size: int = 0


def _mime(data: bytes) -> str | None:
    return next((m for magic, m in _MAGIC.items() if data.startswith(magic)), None)


def _decode(data: bytes):
    """The picture as a BGR array; ``None`` when it does not decode."""
    import cv2
    import numpy as np

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _as_jpeg(image, quality: int = 85) -> bytes | None:
    """``image`` (BGR array) encoded as JPEG; ``None`` when encoding fails."""
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else None


def _fit(image, side: int):
    """``image`` scaled down (area interpolation) so its longer side is at most ``side``."""
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale >= 1.0:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def inline_picture(folder: str | os.PathLike[str], recorded: str, *,
                   max_bytes: int = MAX_INLINE_BYTES,
                   thumbnail: int | None = None, max_side: int | None = None
                   ) -> InlinePicture:
    """The picture ``recorded`` (a path as a report names it) from ``folder``, inlined.

    Only the file name of ``recorded`` is used, looked up in ``folder``: a report renders
    the pictures it wrote beside itself, and nothing else on the machine. ``thumbnail``:
    inline a JPEG whose longer side is at most this many pixels (the full picture stays a
    file beside the report, linked from the page). ``max_side``: a picture above
    ``max_bytes`` is also scaled to this longer side when re-encoded.
    """
    name = PurePath(str(recorded).replace("\\", "/")).name
    if name in ("", ".", ".."):
        return InlinePicture(str(recorded), None, "not a file name")
    path = Path(folder) / name
    try:
        if not path.is_file():
            return InlinePicture(name, None, "file not found beside the report")
        if path.stat().st_size > MAX_READ_BYTES:
            return InlinePicture(name, None, "file too large for a picture")
        data = path.read_bytes()
    except OSError as exc:
        return InlinePicture(name, None, f"unreadable: {exc.strerror or exc}")
    mime = _mime(data)
    if mime is None:
        return InlinePicture(name, None, "not a PNG or JPEG picture")
    image = _decode(data)
    if image is None:
        return InlinePicture(name, None, "picture does not decode (truncated or corrupt)")
    if thumbnail is not None:
        data, mime = (_as_jpeg(_fit(image, thumbnail), quality=70) or data), "image/jpeg"
    elif len(data) > max_bytes:
        smaller = _as_jpeg(_fit(image, max_side) if max_side else image)
        if smaller is not None and len(smaller) < len(data):
            data, mime = smaller, "image/jpeg"
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return InlinePicture(name, uri, "", len(data))
