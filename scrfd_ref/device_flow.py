"""The vendor device flow's steps, with any backend standing in for the device.

``image2npz`` (images -> input npz + datalist), ``dump`` (input npz -> vamp-style output
npz through a backend), ``npz_decode`` (output npz + datalist + original images -> WIDER
txt). Problems with the device files are collected and reported together (one line per
file) before anything is decoded, so an evaluation is never silently shorter.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from .backends import Backend
from .decode import decode
from .errors import DataMissingError, InputError, ScrfdRefError
from .formats.device_npz import (output_path, read_datalist, read_input_npz, read_output_npz,
                                 write_datalist, write_input_npz, write_output_npz)
from .formats.images import read_image
from .formats.wider_txt import write_predictions
from .heads import normalize_heads
from .parallel import prefetch
from .postprocess import postprocess
from .preprocess import letterbox_geometry, preprocess
from .profiles import Profile
from .widerface.run import list_images, wider_rows

MAX_LISTED = 20


def _report(problems: list[str], what: str) -> None:
    if problems:
        shown = "\n  ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise InputError(f"{what}: {len(problems)} problem(s):\n  {shown}{more}")


def image2npz(dataset_path: str | Path, target_path: str | Path, text_path: str | Path, *,
              events: Sequence[str] | None = None, progress: bool = True) -> list[Path]:
    """Write ``<target>/<name>.npz`` (``input_0`` uint8 RGB CHW) per ``<dataset>/<event>/<name>.jpg``
    and the datalist of absolute npz paths; return the npz paths in datalist order."""
    items = list_images(dataset_path, events)
    names = [it.name for it in items]
    dupes = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
    if dupes:
        raise InputError(f"{dataset_path}: image names repeat across events ({', '.join(dupes[:5])}); "
                         "the flat npz folder would overwrite them")
    target = Path(target_path)
    paths = []
    for item, image in tqdm(prefetch(lambda it: read_image(it.path), items, depth=8),
                            total=len(items), desc="image2npz", unit="img", disable=not progress):
        paths.append(write_input_npz(target / f"{item.name}.npz", image))
    write_datalist(text_path, paths)
    return paths


DUMP_META = "scrfd_dump.json"


def dump(backend: Backend, datalist: str | Path, out_dir: str | Path, profile: Profile, *,
         dtype: str = "fp32", progress: bool = True, meta: dict | None = None) -> int:
    """Run every datalist input through ``backend`` and write vamp-style output npz files.

    Inputs are letterboxed with ``profile`` (the device resizes and normalises; the
    profile says how). The backend must produce the device layout (a model exported
    with ``export-device-layout``); outputs are cast to ``dtype`` (fp16 or fp32).
    Writes ``scrfd_dump.json`` (backend identity, profile, output dtype and ``meta``:
    e.g. the variant) and a copy of the datalist (``datalist.txt``) beside the outputs, so
    the folder replays on its own. Returns the number of files written.
    """
    entries = read_datalist(datalist)
    missing = [f"{p}: input npz not found" for p in entries if not p.is_file()]
    _report(missing, f"datalist {datalist}")

    def load(path: Path):
        return preprocess([read_input_npz(path)], profile)[0]

    for i, (path, blob) in enumerate(tqdm(prefetch(load, entries, depth=4), total=len(entries),
                                          desc="dump", unit="img", disable=not progress)):
        outputs = backend.run(blob)
        heads = normalize_heads(outputs, profile.input_size, where=f"{backend.name} on {path}",
                                check_finite=False)
        if heads.layout != "device":
            raise InputError(f"{backend.name}: the model gives the standard layout; dump writes "
                             "the device layout: export it first (scrfd-ref export-device-layout)")
        write_output_npz(output_path(out_dir, i), outputs, dtype)
    info = {**(meta or {}), "backend": backend.info(), "profile": profile.to_dict(),
            "output_dtype": dtype, "files": len(entries)}
    Path(out_dir, DUMP_META).write_text(json.dumps(info, indent=2) + "\n")
    write_datalist(Path(out_dir) / "datalist.txt", entries)
    return len(entries)


@dataclass(frozen=True)
class DecodeSummary:
    """What ``npz_decode`` did."""

    images: int
    detections: int
    inverted: int


def index_images(images_dir: str | Path) -> dict[str, Path]:
    """Map image name (no extension) -> path for ``<images_dir>/<event>/*.jpg``."""
    index: dict[str, Path] = {}
    for item in list_images(images_dir):
        if item.name in index:
            raise InputError(f"{images_dir}: image name {item.name} appears in two events")
        index[item.name] = item.path
    return index


def check_device_outputs(datalist: str | Path, outputs_dir: str | Path,
                         images_dir: str | Path) -> list[tuple[Path, Path, Path]]:
    """Pair datalist lines with output files and original images; report every problem.

    Returns ``(input npz, output npz, original image)`` triples in datalist order.
    Raises one InputError listing all problems: count mismatch, missing/unreadable
    output files, bad keys/dtypes/shapes, originals not found.
    """
    entries = read_datalist(datalist)
    out_dir = Path(outputs_dir)
    if not out_dir.is_dir():
        raise DataMissingError(f"device output folder not found: {out_dir}")
    found = sorted(out_dir.glob("output_*.npz"))
    problems = []
    if len(found) != len(entries):
        problems.append(f"{out_dir}: {len(found)} output files but {len(entries)} datalist lines "
                        f"in {datalist}")
    index = index_images(images_dir)
    triples = []
    for i, entry in enumerate(entries):
        out = output_path(out_dir, i)
        original = index.get(entry.stem)
        if original is None:
            problems.append(f"{entry}: original image {entry.stem}.jpg not found under {images_dir}")
        try:
            read_output_npz(out)
        except ScrfdRefError as exc:
            problems.append(str(exc))
        triples.append((entry, out, original))
    _report(problems, f"device outputs {out_dir}")
    return triples


def npz_decode(datalist: str | Path, outputs_dir: str | Path, images_dir: str | Path,
               out_dir: str | Path, profile: Profile, *, progress: bool = True) -> DecodeSummary:
    """Decode vamp output npz files into WIDER txt (``<out>/<event>/<name>.txt``).

    Each output's original image (found by name under the event folders) gives the size
    that, with ``profile``'s letterbox, maps detections back to original pixels.
    """
    from PIL import Image, UnidentifiedImageError

    triples = check_device_outputs(datalist, outputs_dir, images_dir)
    n_dets = n_inv = 0
    for _, out, original in tqdm(triples, desc="npz-decode", unit="img", disable=not progress):
        try:
            with Image.open(original) as im:  # reads the header only
                size = im.size
        except (OSError, UnidentifiedImageError) as exc:
            raise InputError(f"{original}: original image does not decode: {exc}") from exc
        t = letterbox_geometry(size, profile.input_size, profile.letterbox)
        heads = normalize_heads(read_output_npz(out), profile.input_size, where=str(out))
        dets = postprocess(decode(heads, profile.score_thr)[0], t, profile)
        rows, inverted = wider_rows(dets)
        write_predictions(out_dir, original.parent.name, original.stem, rows)
        n_dets += rows.shape[0]
        n_inv += inverted
    return DecodeSummary(len(triples), n_dets, n_inv)
