"""scrfd-ref: the trusted reference for SCRFD face detectors on accelerators.

The public API (imported lazily, so ``import scrfd_ref`` stays cheap)::

    from scrfd_ref import Detector, get_profile, evaluate, load_ground_truth
    det = Detector("scrfd_500m_bnkps.onnx", profile="widerface-eval")
    faces = det.detect(image)          # Detections: boxes (n, 4), scores (n,), landmarks

=====================  ==============================================================
name                   what
=====================  ==============================================================
Detector               a backend plus a profile: image -> detections
Detections             final detections of one image (original pixels)
Profile, PROFILES,     the named pre/post-processing settings
get_profile
Backend, get_backend,  the backend interface and registry (``scrfd_ref.backends``
available_backends     entry-point group for third-party runtimes)
read_image             image files with clear errors and a pixel limit
load_ground_truth      WIDER FACE ground truth (.mat or txt)
evaluate, evaluate_dir official-protocol WIDER FACE AP
evaluate_slices,       AP and recall at the operating point per face-attribute / scale
paired_slices          slice, one run or device vs reference with intervals
ScrfdRefError, ...     the errors, each with the CLI exit status it means
=====================  ==============================================================

The subpackages (``core``, ``formats``, ``backends``, ``widerface``, ``device``,
``conformance``, ``perf``, ``cli``) are described in docs/architecture.md.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API: dict[str, str] = {
    "Detector": "scrfd_ref.detector",
    "Detections": "scrfd_ref.core.detections",
    "Profile": "scrfd_ref.core.profiles",
    "PROFILES": "scrfd_ref.core.profiles",
    "get_profile": "scrfd_ref.core.profiles",
    "Backend": "scrfd_ref.backends",
    "get_backend": "scrfd_ref.backends",
    "available_backends": "scrfd_ref.backends",
    "read_image": "scrfd_ref.formats.images",
    "load_ground_truth": "scrfd_ref.formats.ground_truth",
    "evaluate": "scrfd_ref.widerface.evaluate",
    "evaluate_dir": "scrfd_ref.widerface.evaluate",
    "evaluate_slices": "scrfd_ref.widerface.slice_eval",
    "paired_slices": "scrfd_ref.widerface.slice_eval",
    "ScrfdRefError": "scrfd_ref.core.errors",
    "InputError": "scrfd_ref.core.errors",
    "UsageError": "scrfd_ref.core.errors",
    "DataMissingError": "scrfd_ref.core.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'scrfd_ref' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
