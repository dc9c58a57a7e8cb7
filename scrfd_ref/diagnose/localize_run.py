"""``localize run``: every cut of a cut folder built and run as one of the suite's devices.

Writes ``<out>/NN_<stage>.segment/output_NNNNNN.npz`` (and ``.prefix/`` for prefixes)
in the dump conventions, and ``localize_run.json`` (kind ``localize-run``: the device, its
dtype, the cuts it ran, every file's sha256). Segments read their fp32 golden inputs;
prefixes read the images of the cut folder's datalist, letterboxed with the profile the
cuts were made with. int8 devices calibrate each cut on its own inputs (the first
``calibration`` images), as a vendor compiler calibrates a model on its input datalist.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from scrfd_ref import __version__
from scrfd_ref.core.preprocess import preprocess
from scrfd_ref.core.profiles import profile_from_dict
from scrfd_ref.device.cuts import CUT_KINDS
from scrfd_ref.diagnose.localize_folder import RUN_MANIFEST, cuts_digest, read_cuts
from scrfd_ref.formats.cut_npz import read_cut_npz, write_cut_npz
from scrfd_ref.formats.device_npz import OUTPUT_PATTERN, read_datalist, read_input_npz
from scrfd_ref.formats.manifest import open_run
from scrfd_ref.quantize.cut_builds import CUT_DEVICES, build_cut_runner

#: the dtype each cut device's arithmetic is judged as (its bands)
DEVICE_DTYPES = {"ort/fp32": "fp32", "ort/fp16": "fp16", "ort/int8": "int8",
                 "ort/fp16-storage": "fp16", "ort/bf16-storage": "bf16",
                 "openvino/fp32": "fp32", "openvino/bf16": "bf16", "openvino/int8": "int8",
                 "opencv/fp32": "fp32"}
assert set(DEVICE_DTYPES) == set(CUT_DEVICES)
#: calibration images per cut for the int8 devices
CALIBRATION_IMAGES = 8
Feeds = list[dict[str, np.ndarray]]


def segment_feeds(cuts: Path, doc: Mapping[str, Any], stage: Mapping[str, Any]) -> Feeds:
    """The inputs of one stage's segment, one feed per image (input name -> float32)."""
    names = [i["name"] for i in stage["inputs"]]
    shapes = [i["shape"] for i in stage["inputs"]]
    files = [cuts / stage["segment"]["inputs"] / f"{Path(n).stem}.npz" for n in doc["image_list"]]
    return [dict(zip(names, read_cut_npz(f, shapes, "input"))) for f in files]


def prefix_blobs(cuts: Path, doc: Mapping[str, Any]) -> list[np.ndarray]:
    """The images of the cut folder's datalist, letterboxed with the cuts' profile (what
    every prefix reads)."""
    profile = profile_from_dict(doc["identity"]["profile"])
    return [preprocess([read_input_npz(e)], profile)[0]
            for e in read_datalist(cuts / "images.txt")]


def run_cuts(cuts: Path, out: Path, device: str, *, kinds: Sequence[str] = CUT_KINDS,
             overwrite: bool = False, progress: bool = True,
             calibration: int = CALIBRATION_IMAGES) -> dict[str, Any]:
    """Build every cut of ``cuts`` as ``device`` and write its outputs into ``out``.
    Returns the finished manifest."""
    import onnx

    doc = read_cuts(cuts)
    images = int(doc["images"])
    planned = [f"{s['slug']}.{k}/{OUTPUT_PATTERN.format(i)}" for s in doc["stages"]
               for k in kinds for i in range(images)]
    identity = {"device": device, "dtype": DEVICE_DTYPES[device], "kinds": list(kinds),
                "cuts_model_sha256": doc["identity"]["model_sha256"],
                "cuts_sha256": cuts_digest(doc),
                "calibration_images": calibration}
    run = open_run(out, RUN_MANIFEST, "localize-run", identity, overwrite=overwrite,
                   run_files=lambda f: [f / p for p in planned if (f / p).is_file()],
                   outputs=planned, inputs=[cuts])
    blobs: list[np.ndarray] | None = None     # read once, for every prefix
    with run:
        todo = [(s, k) for s in doc["stages"] for k in kinds]
        for stage, kind in tqdm(todo, desc=f"localize run {device}", unit="cut",
                                disable=not progress):
            model = cuts / stage[kind]["model"]
            if kind == "prefix":
                blobs = blobs if blobs is not None else prefix_blobs(cuts, doc)
                name = onnx.load(str(model), load_external_data=False).graph.input[0].name
                feeds = [{name: b} for b in blobs]
            else:
                feeds = segment_feeds(cuts, doc, stage)
            with build_cut_runner(model, device, feeds[:calibration]) as runner:
                folder = out / f"{stage['slug']}.{kind}"
                folder.mkdir(parents=True, exist_ok=True)
                for i, feed in enumerate(feeds):
                    path = folder / OUTPUT_PATTERN.format(i)
                    run.record(write_cut_npz(path, runner.run(feed), "output"))
        run.finish(images=images, files=len(planned), scrfd_ref=__version__)
    return run.doc


__all__ = ["CALIBRATION_IMAGES", "DEVICE_DTYPES", "prefix_blobs", "run_cuts", "segment_feeds"]
