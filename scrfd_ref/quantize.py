"""Model dtypes: fp32 as shipped, fp16 and int8 conversions, cached by content hash.

:func:`convert_model` turns a shipped fp32 SCRFD ONNX file into the file for a dtype:

- ``fp32``: the source file itself (nothing is written).
- ``fp16``: ``onnxconverter_common.float16.convert_float_to_float16`` with
  ``keep_io_types=True``, so the input and the outputs stay float32 (the blob and the
  head outputs keep their dtype; everything in between is float16).
- ``int8``: ONNX Runtime static quantization, the vendor's recipe as far as ORT has it
  (seed-flow.md section 4: max calibration, per channel, 50 WIDER val images resized
  long side to 640 and padded square):

  1. the opset is upgraded to 13 with ``onnx.version_converter`` (per-channel
     ``QuantizeLinear``/``DequantizeLinear`` need opset >= 13; the shipped files are 11);
  2. calibration images go through :func:`scrfd_ref.preprocess.preprocess` with the
     ``device-flow`` profile geometry (keep ratio, long side to the input size, centred
     pad, pad pixel 114) at ``input_size``;
  3. ``quantize_static`` with ``QuantFormat.QDQ``, ``per_channel=True``,
     ``CalibrationMethod.MinMax``, activations ``QUInt8`` (asymmetric) and weights
     ``QInt8`` (symmetric, per output channel), ``reduce_range=False``. U8S8 is ORT's
     recommendation for x86 CPUs (its VNNI / AVX2 int8 kernels); asymmetric int8 and
     asymmetric uint8 activations put the same grid on the same min/max, so the choice
     does not change accuracy, only which kernels ORT picks.

  Dynamic H/W: three shipped files have a dynamic ``1x3xHxW`` input. The int8 model
  keeps the source's input shape: calibration feeds ``input_size`` blobs and ORT's
  quantizer (1.32) handles the dynamic graphs without fixing the input (checked on all
  five shared models), so no shape is fixed; the int8 model therefore runs at any size,
  though it was calibrated at ``input_size``. A source whose input is *static* must
  match ``input_size``.

``keep_heads_float=True`` keeps each head in float: the last ``Conv`` before each
output (:func:`head_conv_names`) and the flattening tail behind it (learned ``Mul``
scale, ``Transpose``, ``Reshape``, ``Sigmoid``) are excluded from quantization (int8:
``nodes_to_exclude``) or from the float16 conversion (fp16: ``node_block_list``).

Cache: converted files live in ``cache_dir`` (default ``$SCRFD_CACHE``, else
``~/.cache/scrfd-ref``) under a name holding the sha256 of the source model's bytes,
every setting, the calibration images (name and content hash of each) and the versions
of the libraries that shape the result, so a second call returns at once and any change
makes a new file. Files are written to a temporary name and moved into place with
``os.replace``; a per-file ``fcntl`` lock (POSIX) makes parallel pytest-xdist workers
convert once and wait for each other rather than race.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from . import __version__
from .data import CACHE_ENV_VAR, cache_dir as _data_cache_dir, widerface_dir
from .formats.files import current_umask
from .errors import DataMissingError, InputError, LayoutError

DTYPES: tuple[str, ...] = ("fp32", "fp16", "int8")
#: environment variable naming the cache folder for converted models
CACHE_ENV = CACHE_ENV_VAR
#: opset the int8 model is upgraded to (per-channel Q/DQ needs >= 13)
INT8_OPSET = 13
#: ORT quant types used for int8 (names of ``onnxruntime.quantization.QuantType``)
ACTIVATION_TYPE = "QUInt8"
WEIGHT_TYPE = "QInt8"
#: profile whose letterbox geometry feeds calibration (vendor: long side 640, padded square)
CALIBRATION_PROFILE = "device-flow"
#: bump when this module's conversion changes what it writes (part of the cache key)
FORMAT_VERSION = 1
#: ops walked back through from a graph output to its head conv
_TAIL_LIMIT = 16
_DEFAULT_CALIBRATION = 50


# ----------------------------------------------------------------------------- public API

def convert_model(src: Path, dtype: str, *, cache_dir: Path | None = None,
                  calibration_images: Sequence[Path] | None = None, num_calibration: int = 50,
                  keep_heads_float: bool = False,
                  input_size: tuple[int, int] = (640, 640)) -> Path:
    """Return the ONNX file of ``src`` converted to ``dtype`` (cached).

    Args:
        src: the shipped fp32 ONNX model.
        dtype: one of :data:`DTYPES`; ``fp32`` returns ``src`` unchanged.
        cache_dir: folder for converted files (default :func:`default_cache_dir`).
        calibration_images: int8 only: images to calibrate on (default
            :func:`default_calibration_images`); the first ``num_calibration`` are used.
        num_calibration: int8 only: how many calibration images to use (>= 1).
        keep_heads_float: keep each head's last conv and its flattening tail in float.
        input_size: int8 only: ``(W, H)`` of the calibration blobs.

    Returns:
        The path of the converted model (``src`` itself for fp32).

    Raises:
        InputError: unknown dtype, bad settings, or a corrupt / non-SCRFD model or an
            unreadable calibration image.
        DataMissingError: the model, a calibration image or the default calibration
            folder is missing.
    """
    dtype = _check_dtype(dtype)
    src = Path(src)
    if not src.is_file():
        raise DataMissingError(f"model file not found: {src}")
    if dtype == "fp32":
        return src
    images: list[Path] = []
    if dtype == "int8":
        images = _calibration_list(calibration_images, num_calibration)
    settings = conversion_settings(dtype, keep_heads_float=keep_heads_float,
                                   input_size=input_size)
    out = _cache_file(src, settings, images, cache_dir)
    if cached_model_ok(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(out.with_name(out.name + ".lock")):
        if not cached_model_ok(out):
            _convert_to(src, out, settings, images)
    return out


def cached_model_ok(path: Path) -> bool:
    """True when ``path`` holds a loadable ONNX model; a damaged cache entry is removed
    (with a notice on stderr) so the caller rebuilds it."""
    if not path.is_file():
        return False
    import onnx

    try:
        model = onnx.load(str(path))
        if model.graph.node:
            return True
        why = "an empty graph"
    except Exception as exc:  # noqa: BLE001 - any damage means "rebuild"
        why = f"{type(exc).__name__}"
    import sys

    print(f"scrfd-ref: notice: cached model {path} is damaged ({why}); rebuilding it",
          file=sys.stderr)
    path.unlink(missing_ok=True)
    return False


def _cache_file(src: Path, settings: dict[str, Any], images: Sequence[Path],
                cache_dir: Path | None) -> Path:
    """``<cache>/<stem>.<dtype>[.heads-float].<key prefix>.onnx``."""
    key = cache_key(src, settings, images)
    heads = ".heads-float" if settings.get("keep_heads_float") else ""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    return folder / f"{src.stem}.{settings['dtype']}{heads}.{key[:20]}.onnx"


def default_cache_dir() -> Path:
    """``$SCRFD_CACHE`` if set, else ``~/.cache/scrfd-ref`` (:func:`scrfd_ref.data.cache_dir`)."""
    return _data_cache_dir()


def default_calibration_images(root: Path | None = None,
                               num: int = _DEFAULT_CALIBRATION) -> list[Path]:
    """``num`` WIDER val images of the data folder, evenly spaced over the list sorted by
    ``event/name`` (so every event present contributes, not just the first one).

    Raises:
        DataMissingError: no ``WIDER_val/images/<event>/*.jpg`` under the data folder.
    """
    folder = widerface_dir(root) / "WIDER_val" / "images"
    found = sorted(folder.glob("*/*.jpg"), key=lambda p: (p.parent.name, p.name))
    if not found:
        raise DataMissingError(
            f"no calibration images: no WIDER val images under {folder}/<event>/*.jpg "
            "(set SCRFD_DATA or pass calibration_images)")
    if len(found) <= num:
        return found
    return [found[i * len(found) // num] for i in range(num)]


def conversion_settings(dtype: str, *, keep_heads_float: bool = False,
                        input_size: tuple[int, int] = (640, 640)) -> dict[str, Any]:
    """Every setting that shapes the converted file for ``dtype`` (JSON-ready).

    Settings that do not apply to a dtype are left out, so they do not split its cache.
    """
    dtype = _check_dtype(dtype)
    settings: dict[str, Any] = {"dtype": dtype, "format": FORMAT_VERSION}
    if dtype == "fp32":
        return settings
    settings["keep_heads_float"] = bool(keep_heads_float)
    if dtype == "fp16":
        settings["keep_io_types"] = True
        return settings
    from .profiles import get_profile

    profile = get_profile(CALIBRATION_PROFILE, input_size=tuple(input_size))
    settings.update(opset=INT8_OPSET, quant_format="QDQ", per_channel=True,
                    calibrate_method="MinMax", activation_type=ACTIVATION_TYPE,
                    weight_type=WEIGHT_TYPE, reduce_range=False,
                    input_size=list(profile.input_size),
                    letterbox=profile.letterbox, pad_value=profile.pad_value)
    return settings


def cache_key(src: Path, settings: dict[str, Any], images: Sequence[Path] = ()) -> str:
    """sha256 hex of the model bytes, the settings, the images and the library versions.

    Each image counts by its ``event/name`` and the sha256 of its bytes, so the key
    survives moving the data folder but not changing an image.
    """
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(Path(src).read_bytes()).digest())
    described = {"settings": settings, "versions": library_versions(settings["dtype"]),
                 "images": [_image_id(p) for p in images]}
    digest.update(json.dumps(described, sort_keys=True).encode())
    return digest.hexdigest()


def library_versions(dtype: str) -> dict[str, str]:
    """Versions of the libraries whose behaviour shapes a ``dtype`` conversion."""
    import onnx

    versions = {"scrfd_ref": __version__, "onnx": onnx.__version__}
    if dtype == "fp16":
        import onnxconverter_common

        versions["onnxconverter_common"] = onnxconverter_common.__version__
    elif dtype == "int8":
        import cv2
        import onnxruntime

        versions.update(onnxruntime=onnxruntime.__version__, opencv=cv2.__version__,
                        numpy=np.__version__)
    return versions


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


# ----------------------------------------------------------------------------- checks

def _check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    return dtype


def _calibration_list(images: Sequence[Path] | None, num: int) -> list[Path]:
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise InputError(f"num_calibration must be a positive integer, got {num!r}")
    chosen = [Path(p) for p in (default_calibration_images(num=num)
                                if images is None else list(images)[:num])]
    if not chosen:
        raise InputError("calibration_images is empty: int8 calibration needs at least one image")
    for path in chosen:
        if not path.is_file():
            raise DataMissingError(f"calibration image not found: {path}")
    return chosen


def _image_id(path: Path) -> list[str]:
    path = Path(path)
    return [f"{path.parent.name}/{path.name}", hashlib.sha256(path.read_bytes()).hexdigest()]


def _load_model(src: Path) -> Any:
    """Load and check an ONNX file; nodes get names where they lack one."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(src))
    except (DecodeError, ValueError, OSError) as exc:
        raise InputError(f"{src}: not a readable ONNX model (truncated, corrupt or not "
                         f"ONNX): {exc}") from exc
    if not model.HasField("graph") or not model.graph.node:
        raise InputError(f"{src}: not an ONNX model (no graph or no nodes)")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{src}: corrupt ONNX model, onnx.checker says: {first}") from exc
    _name_nodes(model)
    return model


def _name_nodes(model: Any) -> None:
    taken = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_auto{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


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


# ----------------------------------------------------------------------------- conversion

def _convert_to(src: Path, out: Path, settings: dict[str, Any], images: Sequence[Path]) -> None:
    model = _load_model(src)
    excluded = head_node_names(model) if settings["keep_heads_float"] else []
    with _temp_beside(out) as tmp:
        if settings["dtype"] == "fp16":
            _write_fp16(model, tmp, excluded)
        else:
            _write_int8(model, src, tmp, settings, images, excluded)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, out)


def _write_fp16(model: Any, dst: Path, excluded: Sequence[str]) -> None:
    import onnx
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        # "the float32 number 1e-09 will be truncated to 1e-07": expected for fp16
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(
            model, keep_io_types=True, node_block_list=list(excluded) or None)
    onnx.save(converted, str(dst))


def _write_int8(model: Any, src: Path, dst: Path, settings: dict[str, Any],
                images: Sequence[Path], excluded: Sequence[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    input_name, dims = _image_input(model, src)
    size = tuple(settings["input_size"])
    if dims[2] is not None and dims[3] is not None and (dims[3], dims[2]) != size:
        raise InputError(f"{src}: input is fixed at {dims[3]}x{dims[2]}, cannot calibrate at "
                         f"{size[0]}x{size[1]} (pass input_size=({dims[3]}, {dims[2]}))")
    model = _upgrade_opset(model, src, settings["opset"])
    reader = _calibration_reader(images, input_name, size)
    with _quiet_ort_advice():
        quantize_static(model, str(dst), reader, quant_format=QuantFormat.QDQ,
                        per_channel=settings["per_channel"],
                        reduce_range=settings["reduce_range"],
                        activation_type=getattr(QuantType, settings["activation_type"]),
                        weight_type=getattr(QuantType, settings["weight_type"]),
                        calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=list(excluded))


def _upgrade_opset(model: Any, src: Path, opset: int) -> Any:
    from onnx import version_converter

    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if current >= opset:
        return model
    try:
        return version_converter.convert_version(model, opset)
    except Exception as exc:  # the converter raises bare RuntimeErrors per op
        raise InputError(f"{src}: cannot upgrade opset {current} -> {opset}: "
                         f"{str(exc).strip().splitlines()[0]}") from exc


def _calibration_reader(images: Sequence[Path], input_name: str,
                        input_size: tuple[int, int]) -> Any:
    """An ORT ``CalibrationDataReader`` that preprocesses one image per call."""
    from onnxruntime.quantization import CalibrationDataReader

    from .profiles import get_profile

    profile = get_profile(CALIBRATION_PROFILE, input_size=input_size)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._paths = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            path = next(self._paths, None)
            return None if path is None else {input_name: _calibration_blob(path, profile)}

    return _Reader()


def _calibration_blob(path: Path, profile: Any) -> np.ndarray:
    import cv2

    from .preprocess import preprocess

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"calibration image {path}: OpenCV cannot decode it (not an image?)")
    return preprocess(image, profile)[0]


# ----------------------------------------------------------------------------- files

@contextlib.contextmanager
def _temp_beside(path: Path) -> Iterator[Path]:
    """A temporary file name in ``path``'s folder, removed if still there on exit."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock on ``path`` (POSIX ``fcntl``; no lock where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: the atomic rename alone keeps the cache consistent
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _DropAdvice(logging.Filter):
    """Drops ORT's "consider pre-processing before quantization" advice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _quiet_ort_advice() -> Iterator[None]:
    root = logging.getLogger()
    flt = _DropAdvice()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


__all__ = ["ACTIVATION_TYPE", "CACHE_ENV", "DTYPES", "WEIGHT_TYPE", "cache_key",
           "conversion_settings", "convert_model", "default_cache_dir",
           "default_calibration_images", "head_conv_names", "head_node_names",
           "library_versions"]
