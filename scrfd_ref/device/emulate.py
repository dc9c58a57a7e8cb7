"""Emulated honest devices closer to hardware than ONNX Runtime's CPU fp16, and a bf16
device that runs on any machine.

ONNX Runtime's CPU "fp16" model keeps fp32 islands (it inserts casts and runs some nodes in
fp32), so it is gentler than fp16 hardware, and ONNX Runtime has no bf16 CPU kernels at
all. :func:`round_storage` writes the model a device with reduced-precision storage and
fp32 accumulation computes: every float weight and every intermediate float tensor (the
input blob included) rounded to the nearest value of the storage type (``Cast`` to it and
back after each node; ONNX Runtime's ``Cast`` rounds to nearest, ties to even, for both
float16 and bfloat16), the arithmetic inside each node in fp32:

- ``fp16-storage``: IEEE float16 (11 significant bits, range +-65504);
- ``bf16-storage``: bfloat16 (8 significant bits, float32's range), what an accelerator
  with bf16 tensors and fp32 accumulators computes, and what OpenVINO's CPU plugin does
  with ``INFERENCE_PRECISION_HINT=bf16``.

Run it with graph optimisation disabled (``graph_optimization="disable"``), so no pass
folds the cast pairs away; :data:`RUN_OPTIONS` says so.

Not emulated (yet): fp16 / bf16 accumulation inside a convolution, and int8
requantisation with another rounding mode; the conformance gates file says which devices
set each bound.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from scrfd_ref.core.errors import DataMissingError
from scrfd_ref.formats import datadir as data_mod
from scrfd_ref.formats.files import file_digest

#: backend options an emulated model must run with (keep every rounding cast)
RUN_OPTIONS = {"graph_optimization": "disable"}
#: the storage emulations (:func:`round_storage`)
EMULATIONS = ("fp16-storage", "bf16-storage")
#: opset a bf16-storage model is upgraded to (``Cast`` to BFLOAT16 needs >= 13)
BF16_OPSET = 13


def _storage_type(emulation: str) -> int:
    import onnx

    return {"fp16-storage": onnx.TensorProto.FLOAT16,
            "bf16-storage": onnx.TensorProto.BFLOAT16}[emulation]


def round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 ``x`` rounded to the nearest bfloat16 value, ties to even, as float32 (what
    ONNX Runtime's ``Cast`` to BFLOAT16 computes; NaN stays NaN, Inf stays Inf)."""
    a = np.ascontiguousarray(x, dtype=np.float32)
    bits = a.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    out = rounded.astype(np.uint32).view(np.float32).reshape(a.shape)
    return np.where(np.isfinite(a), out, a)


def round_storage_values(x: np.ndarray, emulation: str) -> np.ndarray:
    """float32 ``x`` rounded to the storage type of ``emulation``, as float32."""
    if emulation == "fp16-storage":
        return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)
    if emulation == "bf16-storage":
        return round_bf16(x)
    raise ValueError(f"emulation {emulation!r} is not one of {', '.join(EMULATIONS)}")


def _float_tensors(model) -> set[str]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    floats = {v.name for v in (*g.value_info, *g.output, *g.input)
              if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    return floats


def round_storage(model, emulation: str = "fp16-storage"):
    """A copy of ``model`` (an ``onnx.ModelProto``) with the storage of ``emulation``
    (``fp16-storage`` or ``bf16-storage``; module docstring)."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    if emulation == "bf16-storage":   # Cast to BFLOAT16 exists from opset 13 on
        from scrfd_ref.device.model_files import upgrade_opset

        m = upgrade_opset(m, Path(m.graph.name or "model"), BF16_OPSET)
    floats = _float_tensors(m)
    g = m.graph
    for init in g.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            arr = round_storage_values(numpy_helper.to_array(init), emulation)
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    low, F32 = _storage_type(emulation), onnx.TensorProto.FLOAT

    def rounding(src: str, dst: str) -> list:
        return [helper.make_node("Cast", [src], [dst + "__h"], to=low, name=dst + "__to_h"),
                helper.make_node("Cast", [dst + "__h"], [dst], to=F32, name=dst + "__to_f")]

    nodes = []
    renamed: dict[str, str] = {}
    for inp in g.input:
        if inp.name in floats:
            renamed[inp.name] = inp.name + "__r"
            nodes += rounding(inp.name, renamed[inp.name])
    for n in g.node:
        for k, i in enumerate(n.input):
            if i in renamed:
                n.input[k] = renamed[i]
        outs = list(n.output)
        for k, o in enumerate(outs):
            if o in floats:
                n.output[k] = o + "__f32"
        nodes.append(n)
        for o in outs:
            if o in floats:
                nodes += rounding(o + "__f32", o)
    del g.node[:]
    g.node.extend(nodes)
    return m


def round_to_fp16(model):
    """:func:`round_storage` with fp16 storage (the first emulation's name)."""
    return round_storage(model, "fp16-storage")


def emulated_model(src: str | Path, emulation: str = "fp16-storage",
                   cache: str | Path | None = None) -> Path:
    """The ``emulation`` of ``src`` (an ONNX file, any layout), cached by content hash
    (run it with :data:`RUN_OPTIONS`)."""
    from scrfd_ref.core.errors import InputError
    from scrfd_ref.device.model_files import (
        cached_model_ok,
        load_checked_model,
        save_cached_model,
    )

    if emulation not in EMULATIONS:
        raise InputError(f"emulation {emulation!r} is not one of {', '.join(EMULATIONS)}")
    src = Path(src)
    if not src.is_file():
        raise DataMissingError(f"model file not found: {src}")
    key = hashlib.sha256(f"{file_digest(src)}|{emulation}|v2".encode()).hexdigest()[:16]
    target = data_mod.cache_dir(cache) / f"{src.stem}.{emulation}.{key}.onnx"
    if not cached_model_ok(target):
        save_cached_model(round_storage(load_checked_model(src), emulation), target,
                          made_from=src.name, emulation=emulation)
    return target
