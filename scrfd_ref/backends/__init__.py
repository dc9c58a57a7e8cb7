"""Backends by name: built-ins plus third-party ones from the ``scrfd_ref.backends``
entry-point group (``name = "package.module:factory"``; the factory takes the model
path and keyword options and returns a :class:`Backend`).

Built in: ``ort`` (ONNX Runtime CPU, or its CUDA / TensorRT providers), ``opencv``
(cv2.dnn), ``gpu`` (ONNX Runtime CUDA), ``replay`` (saved device outputs) and
``openvino`` (OpenVINO's CPU plugin; an optional extra, ``pip install -e '.[openvino]'``,
imported only when used).

May import ``core`` and ``formats`` only: a backend produces heads, it never judges.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Callable

from scrfd_ref.backends.base import Backend, stack_outputs
from scrfd_ref.core.errors import InputError

ENTRY_POINT_GROUP = "scrfd_ref.backends"

BackendFactory = Callable[..., Backend]


def _ort(model: Any, **options: Any) -> Backend:
    from scrfd_ref.backends.ort import OrtBackend

    return OrtBackend(model, **options)


def _replay(model: Any, **options: Any) -> Backend:
    from scrfd_ref.backends.replay import ReplayBackend

    return ReplayBackend(model, **options)


def _opencv(model: Any, **options: Any) -> Backend:
    from scrfd_ref.backends.opencv import OpenCVBackend

    return OpenCVBackend(model, **options)


def _gpu(model: Any, **options: Any) -> Backend:
    from scrfd_ref.backends.gpu import GpuBackend

    return GpuBackend(model, **options)


def _openvino(model: Any, **options: Any) -> Backend:
    # an optional extra: imported only when asked for; without the package the backend
    # raises BackendUnavailable with the install line
    from scrfd_ref.backends.openvino import OpenVinoBackend

    return OpenVinoBackend(model, **options)


_BUILTIN: dict[str, BackendFactory] = {"ort": _ort, "replay": _replay,
                                       "opencv": _opencv,
                                       "gpu": _gpu, "openvino": _openvino}


def builtin_backends() -> dict[str, BackendFactory]:
    """Backends shipped with scrfd-ref (name -> factory)."""
    return dict(_BUILTIN)


def plugin_backends() -> dict[str, BackendFactory]:
    """Backends registered by installed packages through the entry-point group."""
    return {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_backends() -> dict[str, BackendFactory]:
    """All backends by name; a plugin may not shadow a built-in name."""
    found = plugin_backends()
    found.update(_BUILTIN)
    return found


def get_backend(name: str, model: Any, **options: Any) -> Backend:
    """Create backend ``name`` for ``model`` with backend-specific ``options``."""
    backends = available_backends()
    if name not in backends:
        raise InputError(f"unknown backend {name!r}; available: {', '.join(sorted(backends))}")
    return backends[name](model, **options)


__all__ = ["Backend", "ENTRY_POINT_GROUP", "available_backends", "builtin_backends",
           "get_backend", "plugin_backends", "stack_outputs"]
