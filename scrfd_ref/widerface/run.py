"""Dataset runs: the detector over ``<images>/<event>/*.jpg``, writing WIDER txt files.

The output folder keeps a manifest (``scrfd_run.json``: model sha256, backend, dtype,
profile, image list; :mod:`scrfd_ref.formats.manifest`). Re-running the same run resumes:
an image whose ``<out>/<event>/<name>.txt`` exists is skipped (files are written
atomically, so an existing file is complete). A folder written by another run (another
model, profile or image list, or no manifest at all) is refused unless ``overwrite``.
The run is data-parallel: one worker thread per usable core, each with its own replica of
the detector limited to one ONNX Runtime intra-op thread, takes whole images (read,
letterbox, infer, decode + NMS, write); numpy, OpenCV and ONNX Runtime release the GIL,
so the workers run side by side. On the 2-core reference machine this beats one session
with two intra-op threads plus loader threads (about 42 against 33-37 images/s for
500m_bnkps: a two-thread inference stalls whenever another thread takes one of its
cores). ``workers=1`` runs every stage in turn on the calling thread with the detector as
given (the reference path; the prediction files are byte-identical either way). Each
stage is timed (``RunSummary.stages``, summed over the workers).

Prediction files keep every box the model produced, as insightface's
``tools/test_widerface.py`` writes them: a box with ``x2 < x1`` (a negative width) is
written with its negative width, and the official evaluation reads it as such.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from tqdm import tqdm

from scrfd_ref.core.parallel import StageClock, format_split, map_with_pool
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
    wall_s: float = 0.0
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    workers: int = 1

    @property
    def images_per_s(self) -> float:
        """Images written per second of wall time (0 when nothing was written)."""
        return self.written / self.wall_s if self.wall_s > 0 and self.written else 0.0

    def stage_line(self) -> str:
        """``read 3.1 | preprocess 0.6 | infer 8.9 | post 1.0 | write 0.2 ms/image``."""
        return format_split(self.stages) + " (summed over the workers)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary with the throughput and the stage split."""
        return {"images": self.total, "skipped": self.skipped, "written": self.written,
                "detections": self.detections, "inverted": self.inverted,
                "wall_s": round(self.wall_s, 4), "images_per_s": round(self.images_per_s, 3),
                "workers": self.workers, "stages": self.stages}


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
                overwrite: bool = False, workers: int | None = None) -> RunSummary:
    """Detect faces in every item and write ``<out_dir>/<event>/<name>.txt``.

    Args:
        detector: the detector (its profile decides thresholds and box handling).
        items: images from :func:`list_images`.
        out_dir: prediction folder.
        resume: skip images whose prediction file already exists (same run only).
        progress: show a tqdm progress bar.
        overwrite: replace the files of another run in ``out_dir`` instead of refusing.
        workers: images processed at once, each by its own one-thread replica of the
            detector (default: one per usable core); 1 (or 0) runs every stage in turn on
            the calling thread with ``detector`` itself.

    Raises:
        UsageError: ``out_dir`` holds another run's predictions (without ``overwrite``).
    """
    from scrfd_ref.formats.manifest import RUN_MANIFEST, open_run

    out = Path(out_dir)
    check_headers(items)
    run = open_run(out, RUN_MANIFEST, "wider-run", run_identity(detector, items),
                   overwrite=overwrite, run_files=prediction_files,
                   outputs=[f"{it.event}/{it.name}.txt" for it in items])
    with run:
        kept = run.keep([f"{it.event}/{it.name}.txt" for it in items], resume)
        todo = [it for it in items if f"{it.event}/{it.name}.txt" not in kept]
        clock = StageClock()
        replicas = detector.pool(workers)

        def one(det: "Detector", item: ImageItem) -> tuple[int, int]:
            with clock.stage("read"):
                image = read_image(item.path)
            with clock.stage("preprocess"):
                blob, transforms = preprocess([image], det.profile)
            with clock.stage("infer"):
                heads = det.heads(blob)
            with clock.stage("post"):
                rows, inverted = wider_rows(det.detections_from_heads(heads, transforms)[0])
            with clock.stage("write"):
                run.record(write_predictions(out, item.event, item.name, rows))
            return rows.shape[0], inverted

        results = map_with_pool(one, todo, replicas)
        n_dets = n_inverted = 0
        bar = tqdm(total=len(todo), desc="wider-run", unit="img", disable=not progress)
        start = time.perf_counter()
        for dets, inverted in results:
            n_dets += dets
            n_inverted += inverted
            bar.update(1)
        wall = time.perf_counter() - start
        bar.close()
        for det in replicas:
            if det is not detector:
                det.close()
        run.finish(images=len(items), written=len(todo), detections_written=n_dets)
    return RunSummary(len(items), len(items) - len(todo), len(todo), n_dets, n_inverted,
                      wall, clock.split(len(todo), wall), len(replicas))
