"""GPU backend: ONNX Runtime on an NVIDIA GPU (CUDA provider, TensorRT optional).

Needs the ``onnxruntime-gpu`` build (it provides ``CUDAExecutionProvider``; the CPU
``onnxruntime`` wheel does not) and a working CUDA driver. Where either is missing,
constructing :class:`GpuBackend` raises :class:`~scrfd_ref.core.errors.BackendUnavailable`
with a one-line reason, so tests and benchmarks skip cleanly on CPU machines.

ONNX Runtime falls back to the CPU silently when the CUDA provider is installed but
cannot start (no GPU, driver or cuDNN mismatch); the backend checks the providers the
session really got and refuses to pose as a GPU backend in that case.

How to verify on a GPU machine::

    pip install onnxruntime-gpu            # instead of onnxruntime, same version line
    python -c "import onnxruntime as o; print(o.get_available_providers())"
    #  -> [..., 'CUDAExecutionProvider', 'CPUExecutionProvider']
    nvidia-smi                              # the GPU is visible
    python -m pytest tests/backends/test_opencv_backend.py -k gpu -q   # no longer skipped
    python -c "from scrfd_ref.backends import get_backend; \\
        b = get_backend('gpu', 'scrfd_500m_bnkps.onnx'); print(b.info())"

``info()["providers"]`` must start with ``CUDAExecutionProvider`` (or
``TensorrtExecutionProvider`` with ``tensorrt=True``); then run the conformance suite
with ``--backend gpu`` for each dtype and record images/s at 640, batch 1 and 8.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from scrfd_ref.backends.ort import OrtBackend
from scrfd_ref.core.errors import BackendUnavailable

CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"


def gpu_providers(tensorrt: bool = False) -> list[str]:
    """The ORT providers the GPU backend asks for, best first.

    Raises:
        BackendUnavailable: onnxruntime has no CUDA provider (CPU-only build), or
            TensorRT was asked for and is not built in.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if CUDA_PROVIDER not in available:
        raise BackendUnavailable(
            f"gpu: no CUDA provider in onnxruntime {ort.__version__} (installed: "
            f"{', '.join(available)}); pip install onnxruntime-gpu on a machine with an "
            "NVIDIA GPU")
    if tensorrt and TENSORRT_PROVIDER not in available:
        raise BackendUnavailable(
            f"gpu: TensorRT requested but onnxruntime {ort.__version__} has no "
            f"{TENSORRT_PROVIDER} (installed: {', '.join(available)})")
    return [TENSORRT_PROVIDER, CUDA_PROVIDER] if tensorrt else [CUDA_PROVIDER]


class GpuBackend(OrtBackend):
    """ONNX Runtime with the CUDA execution provider (TensorRT first when asked).

    Args:
        model: path of the ONNX file (or serialized model bytes).
        dtype: label for reports (``fp32``/``fp16``/``int8``); the model decides the math.
        tensorrt: put ``TensorrtExecutionProvider`` before CUDA.
        intra_threads: ORT intra-op threads for the CPU fallback parts of the graph.

    The GPU is chosen with ``CUDA_VISIBLE_DEVICES``.

    Raises:
        BackendUnavailable: no CUDA provider, or the session fell back to the CPU.
    """

    name = "gpu"

    def __init__(self, model: str | Path | bytes, dtype: str = "fp32", tensorrt: bool = False,
                 intra_threads: int | None = None) -> None:
        providers = gpu_providers(tensorrt)
        super().__init__(model, providers=providers, intra_threads=intra_threads, dtype=dtype)
        got = self.session.get_providers()
        if not any(p in got for p in providers):
            raise BackendUnavailable(
                f"gpu: onnxruntime fell back to {', '.join(got)} for {self.model_path or 'model'} "
                "(CUDA provider present but could not start: no GPU, driver or CUDA/cuDNN "
                "mismatch)")

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["device"] = "gpu"
        return info
