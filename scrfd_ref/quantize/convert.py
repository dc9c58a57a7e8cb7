"""Model dtypes: fp32 as shipped, fp16, bf16 and int8 conversions, cached by content hash.

:func:`convert_model` turns a shipped fp32 SCRFD ONNX file into the file for a dtype
(the dtype list: :mod:`scrfd_ref.core.dtypes`):

- ``fp32``: the source file itself (nothing is written).
- ``fp16``: ``onnxconverter_common.float16.convert_float_to_float16`` with
  ``keep_io_types=True``, so the input and the outputs stay float32 (the blob and the
  head outputs keep their dtype; everything in between is float16).
- ``bf16``: the bf16-storage emulation of :mod:`scrfd_ref.device.emulate` (every weight
  and intermediate tensor rounded to bfloat16, fp32 arithmetic inside each node): ONNX
  Runtime has no bf16 CPU kernels, so this is the honest bf16 device that runs anywhere.
  Run it with :data:`scrfd_ref.device.emulate.RUN_OPTIONS` (graph optimisation off);
  OpenVINO's native bf16 is the other bf16 device (``--backend openvino``).
- ``int8``: ONNX Runtime static QDQ quantization (:mod:`scrfd_ref.quantize.int8_build`):

  1. the opset is upgraded to 13 with ``onnx.version_converter`` (per-channel
     ``QuantizeLinear``/``DequantizeLinear`` need opset >= 13; the shipped files are 11);
  2. calibration images (default: the 50 committed WIDER val images of
     ``data/calibration_images.txt``, never used for the conformance AP) go through
     :func:`scrfd_ref.core.preprocess.preprocess` with the ``device-flow`` profile
     geometry (keep ratio, long side to the input size, centred pad, pad pixel 114) at
     ``input_size``;
  3. ``quantize_static`` with ``QuantFormat.QDQ``, per-channel ``QInt8`` weights
     (symmetric), ``QUInt8`` activations (asymmetric), ``reduce_range=False`` and the
     recipe's calibration method: the default is ``percentile`` 99.999 (min/max lets a
     few outlier activations of the first layers stretch the grid; measured on
     500m_bnkps, MinMax keeps 0.990 of fp32 hard AP on held-out images, percentile
     0.999); ``minmax`` is the vendor's (seed-flow.md section 4), ``entropy`` the KL
     method with a 2048-bin histogram;
  4. the head convs compute in int8 and hand over float outputs, the flattening tail
     stays float (:mod:`scrfd_ref.quantize.int8_build`);
  5. with ``mixed_precision`` (default) the search of
     :mod:`scrfd_ref.quantize.mixed_precision` keeps the most sensitive weighted nodes in
     float until the int8 detections agree with fp32's on the calibration images.

  The conversion record (sensitivity, search, int8 MAC share, latency) is written beside
  the model as ``<model>.json`` (:func:`conversion_record`). The vendor's build YAML gives
  its own recipe (:meth:`QuantRecipe.from_build_yaml`: MinMax, every node int8).

  Dynamic H/W: three shipped files have a dynamic ``1x3xHxW`` input. The int8 model
  keeps the source's input shape: calibration feeds ``input_size`` blobs and ORT's
  quantizer (1.32) handles the dynamic graphs without fixing the input (checked on all
  five shared models), so no shape is fixed; the int8 model therefore runs at any size,
  though it was calibrated at ``input_size``. A source whose input is *static* must
  match ``input_size``.

``keep_heads_float=True`` keeps each head in float (:func:`head_conv_names`;
:mod:`scrfd_ref.quantize.write` says which nodes stay float).

This module holds the public API: the settings, the cache and :func:`convert_model`.
The calibration images and their data reader are in :mod:`scrfd_ref.quantize.calibration`,
the writing of the fp16 / int8 files in :mod:`scrfd_ref.quantize.write`; their
public names are re-exported here.

Cache: converted files live in ``cache_dir`` (default ``$SCRFD_CACHE``, else
``~/.cache/scrfd-ref``) under a name holding the sha256 of the source model's bytes,
every setting, the calibration images (name and content hash of each) and the versions
of the libraries that shape the result, so a second call returns at once and any change
makes a new file. Files are written to a temporary name and moved into place with
``os.replace``; a per-file ``fcntl`` lock (POSIX) makes parallel pytest-xdist workers
convert once and wait for each other rather than race.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scrfd_ref import __version__
from scrfd_ref.core.dtypes import DTYPES
from scrfd_ref.core.errors import DataMissingError, InputError
from scrfd_ref.device.model_files import (  # noqa: F401 - cached_model_ok re-exported
    cached_model_ok,
    file_lock,
    load_checked_model,
    temp_beside,
)
from scrfd_ref.formats.datadir import CACHE_ENV_VAR
from scrfd_ref.formats.datadir import cache_dir as _data_cache_dir
from scrfd_ref.formats.files import current_umask
from scrfd_ref.formats.run_outputs import record_entry
from scrfd_ref.quantize.calibration import (
    CALIBRATION_PROFILE,
    _calibration_list,
    _image_id,
    default_calibration_images,
)
from scrfd_ref.quantize.mixed_precision import (
    DEFAULT_CANDIDATES,
    DEFAULT_MIN_INT8_SHARE,
    DEFAULT_TARGET,
)
from scrfd_ref.quantize.write import _write_fp16, head_conv_names, head_node_names

#: environment variable naming the cache folder for converted models
CACHE_ENV = CACHE_ENV_VAR
#: opset the int8 model is upgraded to (per-channel Q/DQ needs >= 13)
INT8_OPSET = 13
#: ORT quant types used for int8 (names of ``onnxruntime.quantization.QuantType``)
ACTIVATION_TYPE = "QUInt8"
WEIGHT_TYPE = "QInt8"
#: bump when this module's conversion changes what it writes (part of the cache key)
FORMAT_VERSION = 4


#: calibration methods (``scrfd-ref quantize --method``) -> ORT ``CalibrationMethod`` names
CALIBRATION_METHODS: dict[str, str] = {"minmax": "MinMax", "percentile": "Percentile",
                                       "entropy": "Entropy"}
DEFAULT_PERCENTILE = 99.999


@dataclass(frozen=True)
class QuantRecipe:
    """How an int8 model is calibrated: the project's default, or a build YAML's.

    Attributes:
        method: ``minmax``, ``percentile`` or ``entropy`` (:data:`CALIBRATION_METHODS`).
        percentile: the percentile of the ``percentile`` method.
        per_channel: per-output-channel weight scales.
        calib_count: how many calibration images.
        calibration: the profile whose preprocessing feeds calibration (a dict of
            :meth:`~scrfd_ref.core.profiles.Profile.to_dict`; default ``device-flow``).
        source: ``default`` or the build YAML it came from.
        float_nodes: nodes kept in float besides the head tails (by name).
        mixed_precision: search more float nodes automatically
            (:mod:`scrfd_ref.quantize.mixed_precision`) until the int8 model's detections
            agree with fp32's on the calibration images to ``target``, trying at most
            ``candidates`` nodes and keeping at least ``min_int8_share`` of the MACs int8.

    The default recipe (percentile 99.999 calibration, per-channel weights, the automatic
    search) is the one measured to keep >= 99.8% of fp32 WIDER AP for 500m_bnkps on the
    344 held-out images; MinMax kept 0.990 of hard AP there (``scrfd-ref int8-ap`` makes
    the table).
    """

    method: str = "percentile"
    percentile: float = DEFAULT_PERCENTILE
    per_channel: bool = True
    calib_count: int = 50
    calibration: dict[str, Any] | None = None
    source: str = "default"
    float_nodes: tuple[str, ...] = ()
    mixed_precision: bool = True
    target: float = DEFAULT_TARGET
    candidates: int = DEFAULT_CANDIDATES
    min_int8_share: float = DEFAULT_MIN_INT8_SHARE

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise InputError(f"calibration method {self.method!r} is not one of "
                             f"{', '.join(CALIBRATION_METHODS)}")
        if not 0 < self.percentile <= 100:
            raise InputError(f"percentile {self.percentile} is not in (0, 100]")
        if isinstance(self.calib_count, bool) or self.calib_count < 1:
            raise InputError(f"calibration count {self.calib_count!r} is not positive")
        if not 0 < self.target <= 1 or not 0 <= self.min_int8_share <= 1:
            raise InputError(f"agreement target {self.target} / int8 share "
                             f"{self.min_int8_share} must be fractions")
        object.__setattr__(self, "float_nodes", tuple(self.float_nodes))

    def calibration_profile(self, input_size: tuple[int, int]) -> Any:
        """The :class:`~scrfd_ref.core.profiles.Profile` calibration images go through."""
        from scrfd_ref.core.profiles import get_profile, profile_from_dict

        base = (profile_from_dict(self.calibration) if self.calibration
                else get_profile(CALIBRATION_PROFILE))
        return base.replace(input_size=tuple(input_size))

    @classmethod
    def from_build_yaml(cls, recipe: Any) -> "QuantRecipe":
        """The int8 recipe of a :class:`~scrfd_ref.formats.build_yaml.BuildRecipe`.

        Calibration preprocessing: the YAML's resize (long side to N, pad to square: the
        input size N x N) and normalisation; the pad value and position the YAML leaves
        open are the ``device-flow`` profile's (centred, 114), RGB as SCRFD expects. The
        vendor's recipe has no mixed precision: every weighted node is int8.
        """
        from scrfd_ref.core.profiles import get_profile

        ops = recipe.check().ops  # a value of the wrong type or range is refused here
        fields: dict[str, Any] = {}
        if ops.resize_long_side:
            fields["input_size"] = (ops.resize_long_side, ops.resize_long_side)
        if ops.mean is not None:
            fields.update(mean=ops.mean, std=ops.std or (1.0, 1.0, 1.0),
                          norm="div255_minusmean_divstd" if ops.div255 else "minusmean_divstd")
        elif ops.div255:
            fields["norm"] = "div255"
        profile = get_profile(CALIBRATION_PROFILE, **fields)
        return cls(method=recipe.calibrate_mode or "minmax",
                   percentile=recipe.percentile or DEFAULT_PERCENTILE,
                   per_channel=True if recipe.per_channel is None else bool(recipe.per_channel),
                   calib_count=recipe.calib_count or 50, calibration=profile.to_dict(),
                   source=recipe.source, mixed_precision=False)


# ----------------------------------------------------------------------------- public API

def convert_model(src: Path, dtype: str, *, cache_dir: Path | None = None,
                  calibration_images: Sequence[Path] | None = None,
                  num_calibration: int | None = None, keep_heads_float: bool = False,
                  input_size: tuple[int, int] = (640, 640),
                  recipe: QuantRecipe | None = None, progress: bool = False) -> Path:
    """Return the ONNX file of ``src`` converted to ``dtype`` (cached).

    Args:
        src: the shipped fp32 ONNX model.
        dtype: one of :data:`DTYPES`; ``fp32`` returns ``src`` unchanged.
        cache_dir: folder for converted files (default :func:`default_cache_dir`).
        calibration_images: int8 only: images to calibrate on (default
            :func:`default_calibration_images`); the first ``num_calibration`` are used.
        num_calibration: int8 only: how many calibration images to use (default: the
            recipe's, 50).
        keep_heads_float: keep each head's last conv and its flattening tail in float.
        input_size: int8 only: ``(W, H)`` of the calibration blobs.
        recipe: int8 only: the calibration recipe (default :class:`QuantRecipe`:
            percentile 99.999, per channel, the device-flow letterbox, the mixed-precision
            search); a build YAML's with :meth:`QuantRecipe.from_build_yaml`.
        progress: show a progress bar over the calibration images.

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
    if dtype == "bf16":   # no conversion library writes bf16 ONNX that ORT runs on a CPU
        from scrfd_ref.device.emulate import emulated_model

        return emulated_model(src, "bf16-storage", cache_dir or default_cache_dir())
    recipe = recipe or QuantRecipe()
    images: list[Path] = []
    if dtype == "int8":
        images = _calibration_list(calibration_images, recipe.calib_count
                                   if num_calibration is None else num_calibration)
    settings = conversion_settings(dtype, keep_heads_float=keep_heads_float,
                                   input_size=input_size, recipe=recipe)
    out = _cache_file(src, settings, images, cache_dir)
    if cached_model_ok(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(out.with_name(out.name + ".lock")):
        if not cached_model_ok(out):
            _convert_to(src, out, settings, images, progress=progress)
    return out


def _cache_file(src: Path, settings: dict[str, Any], images: Sequence[Path],
                cache_dir: Path | None) -> Path:
    """``<cache>/<stem>.<dtype>[.heads-float].<key prefix>.onnx``."""
    key = cache_key(src, settings, images)
    heads = ".heads-float" if settings.get("keep_heads_float") else ""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    return folder / f"{src.stem}.{settings['dtype']}{heads}.{key[:20]}.onnx"


def default_cache_dir() -> Path:
    """``$SCRFD_CACHE`` if set, else ``~/.cache/scrfd-ref`` (:func:`scrfd_ref.formats.datadir.cache_dir`)."""
    return _data_cache_dir()


def conversion_settings(dtype: str, *, keep_heads_float: bool = False,
                        input_size: tuple[int, int] = (640, 640),
                        recipe: QuantRecipe | None = None) -> dict[str, Any]:
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
    recipe = recipe or QuantRecipe()
    profile = recipe.calibration_profile(tuple(input_size))
    settings.update(opset=INT8_OPSET, quant_format="QDQ", per_channel=recipe.per_channel,
                    calibrate_method=CALIBRATION_METHODS[recipe.method],
                    activation_type=ACTIVATION_TYPE, weight_type=WEIGHT_TYPE,
                    reduce_range=False, input_size=list(profile.input_size),
                    letterbox=profile.letterbox, pad_value=profile.pad_value,
                    calibration_profile=profile.to_dict(),
                    head_outputs="float", float_nodes=sorted(recipe.float_nodes),
                    mixed_precision=recipe.mixed_precision)
    if recipe.method == "percentile":
        settings["percentile"] = recipe.percentile
    if recipe.mixed_precision:
        settings.update(target=recipe.target, candidates=recipe.candidates,
                        min_int8_share=recipe.min_int8_share)
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


# ----------------------------------------------------------------------------- checks

def _check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    return dtype


# ----------------------------------------------------------------------------- conversion

def _convert_to(src: Path, out: Path, settings: dict[str, Any], images: Sequence[Path],
                progress: bool = False) -> None:
    model = load_checked_model(src)
    excluded = head_node_names(model) if settings["keep_heads_float"] else []
    record = None
    with temp_beside(out) as tmp:
        if settings["dtype"] == "fp16":
            _write_fp16(model, tmp, excluded)
        else:
            from scrfd_ref.quantize.int8_build import write_int8

            record = write_int8(model, src, tmp, settings, images, excluded,
                                _calibration_cache(src, settings, images, out.parent),
                                progress=progress)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, out)
        record_entry(out, made_from=src.name, dtype=settings["dtype"])
    if record is not None:
        from scrfd_ref.quantize.int8_build import write_sidecar

        write_sidecar(out, record)


#: bump when the calibration ranges of a setting change (2: entropy with a 2048-bin histogram)
CALIBRATION_VERSION = 2
#: settings that do not change the calibration ranges (which nodes stay float)
_NOT_CALIBRATION = ("float_nodes", "mixed_precision", "target", "candidates",
                    "min_int8_share", "keep_heads_float", "head_outputs", "format")


def _calibration_cache(src: Path, settings: dict[str, Any], images: Sequence[Path],
                       folder: Path) -> Path:
    """Where the calibration ranges of ``src`` under ``settings`` are kept (shared by the
    models that differ only in which nodes stay float)."""
    calib = {k: v for k, v in settings.items() if k not in _NOT_CALIBRATION}
    calib["calibration_version"] = CALIBRATION_VERSION
    return folder / f"{src.stem}.calibration.{cache_key(src, calib, images)[:20]}.json"


def conversion_record(model: Path) -> dict[str, Any] | None:
    """The sidecar of a converted int8 model (settings, sensitivity, mixed-precision
    search, int8 MAC share), or None when it has none."""
    side = Path(model).with_suffix(".json")
    try:
        return json.loads(side.read_text())
    except (OSError, ValueError):
        return None


__all__ = ["ACTIVATION_TYPE", "CACHE_ENV", "CALIBRATION_METHODS", "DTYPES", "QuantRecipe",
           "WEIGHT_TYPE", "cache_key", "conversion_record",
           "conversion_settings", "convert_model", "default_cache_dir",
           "default_calibration_images", "head_conv_names", "head_node_names",
           "library_versions"]
