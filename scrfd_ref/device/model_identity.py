"""Is this file the variant its name says? A model file is what its graph is, not what it is
called: weights saved under another variant's name (1g weights as
``scrfd_500m_bnkps.onnx``) would run as that variant, and a landmark variant would then
report ``landmarks: null`` with exit 0.

:func:`variant_problem` reads the heads from the graph (:func:`~scrfd_ref.device.onnx_tools.
find_heads`) and compares them with what the variant has: three strides of score and box
heads, and landmark heads exactly for the ``_bnkps`` variants. Variants with the same heads
(500m, 1g, 2.5g, 10g, 34g; or the three ``_bnkps``) cannot be told apart this way; the
file's name then stays the only evidence, and reports name the file and its sha256.

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


def check_variant(model: str | Path, variant: str) -> None:
    """Raise :class:`InputError` when ``model`` is not the ``variant`` its name says."""
    problem = variant_problem(model, variant)
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
