"""Where data lives: the data directory setting and the SCRFD variants table.

The data directory holds ``models/``, ``widerface/`` and ``images/`` (see the shared
data README). It is found, in order, from an explicit argument (CLI ``--data-dir``),
the ``SCRFD_DATA`` environment variable, and ``../shared/data`` beside the checkout.
Nothing here downloads anything: a missing model is reported with where to put it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from scrfd_ref.core.errors import DataMissingError

ENV_VAR = "SCRFD_DATA"
_CHECKOUT_ROOT = Path(__file__).resolve().parents[2]
#: the project's own data files (gates, expected values): shipped inside the wheel as
#: ``scrfd_ref/_data/`` (setup.py copies the checkout's ``data/`` there: one source copy)
_SHIPPED_DATA = Path(__file__).resolve().parents[1] / "_data"


def project_file(relative: str) -> Path:
    """A file of the project's ``data/`` folder (``gates.toml``, ``expected/...``): the copy
    shipped in the installed package, else the checkout's ``data/``."""
    shipped = _SHIPPED_DATA / relative
    return shipped if shipped.exists() else _CHECKOUT_ROOT / "data" / relative


@dataclass(frozen=True)
class Variant:
    """One SCRFD variant and its published numbers (insightface, 640 input, WIDER val)."""

    name: str
    ap_easy: float
    ap_medium: float
    ap_hard: float
    gflops: float
    params_m: float
    landmarks: bool
    gpu_ms: float  # published VGA inference time on an unnamed GPU

    @property
    def file_names(self) -> tuple[str, ...]:
        """Model file names accepted for this variant, most preferred first."""
        base = f"scrfd_{self.name}"
        return (f"{base}.onnx", f"{base}_dynamic.onnx", f"{base}_shape640x640.onnx")


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("500m", 90.57, 88.12, 68.51, 0.5, 0.57, False, 3.6),
        Variant("500m_bnkps", 90.97, 88.44, 69.49, 0.5, 0.57, True, 3.6),
        Variant("1g", 92.38, 90.57, 74.80, 1.0, 0.64, False, 4.1),
        Variant("2.5g", 93.78, 92.16, 77.87, 2.5, 0.67, False, 4.2),
        Variant("2.5g_bnkps", 93.80, 92.02, 77.13, 2.5, 0.82, True, 4.3),
        Variant("10g", 95.16, 93.87, 83.05, 10.0, 3.86, False, 4.9),
        Variant("10g_bnkps", 95.40, 94.01, 82.80, 10.0, 4.23, True, 5.0),
        Variant("34g", 96.06, 94.92, 85.29, 34.0, 9.80, False, 11.7),
    )
}


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the data directory: ``explicit``, else ``$SCRFD_DATA``, else ``../shared/data``.

    The directory is returned even when it does not exist; callers that need a file
    in it use :func:`require` to get a clear error.
    """
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return (_CHECKOUT_ROOT.parent / "shared" / "data").resolve()


def require(path: Path, what: str) -> Path:
    """Return ``path`` if it exists, else raise :class:`DataMissingError` naming ``what``."""
    if not path.exists():
        raise DataMissingError(
            f"{what} not found: {path} (set {ENV_VAR} or --data-dir to the data folder)"
        )
    return path


def models_dir(root: Path | None = None) -> Path:
    """The ``models/`` folder of the data directory."""
    return (root or data_dir()) / "models"


def find_model(variant: str, root: Path | None = None) -> Path | None:
    """Return the ONNX file for ``variant`` in the data directory, or None if absent."""
    if variant not in VARIANTS:
        raise KeyError(f"unknown SCRFD variant {variant!r}; known: {', '.join(VARIANTS)}")
    folder = models_dir(root)
    for name in VARIANTS[variant].file_names:
        if (folder / name).is_file():
            return folder / name
    return None


def missing_model_reason(variant: str, root: Path | None = None) -> str:
    """One line saying that ``variant``'s weights are absent and where to put them."""
    names = " or ".join(VARIANTS[variant].file_names[:2])
    return f"no weights for SCRFD {variant}: put {names} in {models_dir(root)}"


def widerface_dir(root: Path | None = None) -> Path:
    """The ``widerface/`` folder of the data directory."""
    return (root or data_dir()) / "widerface"


def images_dir(root: Path | None = None) -> Path:
    """The ``images/`` folder of the data directory."""
    return (root or data_dir()) / "images"


CACHE_ENV_VAR = "SCRFD_CACHE"


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Folder for derived models (device layout, fp16, int8): ``explicit``, else
    ``$SCRFD_CACHE``, else ``~/.cache/scrfd-ref``. Created on first use."""
    from scrfd_ref.formats.files import make_dir

    env = os.environ.get(CACHE_ENV_VAR)
    path = Path(explicit or env or Path.home() / ".cache" / "scrfd-ref")
    option = "cache folder" if explicit else (CACHE_ENV_VAR if env else "cache folder")
    return make_dir(path.expanduser().resolve(), option)


def variant_of(model: str | os.PathLike[str]) -> str | None:
    """The variant a model file is named for (``scrfd_2.5g_bnkps_dynamic.onnx`` -> ``2.5g_bnkps``)."""
    stem = Path(model).stem
    for v in sorted(VARIANTS, key=len, reverse=True):
        if stem == f"scrfd_{v}" or stem.startswith(f"scrfd_{v}_") and not stem.startswith(
                f"scrfd_{v}_bnkps"):
            return v
    return None


#: the real model files of the shared data folder (README of ../shared/data)
SHARED_MODEL_FILES: tuple[str, ...] = (
    "scrfd_500m_bnkps.onnx",
    "scrfd_500m_bnkps_dynamic.onnx",
    "scrfd_2.5g_bnkps_dynamic.onnx",
    "scrfd_1g.onnx",
    "scrfd_2.5g.onnx",
)
#: the five complete WIDER FACE val events in the shared data
SHARED_EVENTS: tuple[str, ...] = ("0--Parade", "13--Interview", "19--Couple",
                                  "20--Family_Group", "4--Dancing")
