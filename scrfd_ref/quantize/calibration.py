"""int8 calibration data: which images calibrate, and the data reader that feeds them to ORT.

Calibration images default to the committed list ``data/calibration_images.txt`` (50
shared WIDER val images spread evenly over every event, :func:`choose_calibration_images`;
the conformance suite evaluates on the other images); each goes through
:func:`scrfd_ref.core.preprocess.preprocess` with the :data:`CALIBRATION_PROFILE`
(``device-flow``) geometry: keep ratio, long side to the input size, centred pad, pad
pixel 114, at the conversion's ``input_size`` (seed-flow.md section 4). The cache key of
an int8 model counts each image by :func:`_image_id`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scrfd_ref.core.errors import DataMissingError, InputError
from scrfd_ref.formats.datadir import project_file, widerface_dir

#: profile whose letterbox geometry feeds calibration (vendor: long side 640, padded square)
CALIBRATION_PROFILE = "device-flow"
_DEFAULT_CALIBRATION = 50


#: the committed list of calibration images (``event/name`` of shared WIDER val images)
CALIBRATION_LIST = project_file("calibration_images.txt")


def choose_calibration_images(images: Sequence[Path], num: int = _DEFAULT_CALIBRATION
                              ) -> list[Path]:
    """``num`` of ``images`` evenly spaced over the list sorted by ``event/name`` (index
    ``i * len // num``), so every event contributes: how the committed list was chosen."""
    found = sorted(images, key=lambda p: (Path(p).parent.name, Path(p).name))
    if len(found) <= num:
        return found
    return [found[i * len(found) // num] for i in range(num)]


def calibration_keys() -> list[str]:
    """``event/name`` of the committed calibration images (:data:`CALIBRATION_LIST`); the
    conformance suite measures AP on the other images."""
    lines = CALIBRATION_LIST.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def default_calibration_images(root: Path | None = None,
                               num: int = _DEFAULT_CALIBRATION) -> list[Path]:
    """The first ``num`` images of the committed calibration list, under the data folder's
    ``WIDER_val/images``.

    Raises:
        DataMissingError: a listed image is not in the data folder.
    """
    folder = widerface_dir(root) / "WIDER_val" / "images"
    keys = calibration_keys()[:num]
    paths = [folder / f"{k}.jpg" for k in keys]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataMissingError(
            f"calibration image {missing[0]} not found ({len(missing)} of the {len(keys)} "
            f"listed in {CALIBRATION_LIST.name} missing; set SCRFD_DATA or pass "
            "calibration_images / --calib-images)")
    return paths


def _calibration_list(images: Sequence[Path] | None, num: int) -> list[Path]:
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise InputError(f"num_calibration must be a positive integer, got {num!r}")
    chosen = [Path(p) for p in (default_calibration_images(num=num)
                                if images is None else list(images)[:num])]
    if not chosen:
        raise InputError("calibration_images is empty: int8 calibration needs at least one image")
    from scrfd_ref.formats.images import read_image_size

    for path in chosen:
        if not path.is_file():
            raise DataMissingError(f"calibration image not found: {path}")
        read_image_size(path)   # every header within the pixel limit before any work
    return chosen


def _image_id(path: Path) -> list[str]:
    path = Path(path)
    return [f"{path.parent.name}/{path.name}", hashlib.sha256(path.read_bytes()).hexdigest()]


def _calibration_reader(images: Sequence[Path], input_name: str,
                        input_size: tuple[int, int], profile: dict | None = None,
                        progress: bool = False) -> Any:
    """An ORT ``CalibrationDataReader`` that preprocesses one image per call with
    ``profile`` (a recorded profile dict; default the device-flow letterbox)."""
    from onnxruntime.quantization import CalibrationDataReader
    from tqdm import tqdm

    from scrfd_ref.core.profiles import get_profile, profile_from_dict

    prof = (profile_from_dict(profile) if profile else get_profile(CALIBRATION_PROFILE))
    prof = prof.replace(input_size=tuple(input_size))
    bar = tqdm(total=len(images), desc="calibration", unit="img", disable=not progress)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._paths = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            path = next(self._paths, None)
            if path is None:
                bar.close()
                return None
            bar.update(1)
            return {input_name: _calibration_blob(path, prof)}

    return _Reader()


def _calibration_blob(path: Path, profile: Any) -> np.ndarray:
    """One calibration image through the calibration profile; read like every image
    (:func:`scrfd_ref.formats.images.read_image`: the pixel limit from the header, before
    any pixel is decoded; a damaged file refused)."""
    from scrfd_ref.core.preprocess import preprocess
    from scrfd_ref.formats.images import read_image

    try:
        image = read_image(path)
    except InputError as exc:
        raise InputError(f"calibration image {exc}") from None
    return preprocess(image, profile)[0]


__all__ = ["CALIBRATION_PROFILE", "default_calibration_images"]
