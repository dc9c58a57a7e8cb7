"""Emulated honest devices closer to hardware than ONNX Runtime's CPU fp16.

ONNX Runtime's CPU "fp16" model keeps fp32 islands (it inserts casts and runs some nodes in
fp32), so it is gentler than fp16 hardware. :func:`fp16_storage_model` writes the model a
device with fp16 storage and fp32 accumulation computes: every float weight and every
intermediate float tensor (the input blob included) rounded to the nearest fp16 value
(``Cast`` to float16 and back after each node), the arithmetic inside each node in fp32.
Run it with graph optimisation disabled (``graph_optimization="disable"``), so no pass
folds the cast pairs away; :data:`RUN_OPTIONS` says so.

Not emulated (yet): fp16 accumulation inside a convolution, and int8 requantisation with
another rounding mode; the conformance gates file says which devices set each bound.
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
EMULATIONS = ("fp16-storage",)


def _float_tensors(model) -> set[str]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    floats = {v.name for v in (*g.value_info, *g.output, *g.input)
              if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    return floats


def round_to_fp16(model):
    """A copy of ``model`` (an ``onnx.ModelProto``) with fp16 storage (module docstring)."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    floats = _float_tensors(m)
    g = m.graph
    for init in g.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            arr = numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    F16, F32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT

    def rounding(src: str, dst: str) -> list:
        return [helper.make_node("Cast", [src], [dst + "__h"], to=F16, name=dst + "__to_h"),
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


def emulated_model(src: str | Path, emulation: str = "fp16-storage",
                   cache: str | Path | None = None) -> Path:
    """The ``emulation`` of ``src`` (an ONNX file, any layout), cached by content hash."""
    import onnx

    from scrfd_ref.core.errors import InputError
    from scrfd_ref.device.onnx_tools import save_model
    from scrfd_ref.device.quantize import cached_model_ok

    if emulation not in EMULATIONS:
        raise InputError(f"emulation {emulation!r} is not one of {', '.join(EMULATIONS)}")
    src = Path(src)
    if not src.is_file():
        raise DataMissingError(f"model file not found: {src}")
    key = hashlib.sha256(f"{file_digest(src)}|{emulation}|v1".encode()).hexdigest()[:16]
    target = data_mod.cache_dir(cache) / f"{src.stem}.{emulation}.{key}.onnx"
    if not cached_model_ok(target):
        save_model(round_to_fp16(onnx.load(str(src))), target)
    return target
