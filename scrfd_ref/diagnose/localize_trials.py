"""How well localize works on a model: honest devices and faults injected into single nodes.

``scrfd-ref localize trials`` measures the two numbers a device team needs before it
trusts a named stage: how often an **honest** device (same model, another arithmetic) gets
"no stage" on image sets the bands were not measured on, and how often a **fault** injected
into one ONNX node (:mod:`scrfd_ref.device.node_faults`) is named in the stage that holds
the node. Bands can be measured here too (:func:`measure_bands`): the lowest segment and
channel SNR honest devices of each dtype reach on each kind of stage, less a margin.

A trial runs the same code as ``localize judge`` (:func:`~scrfd_ref.diagnose.
localize_folder.judge_stages`) on arrays: the goldens and each honest device's segment
outputs are computed once per image set; a fault trial rebuilds only the segment that holds
the faulted node (the other segments read fp32 golden inputs, so their outputs are the
honest device's), exactly what the device would hand back for every cut.
"""
from __future__ import annotations

import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnx

from scrfd_ref.device.cuts import write_cuts
from scrfd_ref.device.node_faults import eligible_nodes, inject_node_fault
from scrfd_ref.diagnose.localize import Band, Bands, output_scores, score_stage
from scrfd_ref.diagnose.localize_folder import judge_stages
from scrfd_ref.diagnose.localize_run import DEVICE_DTYPES, segment_feeds
from scrfd_ref.formats.cut_npz import read_cut_npz
from scrfd_ref.formats.device_npz import OUTPUT_PATTERN
from scrfd_ref.quantize.cut_builds import build_cut_runner, built_model

#: devices whose outputs are honest (the bands are measured on them)
HONEST_DEVICES = ("ort/fp16", "ort/int8", "ort/fp16-storage", "ort/bf16-storage",
                  "openvino/fp32", "openvino/int8", "openvino/bf16")
#: devices faults are injected into
FAULT_DEVICES = ("ort/fp32", "ort/fp16", "ort/int8", "openvino/fp32", "openvino/int8")
#: faults of the float graph (``int8_scale`` is injected into a QDQ build, ort/int8 only)
FLOAT_FAULTS = ("conv_weight_scale", "conv_bias_drop", "relu_clip6", "relu_identity",
                "resize_mode", "add_drop", "pad_shift")


@dataclass(frozen=True)
class TrialResult:
    """One trial: what was run and what localize named."""

    variant: str
    image_set: str
    device: str
    fault: str            # "honest" for an honest device
    node: str | None
    expected: str | None  # the stage holding the node (None: no stage)
    named: str | None
    effect_db: float | None = None  # faulty vs honest build of the segment (SNR, dB)
    margin_db: float | None = None  # closest any stage comes to its band (negative: outside)
    scores: tuple = ()              # (stage, segment SNR, worst channel SNR) per stage
    observable: bool = True         # the fault moves its stage beyond the honest band

    @property
    def correct(self) -> bool:
        """Named the expected stage (or no stage for an honest device); for a fault whose
        effect stays inside the honest band of its dtype (not observable: no comparison
        with a reference can tell it from an honest device), its stage or no stage."""
        if not self.observable:
            return self.named in (None, self.expected)
        return self.named == self.expected


class ImageSet:
    """Cuts, goldens and segment inputs of one model on one image set (in memory)."""

    def __init__(self, cuts: Path, doc: Mapping[str, Any]) -> None:
        self.cuts, self.doc = cuts, doc
        images = int(doc["images"])
        self.goldens = {s["slug"]: [read_cut_npz(cuts / s["golden"] / OUTPUT_PATTERN.format(i),
                                                 [o["shape"] for o in s["outputs"]])
                                    for i in range(images)] for s in doc["stages"]}
        self.feeds = {s["slug"]: segment_feeds(cuts, doc, s) for s in doc["stages"]}
        self._honest: dict[str, dict[str, list]] = {}

    def run_segment(self, stage: Mapping[str, Any], device: str, model: Path,
                    work: Path) -> list[list[np.ndarray]]:
        """Outputs of one segment model (any file) built as ``device``."""
        feeds = self.feeds[stage["slug"]]
        with build_cut_runner(model, device, feeds, work) as runner:
            return [runner.run(f) for f in feeds]

    def release(self) -> None:
        """Forget the device outputs computed so far (memory)."""
        self._honest.clear()

    def honest(self, device: str, work: Path) -> dict[str, list]:
        """Every segment's outputs as ``device`` builds it (computed once)."""
        if device not in self._honest:
            self._honest[device] = {
                s["slug"]: self.run_segment(s, device, self.cuts / s["segment"]["model"], work)
                for s in self.doc["stages"]}
        return self._honest[device]

    def judge(self, outputs: Mapping[str, list], device: str,
              bands: Bands) -> tuple[str | None, float, tuple]:
        """The stage localize names for these segment outputs (None: no stage), the
        closest any stage comes to its band (dB; negative: outside) and every stage's
        ``(name, SNR, worst channel SNR)``."""
        dtype = DEVICE_DTYPES[device]
        result = judge_stages(self.doc["stages"], self.goldens, outputs, bands, dtype=dtype,
                              device=device, variant=self.doc["identity"].get("variant"))
        margin = min(min(s.snr_db - s.band.snr_db, s.channel_snr_db - s.band.channel_snr_db)
                     for s in result.stages)
        scores = tuple((s.name, round(s.snr_db, 2), round(s.channel_snr_db, 2))
                       for s in result.stages)
        return (result.named.name if result.named else None), round(margin, 2), scores


