"""Dataset runs: the detector over ``<images>/<event>/*.jpg``, writing WIDER txt files.

The output folder keeps a manifest (``scrfd_run.json``: model sha256, backend, dtype,
profile, image list; :mod:`scrfd_ref.formats.manifest`). Re-running the same run resumes:
an image whose ``<out>/<event>/<name>.txt`` exists is skipped (files are written
atomically, so an existing file is complete). A folder written by another run (another
model, profile or image list, or no manifest at all) is refused unless ``overwrite``.
Reading and letterboxing of the next images runs on a worker thread while the current
one is inferred.

Prediction files keep every box the model produced, as insightface's
``tools/test_widerface.py`` writes them: a box with ``x2 < x1`` (a negative width) is
written with its negative width, and the official evaluation reads it as such.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from ..detections import Detections
from ..detector import Detector
from ..errors import DataMissingError
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
    chosen = available if events is None else list(dict.fromkeys(events))
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
    """What a dataset run did (``inverted``: detections with a negative width or height,
    written as they are)."""

    total: int
    skipped: int
    written: int
    detections: int
    inverted: int = 0


def wider_rows(dets: Detections) -> tuple[np.ndarray, int]:
    """``(n, 5)`` x y w h score rows for a WIDER txt file, and how many are inverted.

    Every detection is kept, as insightface's ``tools/test_widerface.py`` writes them
    (``w = x2 - x1``, ``h = y2 - y1``): a box with ``x2 < x1`` or ``y2 < y1`` (negative
    extents, or a degenerate box one float32 ulp inverted) keeps its negative width or
    height, which the official evaluation reads as it is. The count is returned so the
    run summary can say how many there were.
    """
    rows = dets.to_xywh_score()
    inverted = (rows[:, 2] < 0) | (rows[:, 3] < 0)
    return rows, int(np.count_nonzero(inverted))


def prediction_files(folder: str | Path) -> list[Path]:
    """The ``<event>/<name>.txt`` prediction files of a folder (a run's own files)."""
    root = Path(folder)
    if not root.is_dir():
        return []
    return sorted(f for ev in root.iterdir() if ev.is_dir() and not ev.name.startswith(".")
                  for f in ev.glob("*.txt") if f.is_file())


def check_headers(items: Sequence[ImageItem]) -> None:
    """Every image readable (from its header) and within the pixel limit, else one error
    listing every bad image, before anything is computed."""
    from ..errors import ScrfdRefError, problem_list
    from ..formats.images import read_image_size

    problems = []
    for it in items:
        try:
            read_image_size(it.path)
        except ScrfdRefError as exc:
            problems.append(str(exc))
    if problems:
        raise problem_list(problems, "images")


def run_identity(detector: Detector, items: Sequence[ImageItem]) -> dict:
    """What makes two dataset runs the same run (the manifest's ``identity``)."""
    from ..formats.manifest import list_sha256
    from ..model_prep import file_digest

    info = detector.backend.info()
    model = getattr(detector.backend, "model_path", None)
    return {"model_sha256": file_digest(Path(model)) if model else None,
            "model": Path(model).name if model else None,
            "backend": info.get("backend"), "dtype": info.get("dtype"),
            "profile": detector.profile.to_dict(),
            "image_list_sha256": list_sha256(f"{it.event}/{it.name}" for it in items)}


def run_dataset(detector: Detector, items: Sequence[ImageItem], out_dir: str | Path, *,
                resume: bool = True, progress: bool = True,
                overwrite: bool = False) -> RunSummary:
    """Detect faces in every item and write ``<out_dir>/<event>/<name>.txt``.

    Args:
        detector: the detector (its profile decides thresholds and box handling).
        items: images from :func:`list_images`.
        out_dir: prediction folder.
        resume: skip images whose prediction file already exists (same run only).
        progress: show a tqdm progress bar.
        overwrite: replace the files of another run in ``out_dir`` instead of refusing.

    Raises:
        UsageError: ``out_dir`` holds another run's predictions (without ``overwrite``).
    """
    from ..formats.manifest import RUN_MANIFEST, open_run

    out = Path(out_dir)
    check_headers(items)
    run = open_run(out, RUN_MANIFEST, "wider-run", run_identity(detector, items),
                   overwrite=overwrite, run_files=prediction_files)
    todo = [it for it in items if not (resume and run.resumed
                                       and (out / it.event / f"{it.name}.txt").is_file())]

    def load(item: ImageItem):
        return preprocess([read_image(item.path)], detector.profile)

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
    run.finish(images=len(items), written=len(todo), detections_written=n_dets)
    return RunSummary(len(items), len(items) - len(todo), len(todo), n_dets, n_inverted)
