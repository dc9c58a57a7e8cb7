"""Cut models with goldens: the files ``scrfd-ref localize cut`` writes.

For every stage of :func:`~scrfd_ref.device.stages.find_stages` two plain ONNX models:

- **prefix** ``models/NN_<stage>.prefix.onnx``: the image input -> the stage's outputs
  (every node upstream of them): where the damage has reached by that stage. Its inputs
  are the images of the user's datalist, preprocessed as the full model's are.
- **segment** ``models/NN_<stage>.segment.onnx``: the stage's inputs (fp32 golden
  tensors of the stages before it) -> its outputs: the stage's own error. Its inputs are
  ``inputs/NN_<stage>/<image>.npz`` (keys ``input_0..``, :mod:`scrfd_ref.formats.cut_npz`),
  listed in the datalist ``inputs/NN_<stage>.txt``.

The fp32 goldens (onnxruntime on the CPU, the reference) of each stage's outputs are
``golden/NN_<stage>/output_NNNNNN.npz``, one per image, shared by both cuts of a stage.
``localize_cuts.json`` (a run manifest, kind ``localize-cut``) lists every stage with its
ONNX nodes, op types, input and output tensors and shapes, every file with its sha256.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper
from tqdm import tqdm

from scrfd_ref import __version__
from scrfd_ref.core.errors import InputError, UsageError, problem_list
from scrfd_ref.core.preprocess import preprocess
from scrfd_ref.core.profiles import Profile
from scrfd_ref.device.onnx_tools import keep_outputs, save_model
from scrfd_ref.device.stages import Stage, StageGraph, find_stages
from scrfd_ref.formats.cut_npz import write_cut_npz
from scrfd_ref.formats.device_npz import (
    OUTPUT_PATTERN,
    datalist_problems,
    input_fingerprints,
    read_datalist,
    read_input_npz,
    write_datalist,
)
from scrfd_ref.formats.files import display, file_digest
from scrfd_ref.formats.manifest import list_sha256, open_run

CUTS_MANIFEST = "localize_cuts.json"
#: version of the cut folder's layout (bump when a file moves or changes meaning)
CUTS_FORMAT = 1
CUT_KINDS = ("prefix", "segment")


def stage_slug(index: int, stage: Stage) -> str:
    """``NN_<stage name>`` (``02_backbone_s8``): the stem of a stage's files."""
    return f"{index:02d}_{stage.name.replace(' ', '_')}"