def make_image_set(model: Path, datalist: Path, folder: Path, profile: Any) -> ImageSet:
    """Cut ``model`` for the images of ``datalist`` into ``folder`` and load it."""
    doc = write_cuts(model, datalist, folder, profile, overwrite=True, progress=False)
    return ImageSet(folder, doc)


def segment_scores(image_set: ImageSet, device: str, work: Path) -> list[dict[str, Any]]:
    """Each stage's segment SNR and worst channel SNR for an honest ``device``."""
    outputs = image_set.honest(device, work)
    band = Band(-1e9, -1e9, "none")
    out = []
    for s in image_set.doc["stages"]:
        score = score_stage(s["index"], s, image_set.goldens[s["slug"]], outputs[s["slug"]], band)
        out.append({"device": device, "dtype": DEVICE_DTYPES[device], "kind": s["kind"],
                    "variant": image_set.doc["identity"].get("variant"),
                    "stage": s["name"], "snr_db": score.snr_db,
                    "channel_snr_db": score.channel_snr_db})
    return out


def _lowest(rows: Sequence[Mapping[str, Any]], margin: float) -> dict[str, Any]:
    snr = min(r["snr_db"] for r in rows)
    chan = min(r["channel_snr_db"] for r in rows)
    return {"snr_db": float(np.floor(2 * (snr - margin)) / 2),
            "channel_snr_db": float(np.floor(2 * (chan - margin)) / 2),
            "lowest_db": (round(snr, 1), round(chan, 1)), "n": len(rows),
            "devices": sorted({r["device"] for r in rows}),
            "variants": sorted({r.get("variant", "?") for r in rows})}


def measure_bands(scores: Sequence[Mapping[str, Any]], margin_db: Mapping[str, float]
                  ) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[tuple, dict[str, Any]]]:
    """Bands from honest segment scores (rows of :func:`segment_scores` with a ``variant``):
    per dtype and stage kind (every variant), and per variant, dtype and stage: the lowest
    SNR and worst channel SNR seen, less ``margin_db[dtype]`` (rounded down to 0.5 dB)."""
    by_kind: dict[tuple[str, str], list] = {}
    by_stage: dict[tuple[str, str, str], list] = {}
    for row in scores:
        by_kind.setdefault((row["dtype"], row["kind"]), []).append(row)
        if row.get("variant"):   # stage bands only for a model known as a variant
            by_stage.setdefault((row["variant"], row["dtype"], row["stage"]), []).append(row)
    kinds: dict[str, dict[str, dict[str, Any]]] = {}
    for (dtype, kind), rows in by_kind.items():
        kinds.setdefault(dtype, {})[kind] = _lowest(rows, margin_db[dtype])
    stages = {key: _lowest(rows, margin_db[key[1]]) for key, rows in by_stage.items()}
    return kinds, stages


