"""Writing an int8 model: calibrate once, quantize, keep the head outputs in float, and
(default recipe) search which few nodes stay float.

What every int8 model gets, whatever the recipe:

- opset upgraded to 13 (per-channel ``QuantizeLinear`` / ``DequantizeLinear``);
- ONNX Runtime static QDQ quantization (``quantize_static``) with the recipe's
  calibration method, per-channel weights, ``QUInt8`` activations and ``QInt8`` weights;
- the flattening tail after each head conv (``Transpose`` / ``Reshape`` / ``Sigmoid``) is
  not quantized, and the ``QuantizeLinear`` / ``DequantizeLinear`` pair on each head
  conv's output is removed: the head convs compute in int8 (int8 inputs and weights) and
  hand their output over in float, as a device does when it writes fp16 head maps
  (seed-flow.md: the device layout ends at the head convs). Quantizing the sigmoid output
  to 1/255 steps would tie every low score the WIDER protocol ranks;
- calibration ranges are computed once per (model, method, images, preprocessing) and
  kept beside the model cache (ONNX Runtime's ``calibration_cache_path``), so a model
  that differs only in which nodes stay float re-quantizes without re-calibrating.

With ``mixed_precision`` (the default recipe) :mod:`scrfd_ref.quantize.mixed_precision`
picks the float nodes; the search, the per-node sensitivity and the int8 MAC share are
written beside the model as ``<model>.json`` (read by ``scrfd-ref quantize --report``).
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scrfd_ref.core.errors import InputError
from scrfd_ref.device.model_files import upgrade_opset
from scrfd_ref.formats.files import current_umask
from scrfd_ref.formats.run_outputs import record_entry, verified_entry
from scrfd_ref.quantize.calibration import _calibration_blob, _calibration_reader
from scrfd_ref.quantize.write import (
    _head_paths,
    _image_input,
    _quiet_ort_advice,
)

#: calibration images the sensitivity analysis compares activations on
SENSITIVITY_IMAGES = 4
#: histogram of the entropy (KL) calibration. ONNX Runtime's ``quantize_static`` cannot
#: pass these, and its defaults (128 bins, 128 quantized bins) leave the KL search one
#: candidate, the full range: its "Entropy" is then MinMax, byte for byte (measured on
#: 500m_bnkps). The ranges are computed here with ORT's own calibrator and handed over
#: through the calibration cache. 2048 / 128 are TensorRT's entropy-calibration values.
ENTROPY_OPTIONS = {"num_bins": 2048, "num_quantized_bins": 128}


def float_head_outputs(model: Any, head_convs: Sequence[str]) -> int:
    """Remove the Q/DQ pair on each head conv's output (in place); the number removed."""
    g = model.graph
    outputs = {n.output[0] for n in g.node if n.name in set(head_convs)}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    drop: set[str] = set()
    for t in outputs:
        for q in consumers.get(t, []):
            if q.op_type != "QuantizeLinear":
                continue
            for dq in consumers.get(q.output[0], []):
                if dq.op_type != "DequantizeLinear":
                    continue
                for c in consumers.get(dq.output[0], []):
                    for k, i in enumerate(c.input):
                        if i == dq.output[0]:
                            c.input[k] = t
                for o in g.output:
                    if o.name == dq.output[0]:
                        o.name = t
                drop.add(dq.name)
            drop.add(q.name)
    kept = [n for n in g.node if n.name not in drop]
    del g.node[:]
    g.node.extend(kept)
    return len(drop)


