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
from typing import Any, Callable, Mapping, Sequence

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
Builder = Callable[..., Any]


def cut_feeds(cuts: Path, doc: Mapping[str, Any], stage: Mapping[str, Any], kind: str) -> Feeds:
    """The inputs of one cut, one feed per image (input name -> float32 array)."""
    if kind == "segment":
        names = [i["name"] for i in stage["inputs"]]
        shapes = [i["shape"] for i in stage["inputs"]]
        files = [cuts / stage["segment"]["inputs"] / f"{Path(n).stem}.npz"
                 for n in doc["image_list"]]
        return [dict(zip(names, read_cut_npz(f, shapes, "input"))) for f in files]
    profile = profile_from_dict(doc["identity"]["profile"])
    entries = read_datalist(cuts / "images.txt")
    return [{"__image__": preprocess([read_input_npz(e)], profile)[0]} for e in entries]


def run_cuts(cuts: Path, out: Path, device: str, *, kinds: Sequence[str] = CUT_KINDS,
             overwrite: bool = False, progress: bool = True,
             calibration: int = CALIBRATION_IMAGES, builder: Builder = build_cut_runner,
             work_dir: Path | None = None, stages: Sequence[int] | None = None) -> dict[str, Any]:
    """Build every cut of ``cuts`` as ``device`` and write its outputs into ``out``.

    ``builder`` (default :func:`~scrfd_ref.quantize.cut_builds.build_cut_runner`) makes a
    runner from ``(model path, device, calibration feeds, work_dir)``; fault-injection
    trials pass one that breaks a node first. ``stages`` limits the run to those stage
    indices (the judge then needs the others from elsewhere). Returns the manifest.
    """
    doc = read_cuts(cuts)
    images = int(doc["images"])
    chosen = [s for s in doc["stages"] if stages is None or s["index"] in stages]
    planned = [f"{s['slug']}.{k}/{OUTPUT_PATTERN.format(i)}" for s in chosen for k in kinds
               for i in range(images)]
    identity = {"device": device, "dtype": DEVICE_DTYPES[device], "kinds": list(kinds),
                "cuts_model_sha256": doc["identity"]["model_sha256"],
                "cuts_sha256": cuts_digest(doc),
                "calibration_images": calibration}
    run = open_run(out, RUN_MANIFEST, "localize-run", identity, overwrite=overwrite,
                   run_files=lambda f: [f / p for p in planned if (f / p).is_file()],
                   outputs=planned, inputs=[cuts])
    image_feeds: Feeds | None = None
    with run:
        todo = [(s, k) for s in chosen for k in kinds]
        for stage, kind in tqdm(todo, desc=f"localize run {device}", unit="cut",
                                disable=not progress):
            if kind == "prefix":
                image_feeds = image_feeds or cut_feeds(cuts, doc, stage, kind)
                feeds = image_feeds
            else:
                feeds = cut_feeds(cuts, doc, stage, kind)
            model = cuts / stage[kind]["model"]
            if kind == "prefix":
                import onnx

                name = onnx.load(str(model), load_external_data=False).graph.input[0].name
                feeds = [{name: f["__image__"]} for f in feeds]
            with builder(model, device, feeds[:calibration], work_dir) as runner:
                folder = out / f"{stage['slug']}.{kind}"
                folder.mkdir(parents=True, exist_ok=True)
                for i, feed in enumerate(feeds):
                    path = folder / OUTPUT_PATTERN.format(i)
                    run.record(write_cut_npz(path, runner.run(feed), "output"))
        run.finish(images=images, files=len(planned), scrfd_ref=__version__)
    return run.doc


__all__ = ["CALIBRATION_IMAGES", "DEVICE_DTYPES", "cut_feeds", "run_cuts"]
