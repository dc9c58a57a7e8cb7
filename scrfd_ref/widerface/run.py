"""Dataset runs: the detector over ``<images>/<event>/*.jpg``, writing WIDER txt files.

Re-running resumes: an image whose ``<out>/<event>/<name>.txt`` exists is skipped (files
are written atomically, so an existing file is complete). Reading and letterboxing of
the next images runs on a worker thread while the current one is inferred.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from ..detections import Detections
from ..detector import Detector
from ..errors import DataMissingError, InputError
from ..formats.images import read_image
from ..formats.wider_txt import write_predictions
from ..parallel import prefetch
from ..preprocess import preprocess


@dataclass(frozen=True)
class ImageItem:
    """One dataset image: its event folder, name (no extension) and path."""

    event: str
    name: str
    path: Path


def list_images(images_dir: str | Path, events: Iterable[str] | None = None) -> list[ImageItem]:
    """All ``<images_dir>/<event>/*.jpg`` (sorted), optionally only the named events.

    Raises DataMissingError for a missing folder or a named event that is not there.
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise DataMissingError(f"image folder not found: {root}")
    available = sorted(p.name for p in root.iterdir() if p.is_dir())
    chosen = available if events is None else list(events)
    missing = [e for e in chosen if e not in available]
    if missing:
        raise DataMissingError(f"{root}: no event folder(s) {', '.join(missing)} "
                               f"(found {len(available)}: {', '.join(available[:5])}...)")
    items = [ImageItem(e, p.stem, p) for e in chosen for p in sorted((root / e).glob("*.jpg"))]
    if not items:
        raise DataMissingError(f"{root}: no .jpg images in {', '.join(chosen) or 'any event'}")
    return items


@dataclass(frozen=True)
class RunSummary:
    """What a dataset run did (``inverted``: detections dropped by :func:`wider_rows`)."""

    total: int
    skipped: int
    written: int
    detections: int
    inverted: int = 0


def wider_rows(dets: Detections) -> tuple[np.ndarray, int]:
    """``(n, 5)`` x y w h score rows for a WIDER txt file, and how many boxes were dropped.

    A box with ``x2 < x1`` or ``y2 < y1`` (the model predicted negative extents, or a
    degenerate box came out one float32 ulp inverted) has no valid WIDER ``w h`` and is
    dropped; the count is reported so a run never shrinks silently.
    """
    rows = dets.to_xywh_score()
    ok = (rows[:, 2] >= 0) & (rows[:, 3] >= 0)
    return rows[ok], int(np.count_nonzero(~ok))


def run_dataset(detector: Detector, items: Sequence[ImageItem], out_dir: str | Path, *,
                resume: bool = True, progress: bool = True) -> RunSummary:
    """Detect faces in every item and write ``<out_dir>/<event>/<name>.txt``.

    Args:
        detector: the detector (its profile decides thresholds and box handling).
        items: images from :func:`list_images`.
        out_dir: prediction folder.
        resume: skip images whose prediction file already exists.
        progress: show a tqdm progress bar.
    """
    out = Path(out_dir)
    todo = [it for it in items if not (resume and (out / it.event / f"{it.name}.txt").is_file())]

    def load(item: ImageItem):
        try:
            return preprocess([read_image(item.path)], detector.profile)
        except InputError as exc:
            raise InputError(f"{item.path}: {exc}") from exc

    n_dets = n_inverted = 0
    bar = tqdm(total=len(todo), desc="wider-run", unit="img", disable=not progress)
    for item, (blob, transforms) in prefetch(load, todo, workers=1, depth=4):
        dets = detector.detections_from_heads(detector.heads(blob), transforms)[0]
        rows, inverted = wider_rows(dets)
        write_predictions(out, item.event, item.name, rows)
        n_dets += rows.shape[0]
        n_inverted += inverted
        bar.update(1)
    bar.close()
    return RunSummary(len(items), len(items) - len(todo), len(todo), n_dets, n_inverted)
