"""Reading images with clear errors and a pixel limit.

An image larger than :func:`max_pixels` (width x height; about 100 megapixels unless
``--max-pixels`` / :func:`set_max_pixels` says otherwise) is refused from its header,
before any pixel is decoded, so a 40000x40000 PNG costs nothing.

One rule for orientation everywhere: an image is what OpenCV decodes, with its EXIF
orientation applied (as ``cv2.imread`` and insightface do), and the size read from a
header (:func:`image_size`) is the size after that rotation, so ``image2npz``, ``dump``,
``npz-decode`` and ``wider-run`` agree on a rotated photo.

A damaged PNG is refused from Pillow's check of its chunks, a JPEG cut short from its missing
end-of-image marker (:func:`jpeg_problem`), before OpenCV decodes either, and
OpenCV's own warnings are off (``OPENCV_LOG_LEVEL`` set by the user wins): a bad image
gives the tool's one error line and nothing else on stderr.
"""
from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import cv2
import numpy as np

from scrfd_ref.core.errors import DataMissingError, InputError
from scrfd_ref.formats.files import display

DEFAULT_MAX_PIXELS = 100_000_000
_MAX_PIXELS = DEFAULT_MAX_PIXELS
_PILLOW_LIMIT_LOCK = threading.Lock()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: EXIF orientations that turn the picture by 90 degrees (width and height swap)
_TRANSPOSED = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112

if "OPENCV_LOG_LEVEL" not in os.environ:
    try:  # OpenCV's "[ WARN ] ... PNG input buffer is incomplete", "[ERROR] ..." and the like
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # we say what failed
    except AttributeError:  # pragma: no cover - an OpenCV build without the logging module
        pass


def set_max_pixels(limit: int | None) -> None:
    """Set the pixel limit of every image read in this process (None: the default)."""
    global _MAX_PIXELS
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise InputError(f"max pixels must be a positive integer, got {limit!r}")
    _MAX_PIXELS = DEFAULT_MAX_PIXELS if limit is None else limit


def max_pixels() -> int:
    """The pixel limit in force."""
    return _MAX_PIXELS


def check_pixels(width: int, height: int, path: str | os.PathLike[str]) -> None:
    """Refuse an image of ``width x height`` above the pixel limit (InputError)."""
    if width * height > _MAX_PIXELS:
        raise InputError(f"{display(path)}: image is {width}x{height} = {width * height:,} "
                         f"pixels, above the limit of {_MAX_PIXELS:,} (--max-pixels N to "
                         "raise it)")


def image_size(source: str | os.PathLike[str] | bytes | np.ndarray) -> tuple[int, int] | None:
    """``(width, height)`` from an image's header (no decoding), None if Pillow cannot tell.

    The size is the decoded image's: width and height swapped when the EXIF orientation
    turns the picture by 90 degrees (OpenCV applies it when decoding). ``source`` is a
    file path or the file's bytes (``bytes`` or a ``uint8`` array), so a caller that has
    read the file already does not open it twice.
    """
    from PIL import Image, UnidentifiedImageError

    stream = source if isinstance(source, (str, os.PathLike)) else io.BytesIO(source)
    with _PILLOW_LIMIT_LOCK:       # threads read headers at once; the swap must not
        previous = Image.MAX_IMAGE_PIXELS  # leave Pillow's limit switched off
        Image.MAX_IMAGE_PIXELS = None  # our own limit applies, not Pillow's bomb warning
        try:
            with Image.open(stream) as im:
                w, h = int(im.size[0]), int(im.size[1])
                if w * h > _MAX_PIXELS:  # refused by its size: reading EXIF may decode a PNG
                    return (w, h)
                try:
                    turned = im.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSED
                except Exception:  # noqa: BLE001 - damaged EXIF: OpenCV ignores it too
                    turned = False
                return (h, w) if turned else (w, h)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, within the pixel limit.

    Raises:
        DataMissingError: the file does not exist.
        InputError: not an image (header unreadable) or above the pixel limit.
    """
    p = Path(path)
    if not p.is_file():
        raise DataMissingError(f"image not found: {display(p)}")
    size = image_size(p)
    if size is None:
        raise InputError(f"{display(p)}: not a readable image (header does not decode)")
    check_pixels(*size, p)
    return size


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as BGR ``uint8 (h, w, 3)``.

    Raises:
        DataMissingError: the file does not exist.
        InputError: the file is empty, unreadable, above the pixel limit, or does not
            decode as an image.
    """
    p = Path(path)
    if not p.is_file():
        if p.is_dir():
            raise InputError(f"{display(p)}: is a folder, not an image")
        raise DataMissingError(f"image not found: {display(p)}")
    try:
        raw = np.fromfile(p, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"{display(p)}: cannot read: {exc.strerror or exc}") from None
    if raw.size == 0:
        raise InputError(f"{display(p)}: image file is empty")
    size = image_size(raw)
    if size is not None:
        check_pixels(*size, p)
    png, jpeg = png_problem(raw), jpeg_problem(raw)
    if png or jpeg:
        kind = "PNG" if png else "JPEG"
        raise InputError(f"{display(p)}: file does not decode as an image ({kind}: "
                         f"{png or jpeg})")
    image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise InputError(f"{display(p)}: file does not decode as an image ({raw.size} bytes)")
    check_pixels(image.shape[1], image.shape[0], p)
    return image


def png_problem(raw: bytes | np.ndarray) -> str | None:
    """Why the bytes of a PNG file would not decode (Pillow checks every chunk and its
    CRC without inflating the pixels), or None (also for a file that is not a PNG).

    Checked before OpenCV decodes a PNG: libpng prints its own errors on stderr."""
    from PIL import Image

    head = raw[:len(PNG_MAGIC)]
    if (head.tobytes() if isinstance(head, np.ndarray) else bytes(head)) != PNG_MAGIC:
        return None
    data = raw.tobytes() if isinstance(raw, np.ndarray) else bytes(raw)
    with _PILLOW_LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.verify()
        except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for bad chunks
            text = str(exc).split(" <")[0] or type(exc).__name__
            return "cannot identify the image" if "cannot identify" in text else text
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    return None


def jpeg_problem(raw: bytes | np.ndarray) -> str | None:
    """Why the bytes of a JPEG file are cut short, or None (also for a file that is not a
    JPEG). The marker segments are walked to the first scan; a whole file has its
    end-of-image marker after it (libjpeg would fill the missing rows with grey and only
    warn: an image judged "0 faces" instead of refused)."""
    data = raw.tobytes() if isinstance(raw, np.ndarray) else bytes(raw)
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return f"no marker at byte {pos} (a damaged header)"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            return None if data.find(b"\xff\xd9", pos) >= 0 else (
                "truncated: the file ends before its end-of-image marker")
        if marker == 0xD9:
            return "ends before the first scan"
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return "truncated: the file ends inside its header"


def encode_image(image: np.ndarray, ext: str = ".jpg") -> bytes:
    """Encode a BGR image (``.jpg`` / ``.png``) to bytes, for an atomic write."""
    ok, buf = cv2.imencode(ext, image)
    if not ok:
        raise InputError(f"cannot encode an image of shape {image.shape} as {ext}")
    return buf.tobytes()
