"""The ``scrfd-ref detect --json`` document (a public contract).

::

    {"model": "path/to/model.onnx",
     "profile": {...every setting used...},
     "backend": {...backend identity...},
     "images": [{"path": ..., "width": W, "height": H,
                 "detections": [{"box": [x1, y1, x2, y2], "score": s,
                                 "landmarks": [[x, y], ...5] or null}, ...]}]}

Detections are in descending score order; coordinates are original image pixels.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from scrfd_ref.core.detections import Detections
from scrfd_ref.core.errors import InputError
from scrfd_ref.formats.files import write_text

SCHEMA_VERSION = 1


def image_record(path: str, width: int, height: int, dets: Detections) -> dict[str, Any]:
    """One entry of the ``images`` list."""
    return {"path": path, "width": int(width), "height": int(height),
            "detections": dets.to_records()}


def detections_document(model: str, profile: dict[str, Any], images: Sequence[dict[str, Any]],
                        backend: dict[str, Any] | None = None) -> dict[str, Any]:
    """Assemble the whole JSON document."""
    doc: dict[str, Any] = {"schema": SCHEMA_VERSION, "model": model, "profile": profile}
    if backend is not None:
        doc["backend"] = backend
    doc["images"] = list(images)
    return doc


def write_json(doc: Any, target: str | os.PathLike[str]) -> None:
    """Write JSON to a file atomically, or to stdout when ``target`` is ``-``."""
    text = json.dumps(doc, indent=2) + "\n"
    if str(target) == "-":
        sys.stdout.write(text)
        return
    write_text(Path(target), text)


def read_detections_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a detections document (keys, types and per-detection fields).

    Raises:
        InputError: not readable JSON, or a field missing or of the wrong type (the
            message names the file and the field).
    """
    from scrfd_ref.formats.strict import StrictFormatError, json_loads, regular_file_text

    p = Path(path)
    try:
        doc = json_loads(regular_file_text(p))
    except (OSError, StrictFormatError) as exc:
        raise InputError(f"{p}: not a readable JSON document: {exc}") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{p}: a detections document is a JSON object, got "
                         f"{type(doc).__name__}")
    for key, kind in (("model", str), ("profile", dict), ("images", list)):
        if key not in doc:
            raise InputError(f"{p}: missing key {key!r}")
        if not isinstance(doc[key], kind):
            raise InputError(f"{p}: {key!r} must be a {kind.__name__}")
    for i, img in enumerate(doc["images"]):
        if not isinstance(img, dict):
            raise InputError(f"{p}: images[{i}] must be an object")
        for key in ("path", "width", "height", "detections"):
            if key not in img:
                raise InputError(f"{p}: images[{i}] lacks {key!r}")
        for key in ("width", "height"):
            if not (_number(img[key]) and img[key] == int(img[key]) and img[key] >= 1):
                raise InputError(f"{p}: images[{i}].{key} must be a whole number of pixels "
                                 f">= 1, got {img[key]!r}")
        if not isinstance(img["detections"], list):
            raise InputError(f"{p}: images[{i}].detections must be a list")
        for j, d in enumerate(img["detections"]):
            box = d.get("box") if isinstance(d, dict) else None
            if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)
                    and _number(d.get("score"))):
                raise InputError(f"{p}: images[{i}].detections[{j}] needs a 4-number box and "
                                 "a numeric score")
    return doc


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_detections_json(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a detections JSON document (what ``detect --json`` writes)."""
    try:
        read_detections_json(path)
        return True
    except (InputError, OSError):
        return False
