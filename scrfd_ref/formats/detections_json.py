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
import tempfile
from pathlib import Path
from typing import Any, Sequence

from ..detections import Detections
from ..errors import InputError

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
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_detections_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a detections document (keys and per-detection fields)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{p}: not a readable JSON document: {exc}") from exc
    for key in ("model", "profile", "images"):
        if key not in doc:
            raise InputError(f"{p}: missing key {key!r}")
    for i, img in enumerate(doc["images"]):
        for key in ("path", "width", "height", "detections"):
            if key not in img:
                raise InputError(f"{p}: images[{i}] lacks {key!r}")
        for j, d in enumerate(img["detections"]):
            if len(d.get("box", ())) != 4 or "score" not in d:
                raise InputError(f"{p}: images[{i}].detections[{j}] needs a 4-number box and a score")
    return doc