def _int8_scale_outputs(image_set: ImageSet, stage: Mapping[str, Any], node: str,
                        work: Path) -> list[list[np.ndarray]] | None:
    """The segment built as ort/int8, then one activation scale doubled (None: not eligible)."""
    import onnxruntime as ort

    model = image_set.cuts / stage["segment"]["model"]
    feeds = image_set.feeds[stage["slug"]]
    with build_cut_runner(model, "ort/int8", feeds, work):
        built = onnx.load(str(built_model(model, "ort/int8", work)))
    if node not in eligible_nodes(built, "int8_scale"):
        return None
    broken = inject_node_fault(built, node, "int8_scale")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.log_severity_level = 3
    sess = ort.InferenceSession(broken.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return [[np.asarray(a, np.float32) for a in sess.run(names, f)] for f in feeds]


def fault_trial(image_set: ImageSet, variant: str, set_name: str, device: str, fault: str,
                node: str, bands: Bands,
                work: Path) -> TrialResult | None:
    """Inject ``fault`` into ``node``, run its segment as ``device``, judge every stage."""
    stage = next(s for s in image_set.doc["stages"] if node in s["nodes"])
    if fault == "int8_scale":
        broken = _int8_scale_outputs(image_set, stage, node, work)
        if broken is None:
            return None
    else:
        seg = image_set.cuts / stage["segment"]["model"]
        faulty = inject_node_fault(onnx.load(str(seg)), node, fault)
        path = work / f"{seg.stem}.{fault}.onnx"
        path.write_bytes(faulty.SerializeToString())
        broken = image_set.run_segment(stage, device, path, work)
    outputs = dict(image_set.honest(device, work))
    honest = outputs[stage["slug"]]
    effect = min(output_scores([h[k] for h in honest], [b[k] for b in broken])["snr_db"]
                 for k in range(len(honest[0])))
    outputs[stage["slug"]] = broken
    named, margin, scores = image_set.judge(outputs, device, bands)
    # a fault whose effect on the device's own output is smaller than the honest noise of
    # its dtype at that stage (SNR of faulty vs honest build above the stage's band) cannot
    # be told from an honest device: "no stage" is then right too
    band = bands.band(DEVICE_DTYPES[device], stage["kind"], stage["name"],
                      image_set.doc["identity"].get("variant"))
    return TrialResult(variant, set_name, device, fault, node, stage["name"], named, effect,
                       margin, scores, observable=effect < band.snr_db)


def pick_nodes(image_set: ImageSet, fault: str, seed: int) -> list[str]:
    """One node per stage the fault applies to (seeded choice among the stage's nodes)."""
    rng = random.Random(seed)
    if fault == "int8_scale":
        candidates = [n for s in image_set.doc["stages"] for n, op in
                      zip(s["nodes"], s["op_types"]) if op == "Conv"]
    else:
        merged = set()
        for s in image_set.doc["stages"]:
            seg = onnx.load(str(image_set.cuts / s["segment"]["model"]))
            merged.update(eligible_nodes(seg, fault))
        candidates = [n for s in image_set.doc["stages"] for n in s["nodes"] if n in merged]
    eligible = set(candidates)
    chosen = []
    for s in image_set.doc["stages"]:
        mine = [n for n in s["nodes"] if n in eligible]
        if mine:
            chosen.append(rng.choice(mine))
    return chosen


SetFactory = Callable[[], ImageSet]


def run_trials(plan: Sequence[tuple[str, Sequence[tuple[str, SetFactory]]]], bands: Bands,
               *, faults: Sequence[str], fault_devices: Sequence[str],
               honest_devices: Sequence[str], seed: int = 0,
               report: Callable[[TrialResult], None] | None = None,
               release: Callable[[ImageSet], None] | None = None) -> list[TrialResult]:
    """Per variant of ``plan`` (``(variant, [(set name, make the ImageSet)])``): honest
    trials on every image set, and fault trials (each fault in one node per eligible stage,
    the trials dealt to the image sets in turn). One image set is in memory at a time
    (``release`` is called when it is done: its goldens and device outputs are large)."""
    results: list[TrialResult] = []
    with tempfile.TemporaryDirectory(prefix="scrfd-localize-") as tmp:
        work = Path(tmp)

        def keep(r: TrialResult | None) -> None:
            if r is not None:
                results.append(r)
                if report:
                    report(r)

        for variant, sets in plan:
            first = sets[0][1]()
            dealt: list[list[tuple[str, str, str]]] = [[] for _ in sets]
            turn = 0
            for fault in faults:
                devices = ["ort/int8"] if fault == "int8_scale" else list(fault_devices)
                for node in pick_nodes(first, fault, seed):
                    for device in devices:
                        dealt[turn % len(sets)].append((fault, node, device))
                        turn += 1
            for j, (name, make) in enumerate(sets):
                image_set = first if j == 0 else make()
                for device in honest_devices:
                    named, margin, scores = image_set.judge(image_set.honest(device, work),
                                                            device, bands)
                    keep(TrialResult(variant, name, device, "honest", None, None, named,
                                     margin_db=margin, scores=scores))
                for fault, node, device in dealt[j]:
                    keep(fault_trial(image_set, variant, name, device, fault, node, bands,
                                     work))
                if release is not None:
                    release(image_set)
                del image_set
                first = None
    return results


def trial_table(results: Sequence[TrialResult]) -> dict[str, Any]:
    """Counts per fault x device (and per honest device): ``[trials, correct]`` of the
    honest and observable fault trials in ``table``, of the faults inside the honest noise
    in ``below_noise``; the distinct (variant, stage) pairs each fault was put in."""
    table: dict[str, dict[str, list[int]]] = {}
    below: dict[str, dict[str, list[int]]] = {}
    for r in results:
        row = (table if r.observable else below).setdefault(r.fault, {}).setdefault(
            r.device, [0, 0])
        row[0] += 1
        row[1] += int(r.correct)
    stages = {f: len({(r.variant, r.expected) for r in results
                      if r.fault == f and r.expected is not None})
              for f in {r.fault for r in results}}
    return {"table": table, "below_noise": below, "stages": stages,
            "trials": [asdict(r) | {"correct": r.correct} for r in results]}


__all__ = ["FAULT_DEVICES", "FLOAT_FAULTS", "HONEST_DEVICES", "ImageSet", "TrialResult",
           "fault_trial", "make_image_set", "measure_bands", "pick_nodes", "run_trials",
           "segment_scores", "trial_table"]