class Int8Builder:
    """Quantizes one source model with one recipe; :meth:`build` may be called for
    several sets of float nodes (the calibration is done once)."""

    def __init__(self, model: Any, src: Path, settings: dict[str, Any],
                 images: Sequence[Path], calibration_cache: Path, excluded: Sequence[str],
                 progress: bool = False) -> None:
        self.input_name, dims = _image_input(model, src)
        self.size = tuple(settings["input_size"])
        if dims[2] is not None and dims[3] is not None and (dims[3], dims[2]) != self.size:
            raise InputError(f"{src}: input is fixed at {dims[3]}x{dims[2]}, cannot calibrate "
                             f"at {self.size[0]}x{self.size[1]} (pass input_size=({dims[3]}, "
                             f"{dims[2]}))")
        self.model = upgrade_opset(model, src, settings["opset"])
        self.settings, self.images, self.progress = settings, list(images), progress
        self.cache = calibration_cache
        names = {n.name for n in self.model.graph.node}
        unknown = [n for n in settings.get("float_nodes", ()) if n not in names]
        if unknown:
            from scrfd_ref.core.errors import did_you_mean

            raise InputError(f"float node {unknown[0]!r}: no node of that name in {src.name}"
                             + did_you_mean(unknown[0], sorted(names), list_all=False))
        heads = _head_paths(self.model)
        self.head_convs = [conv for conv, _ in heads]
        self.always_float = sorted({t for _, tail in heads for t in tail} | set(excluded))

    def reader(self, images: Sequence[Path] | None = None, progress: bool = False) -> Any:
        """A fresh calibration data reader (the recipe's preprocessing)."""
        return _calibration_reader(self.images if images is None else images, self.input_name,
                                   self.size, profile=self.settings.get("calibration_profile"),
                                   progress=progress)

    def build(self, float_nodes: Sequence[str], dst: Path) -> Path:
        """Write the int8 model keeping ``float_nodes`` (plus the tail) in float."""
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        s = self.settings
        extra = {"CalibPercentile": s["percentile"]} if "percentile" in s else {}
        first = not verified_entry(self.cache, "calibration ranges")  # removed if damaged
        if first and s["calibrate_method"] == "Entropy":
            self._entropy_ranges()
        # ORT's calibrators print their progress on stdout: only with a progress bar
        chatter = contextlib.nullcontext() if self.progress else contextlib.redirect_stdout(
            io.StringIO())
        with _quiet_ort_advice(), chatter:
            quantize_static(copy.deepcopy(self.model), str(dst),
                            self.reader(progress=self.progress and first),
                            quant_format=QuantFormat.QDQ, per_channel=s["per_channel"],
                            reduce_range=s["reduce_range"],
                            activation_type=getattr(QuantType, s["activation_type"]),
                            weight_type=getattr(QuantType, s["weight_type"]),
                            calibrate_method=getattr(CalibrationMethod, s["calibrate_method"]),
                            nodes_to_exclude=[*self.always_float, *float_nodes],
                            extra_options=extra, calibration_cache_path=str(self.cache))
        if first and self.cache.is_file():  # ORT writes it 0600: the user's umask instead
            os.chmod(self.cache, 0o666 & ~current_umask())
            record_entry(self.cache)
        import onnx

        model = onnx.load(str(dst))
        float_head_outputs(model, self.head_convs)
        onnx.save(model, str(dst))
        return dst

    def _entropy_ranges(self) -> None:
        """KL-calibrated ranges with :data:`ENTROPY_OPTIONS`, saved as the calibration
        cache ``quantize_static`` then reads."""
        import onnx
        from onnxruntime.quantization import CalibrationMethod
        from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

        with tempfile.TemporaryDirectory(prefix="scrfd-entropy.") as tmp:
            src = Path(tmp) / "model.onnx"
            onnx.save(self.model, str(src))
            calibrator = create_calibrator(src, None, augmented_model_path=str(
                Path(tmp) / "augmented.onnx"), calibrate_method=CalibrationMethod.Entropy,
                extra_options=dict(ENTROPY_OPTIONS))
            chatter = (contextlib.nullcontext() if self.progress
                       else contextlib.redirect_stdout(io.StringIO()))
            with chatter:
                calibrator.collect_data(self.reader(progress=self.progress))
                ranges = calibrator.compute_data()
            save_tensors_data(ranges, self.cache)

    def sensitivity(self, qdq: Path) -> list[Any]:
        """Per-node sensitivity of ``qdq`` on the first calibration images."""
        from scrfd_ref.quantize.sensitivity import node_sensitivity

        some = self.images[:SENSITIVITY_IMAGES]
        profile = _profile(self.settings)
        return node_sensitivity(self.model, qdq, lambda: self.reader(some),
                                _calibration_blob(some[0], profile))


def _profile(settings: dict[str, Any]) -> Any:
    """The calibration :class:`~scrfd_ref.core.profiles.Profile` of conversion settings
    (input size included)."""
    from scrfd_ref.core.profiles import profile_from_dict

    return profile_from_dict(settings["calibration_profile"])