def _value(name: str, shape: Sequence[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def segment_model(graph: StageGraph, stage: Stage) -> onnx.ModelProto:
    """The stage alone: its input tensors -> its output tensors (static shapes)."""
    g = graph.model.graph
    names = set(stage.nodes)
    nodes = [n for n in g.node if n.name in names]
    used = {i for n in nodes for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    body = helper.make_graph(nodes, f"{g.name or 'scrfd'} {stage.name} segment",
                             [_value(t, graph.shapes[t]) for t in stage.inputs],
                             [_value(t, graph.shapes[t]) for t in stage.outputs], inits)
    model = helper.make_model(body, opset_imports=list(graph.model.opset_import),
                              ir_version=graph.model.ir_version,
                              producer_name=f"scrfd-ref {__version__} localize cut")
    onnx.checker.check_model(model)
    return model


def prefix_model(graph: StageGraph, stage: Stage) -> onnx.ModelProto:
    """The image input -> the stage's output tensors (every node they depend on)."""
    model = keep_outputs(graph.model, stage.outputs)
    del model.graph.output[:]
    model.graph.output.extend(_value(t, graph.shapes[t]) for t in stage.outputs)
    model.producer_name = f"scrfd-ref {__version__} localize cut"
    onnx.checker.check_model(model)
    return model


def boundary_tensors(graph: StageGraph) -> list[str]:
    """Every tensor a stage writes for another stage (or the graph's outputs)."""
    return list(dict.fromkeys(t for s in graph.stages for t in s.outputs))


class GoldenRunner:
    """fp32 onnxruntime (CPU) of the whole graph with every stage boundary as an output."""

    def __init__(self, graph: StageGraph) -> None:
        import onnxruntime as ort

        self.names = boundary_tensors(graph)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(
            keep_outputs(graph.model, self.names).SerializeToString(), opts,
            providers=["CPUExecutionProvider"])
        self.input_name = graph.input_name

    def run(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        """Every boundary tensor for one ``(1, 3, H, W)`` blob."""
        return dict(zip(self.names, self.session.run(self.names, {self.input_name: blob})))


def stage_record(graph: StageGraph, index: int, stage: Stage) -> dict[str, Any]:
    """What the manifest says about one stage and its two cuts."""
    slug = stage_slug(index, stage)
    return {"index": index, "name": stage.name, "kind": stage.kind, "stride": stage.stride,
            "slug": slug, "nodes": list(stage.nodes), "op_types": list(stage.op_types),
            "inputs": [{"name": t, "shape": list(graph.shapes[t])} for t in stage.inputs],
            "outputs": [{"name": t, "shape": list(graph.shapes[t])} for t in stage.outputs],
            "prefix": {"model": f"models/{slug}.prefix.onnx", "datalist": "images.txt"},
            "segment": {"model": f"models/{slug}.segment.onnx",
                        "datalist": f"inputs/{slug}.txt", "inputs": f"inputs/{slug}"},
            "golden": f"golden/{slug}"}


def _planned(stages: list[dict[str, Any]], names: list[str]) -> list[str]:
    files = ["images.txt"]
    for s in stages:
        files += [s["prefix"]["model"], s["segment"]["model"], s["segment"]["datalist"]]
        files += [f"{s['segment']['inputs']}/{n}.npz" for n in names]
        files += [f"{s['golden']}/{OUTPUT_PATTERN.format(i)}" for i in range(len(names))]
    return files


def identify_variant(model_path: Path) -> str | None:
    """The SCRFD variant ``model_path`` is, by its graph (heads, then compute), or None when
    it is none of them or several."""
    from scrfd_ref.device.model_identity import compute_problem, variant_problem
    from scrfd_ref.formats.datadir import VARIANTS

    fits = [v for v in VARIANTS if variant_problem(model_path, v) is None
            and compute_problem(model_path, v) is None]
    return fits[0] if len(fits) == 1 else None


def _check_inputs(entries: Sequence[Path], datalist: Path) -> None:
    """Every input npz readable, no image twice: checked before anything is written."""
    problems = datalist_problems(entries)
    for e in entries:
        try:
            read_input_npz(e)
        except (InputError, OSError) as exc:
            problems.append(str(exc))
    if not entries:
        problems.append("no input npz listed")
    if problems:
        raise problem_list(problems, f"datalist {display(datalist)}")


def write_cuts(model_path: Path, datalist: Path, out: Path, profile: Profile, *,
               overwrite: bool = False, progress: bool = True,
               variant: str | None = None) -> dict[str, Any]:
    """Cut ``model_path`` at its stage boundaries and write the cut folder ``out``.

    Every image of ``datalist`` (input npz files, ``scrfd-ref image2npz``) is letterboxed
    with ``profile`` and run through the fp32 reference once; its boundary tensors are the
    goldens and the segment inputs. ``variant`` (default: the one the graph is, see
    :func:`identify_variant`) picks the stage bands the judge applies. Returns the finished
    manifest.

    Raises:
        InputError: the model cannot be cut or run at the profile's input size, an input
            npz is unreadable.
        UsageError: ``out`` holds another run (see :func:`~scrfd_ref.formats.manifest.
            open_run`).
    """
    entries = read_datalist(datalist)
    _check_inputs(entries, datalist)
    graph = find_stages(model_path, profile.input_size)
    names = [Path(e).stem for e in entries]
    stages = [stage_record(graph, i, s) for i, s in enumerate(graph.stages)]
    fingerprints = input_fingerprints(entries)
    identity = {"model": model_path.name, "model_sha256": file_digest(model_path),
                "variant": variant or identify_variant(model_path),
                "profile": profile.to_dict(), "input_size": list(profile.input_size),
                "image_list_sha256": list_sha256(Path(e).name for e in entries),
                "inputs_sha256": list_sha256(fingerprints[Path(e).name][2] for e in entries),
                "cuts_format": CUTS_FORMAT}
    planned = _planned(stages, names)
    taken = {os.path.realpath(p) for p in [datalist, model_path, *entries]}
    clash = [p for p in planned if os.path.realpath(out / p) in taken]
    if clash:
        raise UsageError(f"--out {display(out)}: the cut folder's file {clash[0]} would replace "
                         "one of the inputs; write the cuts into another folder")
    run = open_run(out, CUTS_MANIFEST, "localize-cut", identity, overwrite=overwrite,
                   run_files=lambda folder: [folder / p for p in planned
                                             if (folder / p).is_file()],
                   outputs=planned, inputs=[datalist, *entries])
    with run:
        run.update(stages=stages, image_list=[Path(e).name for e in entries],
                   nodes_total=sum(len(s.nodes) for s in graph.stages))
        write_datalist(out / "images.txt", entries)
        run.record(out / "images.txt")
        for s, stage in zip(stages, graph.stages):
            for kind, build in (("prefix", prefix_model), ("segment", segment_model)):
                run.record(save_model(build(graph, stage), out / s[kind]["model"]))
        golden = GoldenRunner(graph)
        for i, entry in enumerate(tqdm(entries, desc="localize cut", unit="img",
                                       disable=not progress)):
            blob = preprocess([read_input_npz(entry)], profile)[0]
            tensors = golden.run(blob)
            tensors[graph.input_name] = blob
            for s, stage in zip(stages, graph.stages):
                seg = out / s["segment"]["inputs"] / f"{names[i]}.npz"
                seg.parent.mkdir(parents=True, exist_ok=True)
                run.record(write_cut_npz(seg, [tensors[t] for t in stage.inputs], "input"))
                gold = out / s["golden"] / OUTPUT_PATTERN.format(i)
                gold.parent.mkdir(parents=True, exist_ok=True)
                run.record(write_cut_npz(gold, [tensors[t] for t in stage.outputs], "output"))
        for s in stages:
            lines = [(out / s["segment"]["inputs"] / f"{n}.npz").resolve() for n in names]
            run.record(write_datalist(out / s["segment"]["datalist"], lines))
        run.finish(images=len(entries), files=len(planned), scrfd_ref=__version__)
    return run.doc


__all__ = ["CUTS_FORMAT", "CUTS_MANIFEST", "CUT_KINDS", "GoldenRunner", "boundary_tensors",
           "prefix_model", "segment_model", "stage_record", "stage_slug", "write_cuts"]
