"""NNCF post-training int8 quantization for the OpenVINO backend, cached by content hash.

:func:`nncf_model` turns an fp32 SCRFD ONNX file (either layout) into an OpenVINO IR
whose weighted layers run in int8: ``nncf.quantize`` with its default settings (the
``performance`` preset: symmetric int8 weights per channel and activations per tensor,
MinMax-style range statistics on the calibration set, the ``FastBiasCorrection``
step), calibrated on the images of the recipe -- by default the 50 committed images of
``data/calibration_images.txt`` (never used for the conformance AP), each through the
recipe's calibration profile (the ``device-flow`` letterbox at the model's input size),
as the ONNX Runtime int8 recipes are (:mod:`scrfd_ref.quantize.calibration`).

The result is OpenVINO's own int8 model (``FakeQuantize`` nodes that its CPU plugin fuses
into int8 kernels, VNNI where the CPU has it), run by
:class:`~scrfd_ref.backends.openvino.OpenVinoBackend` with ``dtype="int8"`` (f32
elsewhere). It is a recognised third-party quantizer: ``scrfd-ref int8-ap`` reports it
beside the project's ONNX Runtime recipes, and the conformance matrix runs it as
``openvino-int8``.

Cache: ``<cache>/<stem>.nncf-int8.<key>.xml`` (+ ``.bin``), the key holding the sha256 of
the source model, the settings, every calibration image (name and content hash) and the
versions of openvino and nncf; written to temporary names and renamed into place (``.bin``
first, so an ``.xml`` is only ever beside its complete weights), under a file lock so
parallel workers quantize once.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from scrfd_ref import __version__
from scrfd_ref.core.errors import BackendUnavailable, DataMissingError, InputError
from scrfd_ref.formats import datadir as data_mod
from scrfd_ref.formats.files import current_umask, file_digest, write_text

#: bump when what this module writes changes (part of the cache key)
FORMAT_VERSION = 1
#: the settings passed to nncf.quantize (its defaults, written out so the cache key and the
#: report say what they were)
NNCF_SETTINGS = {"preset": "performance", "model_type": None, "fast_bias_correction": True}


def _nncf() -> Any:
    try:
        import nncf
        import openvino  # noqa: F401
    except ImportError as exc:
        from scrfd_ref.backends.openvino import INSTALL

        raise BackendUnavailable(f"NNCF int8 needs openvino and nncf ({exc}); {INSTALL}") from None
    return nncf


def nncf_missing() -> str | None:
    """Why NNCF int8 cannot run here (openvino or nncf not installed, with the install
    line), or None when the OpenVINO extra is installed."""
    try:
        _nncf()
    except BackendUnavailable as exc:
        return str(exc)
    return None


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape an NNCF int8 model."""
    import nncf
    import openvino

    return {"scrfd_ref": __version__, "openvino": openvino.__version__,
            "nncf": nncf.__version__}


def nncf_model(src: str | Path, *, input_size: tuple[int, int] = (640, 640),
               calibration_images: Sequence[Path] | None = None,
               num_calibration: int | None = None, recipe: Any = None,
               cache: str | Path | None = None, progress: bool = False) -> Path:
    """The NNCF int8 IR (``.xml``) of the fp32 ONNX model ``src`` (cached).

    Args:
        src: the fp32 ONNX file (standard or device layout).
        input_size: ``(W, H)`` of the calibration blobs (a static model must match).
        calibration_images: images to calibrate on (default: the committed list).
        num_calibration: how many of them (default: the recipe's count, 50).
        recipe: a :class:`~scrfd_ref.quantize.convert.QuantRecipe` for the calibration
            count and profile (its calibration method does not apply: NNCF has its own).
        cache: the model cache folder (default ``$SCRFD_CACHE``).
        progress: show NNCF's progress.

    Raises:
        BackendUnavailable: openvino or nncf is not installed (the install line).
        DataMissingError: the model or a calibration image is missing.
        InputError: a model OpenVINO cannot read, or an unreadable calibration image.
    """
    from scrfd_ref.quantize.calibration import _calibration_list, _image_id
    from scrfd_ref.quantize.convert import QuantRecipe

    src = Path(src)
    if not src.is_file():
        raise DataMissingError(f"model file not found: {src}")
    recipe = recipe or QuantRecipe()
    count = recipe.calib_count if num_calibration is None else num_calibration
    images = _calibration_list(calibration_images, count)   # input checks before the extra
    nncf = _nncf()
    profile = recipe.calibration_profile(tuple(input_size))
    settings = {"format": FORMAT_VERSION, "nncf": NNCF_SETTINGS,
                "calibration_profile": profile.to_dict(), "subset_size": len(images)}
    digest = hashlib.sha256(file_digest(src).encode())
    digest.update(json.dumps({"settings": settings, "versions": library_versions(),
                              "images": [_image_id(p) for p in images]},
                             sort_keys=True).encode())
    folder = data_mod.cache_dir(cache)
    target = folder / f"{src.stem}.nncf-int8.{digest.hexdigest()[:20]}.xml"
    if _cached_ok(target):
        return target
    from scrfd_ref.device.model_files import file_lock

    with file_lock(target.with_name(target.name + ".lock")):
        if not _cached_ok(target):
            _quantize(nncf, src, target, images, profile, settings, progress)
    return target


def _cached_ok(xml: Path) -> bool:
    """Both files of a cached OpenVINO IR are the ones recorded when it was written."""
    from scrfd_ref.formats.run_outputs import verified_entry

    ok = [verified_entry(f, "cached NNCF model") for f in (xml, xml.with_suffix(".bin"))]
    return all(ok)


def _quantize(nncf: Any, src: Path, target: Path, images: Sequence[Path], profile: Any,
              settings: dict[str, Any], progress: bool) -> None:
    import openvino as ov

    from scrfd_ref.backends.native_errors import captured_native_stderr, native_reason
    from scrfd_ref.backends.openvino import core
    from scrfd_ref.quantize.calibration import _calibration_blob

    try:
        with captured_native_stderr() as noise:
            model = core().read_model(str(src))
    except Exception as exc:  # noqa: BLE001 - OpenVINO's own exception types
        raise InputError(f"{src}: OpenVINO cannot read the model: "
                         f"{native_reason(exc, noise)}") from None
    blobs = [_calibration_blob(p, profile) for p in images]
    logging.getLogger("nncf").setLevel(logging.INFO if progress else logging.ERROR)
    quiet = contextlib.nullcontext() if progress else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        quantized = nncf.quantize(model, nncf.Dataset(blobs), subset_size=len(blobs),
                                  fast_bias_correction=NNCF_SETTINGS["fast_bias_correction"])
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.xml")
    try:
        ov.save_model(quantized, str(tmp), compress_to_fp16=False)
        mode = 0o666 & ~current_umask()
        for part in (tmp.with_suffix(".bin"), tmp):
            os.chmod(part, mode)
        os.replace(tmp.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(tmp, target)
        from scrfd_ref.formats.run_outputs import record_entry

        for f in (target.with_suffix(".bin"), target):
            record_entry(f, made_from=src.name)
    finally:
        for part in (tmp, tmp.with_suffix(".bin")):
            part.unlink(missing_ok=True)
    record = {"source": src.name, "settings": settings, "versions": library_versions(),
              "images": [f"{p.parent.name}/{p.name}" for p in images]}
    write_text(target.with_suffix(".json"), json.dumps(record, indent=1) + "\n")


__all__ = ["FORMAT_VERSION", "NNCF_SETTINGS", "library_versions", "nncf_model"]