def _detections(model_path: Path, images: Sequence[Path], size: tuple[int, int],
                dtype: str) -> list[Any]:
    """Detections of a model over images with the widerface-eval profile (every score
    the WIDER protocol ranks)."""
    from scrfd_ref.backends import get_backend
    from scrfd_ref.detector import Detector
    from scrfd_ref.formats.images import read_image

    det = Detector(get_backend("ort", model_path, dtype=dtype), profile="widerface-eval",
                   input_size=size)
    try:
        return [det.detect(read_image(p)) for p in images]
    finally:
        det.close()


def write_int8(model: Any, src: Path, dst: Path, settings: dict[str, Any],
               images: Sequence[Path], excluded: Sequence[str], calibration_cache: Path,
               progress: bool = False) -> dict[str, Any]:
    """Write the int8 model of ``settings`` to ``dst``; returns the sidecar record (search,
    sensitivity, int8 MAC share)."""
    from scrfd_ref.quantize.mixed_precision import GT_FLOOR, agreement_ap, search
    from scrfd_ref.quantize.sensitivity import int8_mac_share

    b = Int8Builder(model, src, settings, images, calibration_cache, excluded, progress)
    with tempfile.TemporaryDirectory(prefix="scrfd-int8.", dir=dst.parent) as tmp:
        fixed = tuple(settings.get("float_nodes", ()))    # the recipe's own float nodes
        base = b.build(fixed, Path(tmp) / "base.onnx")
        ranked = b.sensitivity(base)
        record: dict[str, Any] = {"settings": settings,
                                  "sensitivity": [r.to_dict() for r in ranked]}
        chosen = base
        reference = (_detections(src, b.images, b.size, "fp32")
                     if settings.get("mixed_precision") else [])
        if settings.get("mixed_precision") and not any(
                (d.scores >= GT_FLOOR).any() for d in reference):
            record["search_skipped"] = (f"the fp32 model finds no face scored >= {GT_FLOOR} "
                                        "in the calibration images: nothing to agree on")
        elif settings.get("mixed_precision"):
            built: dict[tuple[str, ...], Path] = {(): base}

            def build(nodes: tuple[str, ...]) -> Path:
                if nodes not in built:
                    built[nodes] = b.build(fixed + nodes, Path(tmp) / f"step{len(built)}.onnx")
                return built[nodes]

            def score(path: Path) -> float:
                return agreement_ap(reference, _detections(path, b.images, b.size, "int8"))

            result = search(ranked, build, score, target=settings["target"],
                            limit=settings["candidates"],
                            min_int8_share=settings["min_int8_share"])
            chosen = built[result.float_nodes]
            record["search"] = result.to_dict()
        float_set = set(record.get("search", {}).get("float_nodes", []))
        share = int8_mac_share(ranked) - sum(r.macs_share for r in ranked
                                             if r.name in float_set and r.int8)
        record["int8_mac_share"] = share
        record["latency_ms"] = _latencies(src, base, chosen, b)
        shutil.copyfile(chosen, dst)
    return record


#: timed runs (after one warm-up) per model for the float-node cost
LATENCY_RUNS = 15


def median_latency_ms(model_path: Path, blob: np.ndarray, runs: int = LATENCY_RUNS) -> float:
    """Median wall time of one ONNX Runtime inference (default CPU provider and graph
    optimisation, the kernels a deployment uses) on ``blob``, in ms."""
    import time

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: blob}
    sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def _latencies(src: Path, base: Path, chosen: Path, b: Int8Builder) -> dict[str, float]:
    """What the float nodes cost: median latency of the fp32 model, the all-int8 model and
    the chosen one on one calibration blob (same process, back to back)."""
    blob = _calibration_blob(b.images[0], _profile(b.settings))
    out = {"fp32": median_latency_ms(src, blob), "all_int8": median_latency_ms(base, blob)}
    out["chosen"] = out["all_int8"] if chosen == base else median_latency_ms(chosen, blob)
    return out


def write_sidecar(model_path: Path, record: dict[str, Any]) -> Path:
    """``<model>.json`` beside a converted model (written atomically)."""
    from scrfd_ref.formats.files import write_text

    path = model_path.with_suffix(".json")
    write_text(path, json.dumps(record, indent=1, default=_plain) + "\n")
    return path


def _plain(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return str(v)
