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
from typing import TYPE_CHECKING, Sequence

from tqdm import tqdm

from scrfd_ref.core.parallel import prefetch
from scrfd_ref.core.preprocess import preprocess
from scrfd_ref.formats.dataset import (
    ImageItem,
    check_headers,
    list_images,
    prediction_files,
)
from scrfd_ref.formats.images import read_image
from scrfd_ref.formats.wider_txt import wider_rows, write_predictions

if TYPE_CHECKING:
    from scrfd_ref.detector import Detector

__all__ = ["ImageItem", "RunSummary", "list_images", "run_dataset", "run_identity",
           "wider_rows"]


@dataclass(frozen=True)
class RunSummary:
    """What a dataset run did (``inverted``: detections with a negative width or height,
    written as they are)."""

    total: int
    skipped: int
    written: int
    detections: int
    inverted: int = 0


def run_identity(detector: "Detector", items: Sequence[ImageItem]) -> dict:
    """What makes two dataset runs the same run (the manifest's ``identity``)."""
    from scrfd_ref.formats.files import file_digest
    from scrfd_ref.formats.manifest import list_sha256

    info = detector.backend.info()
    model = getattr(detector.backend, "model_path", None)
    return {"model_sha256": file_digest(Path(model)) if model else None,
            "model": Path(model).name if model else None,
            "backend": info.get("backend"), "dtype": info.get("dtype"),
            "profile": detector.profile.to_dict(),
            "image_list_sha256": list_sha256(f"{it.event}/{it.name}" for it in items)}


def run_dataset(detector: "Detector", items: Sequence[ImageItem], out_dir: str | Path, *,
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
    from scrfd_ref.formats.manifest import RUN_MANIFEST, open_run

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
