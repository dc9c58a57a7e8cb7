"""Sessions for a data-parallel run: one decision, used by every command that runs one.

On a CPU, one ONNX Runtime session per core with one intra-op thread each, every session
taking whole images, beats one session with as many intra-op threads as cores: on the
2-core reference machine 42-50 against 33-37 images/s for ``wider-run`` (500m_bnkps),
because a two-thread inference stalls whenever another thread (decoding, writing) takes
one of its cores. Anything else (another backend, an accelerator provider: one device,
one session; a run asked for one worker) gets the one session it asked for.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scrfd_ref.backends import get_backend
from scrfd_ref.backends.base import Backend
from scrfd_ref.core.parallel import usable_cores

CPU_PROVIDERS = ("cpu", "CPUExecutionProvider")


def replicable(name: str, options: Mapping[str, Any]) -> bool:
    """Whether backend ``name`` with ``options`` may run as several one-thread sessions:
    ONNX Runtime on CPU providers, and OpenVINO's CPU plugin (one-thread replicas, as fast
    as one compiled model with a stream per core: :mod:`scrfd_ref.backends.openvino`)."""
    if name == "openvino":
        return str(options.get("device") or "CPU") == "CPU"
    providers = [p for p in str(options.get("providers") or "").split(",") if p]
    return name == "ort" and all(p in CPU_PROVIDERS for p in providers)


def pool_size(name: str, options: Mapping[str, Any], workers: int | None = None) -> int:
    """How many sessions a run of backend ``name`` gets: ``workers`` (default: one per
    usable core) when the backend is :func:`replicable`, else 1."""
    wanted = usable_cores() if workers is None else workers
    return max(1, wanted) if replicable(name, options) else 1


def pool_options(options: Mapping[str, Any], size: int) -> dict[str, Any]:
    """Backend options of each session of a pool of ``size``: one intra-op thread each
    when there are several, the options as given for one."""
    return {**options, "intra_threads": 1} if size > 1 else dict(options)


def session_pool(name: str, model: Any, workers: int | None = None,
                 **options: Any) -> list[Backend]:
    """The sessions of a data-parallel run (:func:`pool_size` of them, each with
    :func:`pool_options`); the caller closes them."""
    size = pool_size(name, options, workers)
    return [get_backend(name, model, **pool_options(options, size)) for _ in range(size)]
