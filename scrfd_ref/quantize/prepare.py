"""Derived models, built once and cached by content hash: device layout, then dtype.

``prepare_model(src, layout="device", dtype="fp16")`` cuts the standard export to the
device layout (fixed input size) and converts it to fp16, returning a cached file path;
the same request later returns the same file without rebuilding.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from scrfd_ref.core.errors import DataMissingError, InputError
from scrfd_ref.formats import datadir as data_mod
from scrfd_ref.formats.files import file_digest  # noqa: F401 - re-exported

LAYOUTS = ("standard", "device")


def device_layout_model(src: str | Path, input_size: tuple[int, int] | None,
                        cache: str | Path | None = None) -> Path:
    """The device-layout export of ``src`` (input fixed to ``input_size`` when given), cached."""
    from scrfd_ref.device.export import export_device_layout

    src = Path(src)
    if not src.is_file():
        raise DataMissingError(f"model file not found: {src}")
    size = "dyn" if input_size is None else f"{input_size[0]}x{input_size[1]}"
    key = hashlib.sha256(f"{file_digest(src)}|device|{size}|v1".encode()).hexdigest()[:16]
    target = data_mod.cache_dir(cache) / f"{src.stem}.device-{size}.{key}.onnx"
    from scrfd_ref.device.model_files import cached_model_ok, save_cached_model

    if not cached_model_ok(target):
        save_cached_model(export_device_layout(src, input_size=input_size), target,
                          made_from=src.name, layout="device", input_size=size)
    return target


#: backends that compile a dtype from the fp32 model themselves (the model they get for
#: fp32 / fp16 / bf16 is the fp32 file); their int8 model comes from their own quantizer
NATIVE_PRECISION_BACKENDS = ("openvino",)


def prepare_model(src: str | Path, *, layout: str = "standard", dtype: str = "fp32",
                  input_size: tuple[int, int] | None = None,
                  cache: str | Path | None = None, recipe=None, backend: str = "ort",
                  progress: bool = False) -> Path:
    """Path of ``src`` in the requested layout and dtype for ``backend`` (fp32 standard:
    ``src`` itself); ``recipe``: the int8 :class:`~scrfd_ref.quantize.convert.QuantRecipe`
    (default the project's).

    ONNX Runtime and the other ONNX backends get the project's conversion of the file
    (:func:`scrfd_ref.quantize.convert.convert_model`: fp16, the bf16-storage emulation,
    the int8 QDQ recipe). OpenVINO computes fp16 / bf16 itself from the fp32 file
    (its inference precision hint) and gets int8 from NNCF
    (:func:`scrfd_ref.quantize.nncf_int8.nncf_model`, calibrated like the ORT recipes).
    """
    from scrfd_ref.core.dtypes import check_dtype

    check_dtype(dtype)
    if layout not in LAYOUTS:
        raise InputError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    path = Path(src) if layout == "standard" else device_layout_model(src, input_size, cache)
    if backend in NATIVE_PRECISION_BACKENDS:
        if dtype != "int8":
            return path
        from scrfd_ref.quantize.nncf_int8 import nncf_model

        return nncf_model(path, input_size=tuple(input_size or (640, 640)), recipe=recipe,
                          cache=cache, progress=progress)
    if dtype == "fp32":
        return path
    from scrfd_ref.quantize.convert import convert_model

    return convert_model(path, dtype, cache_dir=data_mod.cache_dir(cache), recipe=recipe)
