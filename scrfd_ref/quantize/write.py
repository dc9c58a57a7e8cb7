"""Writing converted model files: load the source, find the heads, write fp16 or int8.

:func:`scrfd_ref.quantize.convert.convert_model` decides what to write and caches it;
this module holds the shared pieces: :func:`scrfd_ref.device.model_files.load_checked_model` checks the source and names its
nodes; :func:`_write_fp16` converts to float16, the opset upgrade and head finding serve
the int8 writer (:mod:`scrfd_ref.quantize.int8_build`), and the file helpers give a
temporary name beside the target and a per-file lock.

``keep_heads_float=True`` keeps each head in float: the last ``Conv`` before each
output (:func:`head_conv_names`) and the flattening tail behind it (learned ``Mul``
scale, ``Transpose``, ``Reshape``, ``Sigmoid``) are excluded from quantization (int8:
``nodes_to_exclude``) or from the float16 conversion (fp16: ``node_block_list``).
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

from scrfd_ref.core.errors import InputError, LayoutError

#: ops walked back through from a graph output to its head conv
_TAIL_LIMIT = 16


def head_conv_names(model: Any) -> list[str]:
    """Names of the head convs: the last ``Conv`` before each graph output, in output order.

    Args:
        model: an ``onnx.ModelProto`` (nodes must be named).

    Raises:
        LayoutError: an output is not reached from a ``Conv`` through a short tail.
    """
    return [conv for conv, _ in _head_paths(model)]


def head_node_names(model: Any) -> list[str]:
    """Head convs plus the tail nodes between each of them and its output (deduplicated)."""
    names: list[str] = []
    for conv, tail in _head_paths(model):
        names += [n for n in (conv, *tail) if n not in names]
    return names


# ----------------------------------------------------------------------------- source model

def _image_input(model: Any, src: Path) -> tuple[str, tuple[int | None, ...]]:
    """Name and shape (None for dynamic dims) of the model's one NCHW image input."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        raise InputError(f"{src}: expected one NCHW image input, got "
                         f"{[i.name for i in inputs]}")
    dims = tuple(d.dim_value if d.HasField("dim_value") else None
                 for d in inputs[0].type.tensor_type.shape.dim)
    return inputs[0].name, dims


# ----------------------------------------------------------------------------- heads

def _head_paths(model: Any) -> list[tuple[str, tuple[str, ...]]]:
    """Per graph output: (head conv name, names of the tail nodes after it)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    consts = {i.name for i in model.graph.initializer}
    consts |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    return [_walk_to_conv(o.name, producers, consts) for o in model.graph.output]


def _walk_to_conv(output: str, producers: dict[str, Any],
                  consts: set[str]) -> tuple[str, tuple[str, ...]]:
    tail: list[str] = []
    tensor = output
    for _ in range(_TAIL_LIMIT):
        node = producers.get(tensor)
        if node is None:
            break
        if node.op_type == "Conv":
            return node.name, tuple(tail)
        tail.append(node.name)
        data = [i for i in node.input if i and i not in consts and i in producers]
        if not data:
            break
        tensor = data[0]
    raise LayoutError(f"graph output {output!r} is not reached from a Conv through a short "
                      "tail (not an SCRFD head?)")


# ----------------------------------------------------------------------------- writers

def _write_fp16(model: Any, dst: Path, excluded: Sequence[str]) -> None:
    import onnx
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        # "the float32 number 1e-09 will be truncated to 1e-07": expected for fp16
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(
            model, keep_io_types=True, node_block_list=list(excluded) or None)
    onnx.save(converted, str(dst))


# ----------------------------------------------------------------------------- ORT logging

class _DropAdvice(logging.Filter):
    """Drops ORT's "consider pre-processing before quantization" advice, and its note that
    a rank-1 weight (the learned box scale of 1g / 10g / 34g) gets one scale instead of
    per-channel ones (what per-channel means for a scalar per channel anyway)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("pre-processing before quantization" in text
                    or ("is out-of-range for weight" in text and "rank 1" in text))


@contextlib.contextmanager
def _quiet_ort_advice() -> Iterator[None]:
    root = logging.getLogger()
    flt = _DropAdvice()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


__all__ = ["head_conv_names", "head_node_names"]
