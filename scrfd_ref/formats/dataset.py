"""WIDER-style image folders: ``<images>/<event>/<name>.jpg`` listed and checked, and the
``<event>/<name>.txt`` prediction files of a run folder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from scrfd_ref.core.errors import DataMissingError


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


def prediction_files(folder: str | Path) -> list[Path]:
    """The ``<event>/<name>.txt`` prediction files of a folder (a run's own files)."""
    root = Path(folder)
    if not root.is_dir():
        return []
    return sorted(f for ev in root.iterdir() if ev.is_dir() and not ev.name.startswith(".")
                  for f in ev.glob("*.txt") if f.is_file())


def check_headers(items: Sequence["ImageItem"]) -> None:
    """Every image readable (from its header) and within the pixel limit, else one error
    listing every bad image, before anything is computed."""
    from scrfd_ref.core.errors import ScrfdRefError, problem_list
    from scrfd_ref.formats.images import read_image_size

    problems = []
    for it in items:
        try:
            read_image_size(it.path)
        except ScrfdRefError as exc:
            problems.append(str(exc))
    if problems:
        raise problem_list(problems, "images")
