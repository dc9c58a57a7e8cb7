"""Is this file the variant its name says? A model file is what its graph is, not what it is
called: weights saved under another variant's name (1g weights as
``scrfd_500m_bnkps.onnx``) would run as that variant, and a landmark variant would then
report ``landmarks: null`` with exit 0.

:func:`variant_problem` reads the heads from the graph (:func:`~scrfd_ref.device.onnx_tools.
find_heads`) and compares them with what the variant has: three strides of score and box
heads, and landmark heads exactly for the ``_bnkps`` variants. Variants with the same heads
(500m, 1g, 2.5g, 10g, 34g; or the three ``_bnkps``) are told apart by their compute
(:func:`compute_problem`): each name states its regime in GMACs at 640 x 480.

:func:`model_arithmetic` reads what a file computes in (int8 QDQ nodes, bf16 Casts, fp16
weights): a pre-built int8 or fp16 file is run and labelled as that dtype, never as fp32.
"""
from __future__ import annotations

from pathlib import Path

from scrfd_ref.core.errors import InputError
from scrfd_ref.formats.datadir import VARIANTS


def variant_problem(model: str | Path, variant: str) -> str | None:
    """Why ``model``'s graph is not a ``variant`` (None when its heads fit it).

    Raises:
        InputError: the file is not a readable SCRFD model (from head finding).
    """
    from scrfd_ref.device.onnx_tools import find_heads

    spec = VARIANTS.get(variant)
    if spec is None:
        return None
    heads = find_heads(model)
    kinds = {(h.kind, h.stride) for h in heads}
    has_kps = any(k == "kps" for k, _ in kinds)
    if has_kps != spec.landmarks:
        looks = ("a variant with landmark heads (500m_bnkps, 2.5g_bnkps, 10g_bnkps)"
                 if has_kps else "a variant without landmark heads (500m, 1g, 2.5g, 10g, 34g)")
        return (f"{Path(model).name} is named as SCRFD {variant} but its graph is "
                f"{looks}: {len(heads)} heads, landmarks {'present' if has_kps else 'absent'}")
    return None


#: the compute a variant's name states: GMACs at VGA (640 x 480), the SCRFD paper's regimes
#: (its "GFLOPs" count multiply-accumulates, as mmdet's get_flops does)
NOMINAL_GMACS = {"500m": 0.5, "1g": 1.0, "2.5g": 2.5, "10g": 10.0, "34g": 34.0}
#: how far a file's compute may be from its name's (adjacent regimes are 2x and more apart)
GMACS_FACTOR = 1.4
_VGA = (640, 480)


def model_gmacs(model: str | Path) -> float:
    """GMACs of one 640 x 480 image through ``model`` (a model fixed to another size is run
    at that size and scaled by the area: convolutions cost in proportion to it), kept in
    the model cache under the file's sha256 (counting runs the graph once)."""
    import json

    from scrfd_ref.formats import datadir as data_mod
    from scrfd_ref.formats.files import file_digest, write_text
    from scrfd_ref.formats.run_outputs import record_entry, verified_entry
    from scrfd_ref.formats.strict import json_loads, regular_file_text

    entry = data_mod.cache_dir() / f"compute.{file_digest(model)[:24]}.json"
    if verified_entry(entry, "cached model compute"):   # the caches' one rule: as recorded
        return float(json_loads(regular_file_text(entry))["gmacs_vga"])
    value = _count_gmacs(model)
    write_text(entry, json.dumps({"model": Path(model).name, "gmacs_vga": value}) + "\n")
    record_entry(entry)
    return value


def _count_gmacs(model: str | Path) -> float:
    import numpy as np
    import onnx

    from scrfd_ref.device.model_summary import conv_macs

    proto = onnx.load(str(model))
    inp = proto.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in inp.type.tensor_type.shape.dim]
    h, w = (dims[2], dims[3]) if len(dims) == 4 and dims[2] > 0 and dims[3] > 0 else _VGA[::-1]
    macs = sum(conv_macs(proto, inp.name, np.zeros((1, 3, h, w), np.float32)).values())
    return macs * (_VGA[0] * _VGA[1]) / (w * h) / 1e9


def compute_problem(model: str | Path, variant: str) -> str | None:
    """Why ``model``'s compute is not the one ``variant``'s name states (None when it is
    within :data:`GMACS_FACTOR`): weights of another regime with the same heads (2.5g_bnkps
    saved as 500m_bnkps) are told apart by what they compute."""
    import math

    nominal = NOMINAL_GMACS.get(variant.split("_")[0])
    if nominal is None:
        return None
    gmacs = model_gmacs(model)
    if nominal / GMACS_FACTOR <= gmacs <= nominal * GMACS_FACTOR:
        return None
    like = min(NOMINAL_GMACS, key=lambda k: abs(math.log(gmacs / NOMINAL_GMACS[k])))
    return (f"{Path(model).name} is named as SCRFD {variant} ({nominal:g} GMACs at 640x480, "
            f"the compute its name states) but its graph computes {gmacs:.2f} GMACs: it looks "
            f"like a {like} variant")


def check_variant(model: str | Path, variant: str) -> None:
    """Raise :class:`InputError` when ``model`` is not the ``variant`` its name says (its
    heads, then its compute)."""
    problem = variant_problem(model, variant) or compute_problem(model, variant)
    if problem:
        raise InputError(f"{problem}; put the right weights under that name, or pass the "
                         "file's path instead of the variant name")


#: ONNX node types that make a graph integer arithmetic (QDQ and the fused QOperator forms)
_INT8_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger",
             "MatMulInteger", "QLinearMatMul")
_FLOAT16, _BFLOAT16 = 10, 16   # onnx.TensorProto.FLOAT16 / BFLOAT16


def model_arithmetic(model: str | Path) -> tuple[str, str]:
    """The dtype a model file computes in, read from its graph, and the evidence.

    ``int8``: QuantizeLinear / DequantizeLinear (or QOperator) nodes; ``bf16``: Casts to
    bfloat16 (the bf16-storage emulation); ``fp16``: most float weights stored as float16;
    else ``fp32``. A file's name or a ``--dtype`` option does not change what it computes.

    Raises:
        InputError: the file is not a readable ONNX model.
    """
    import onnx

    try:
        graph = onnx.load(str(model), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001 - protobuf raises many kinds for a bad file
        raise InputError(f"{model}: not a readable ONNX model ({type(exc).__name__})") from None
    ops: dict[str, int] = {}
    for node in graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    quant = sum(ops.get(op, 0) for op in _INT8_OPS)
    if quant:
        return "int8", f"{quant} quantization node(s) ({', '.join(op for op in _INT8_OPS if op in ops)})"
    bf16_casts = sum(1 for node in graph.node if node.op_type == "Cast" and any(
        a.name == "to" and a.i == _BFLOAT16 for a in node.attribute))
    if bf16_casts:
        return "bf16", f"{bf16_casts} Cast(s) to bfloat16"
    floats = [t for t in graph.initializer if t.data_type in (1, _FLOAT16)]
    half = sum(1 for t in floats if t.data_type == _FLOAT16)
    if floats and half * 2 > len(floats):
        return "fp16", f"{half} of {len(floats)} float weights stored as float16"
    return "fp32", "float32 weights, no quantization nodes"
