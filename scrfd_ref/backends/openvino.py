"""OpenVINO backend (an optional extra: ``pip install -e '.[openvino]'``): a third-party
compiler as a device.

The model is an ONNX file (any SCRFD layout) or an OpenVINO IR (``.xml`` beside its
``.bin``; the NNCF int8 models of :mod:`scrfd_ref.quantize.nncf_int8`), compiled for the CPU
plugin with the dtype's inference precision:

- ``fp32``: ``INFERENCE_PRECISION_HINT=f32``: exact fp32 arithmetic on any CPU (OpenVINO's
  default on a CPU with AVX512_BF16 or AMX is bf16: the hint is always set explicitly).
- ``bf16``: ``INFERENCE_PRECISION_HINT=bf16``, only where the CPU plugin reports the
  ``BF16`` optimisation capability (AVX512_BF16 or AMX-BF16); elsewhere OpenVINO would
  emulate or silently fall back, so :class:`~scrfd_ref.core.errors.BackendUnavailable`
  names the missing capability and the emulated bf16 device (``--backend ort --dtype bf16``).
- ``fp16``: ``f16``, likewise only with the ``FP16`` capability (AVX512_FP16 / AMX-FP16, ARM).
- ``int8``: an NNCF-quantized model (``FakeQuantize`` nodes; OpenVINO runs them as int8
  kernels, VNNI where the CPU has it) with the rest in f32. Given a float model for
  ``int8`` the backend refuses: quantization happens before (``scrfd-ref quantize
  --method nncf``), cached like the ONNX Runtime int8 models.

Each backend is one compiled model with one infer request; ``intra_threads`` sets
``INFERENCE_NUM_THREADS`` (one stream, no CPU pinning), so a data-parallel run is one-thread
replicas like the ONNX Runtime pool (:mod:`scrfd_ref.backends.pool`). Measured on the
2-core machine (500m_bnkps fp32, 640x640, two Python threads, best of 3 alternating 6 s
rounds): two one-thread replicas 70.9 images/s, one compiled model with 2 streams and 2
requests (OpenVINO's own data parallelism) 71.0; the replicas with OpenVINO's default CPU
pinning 35.3 (both pinned to the same core). The replicas are kept: one pool design for
every CPU backend.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scrfd_ref.backends.base import Backend, run_in_model_batches
from scrfd_ref.backends.native_errors import captured_native_stderr, native_reason
from scrfd_ref.core.errors import BackendUnavailable, DataMissingError, InputError

#: the pip line that installs this backend
INSTALL = "pip install -e '.[openvino]'"
#: dtype -> OpenVINO inference precision hint
PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
#: dtype -> the CPU plugin capability a native run needs, and the CPU features behind it
NATIVE = {"bf16": ("BF16", "AVX512_BF16 or AMX-BF16"),
          "fp16": ("FP16", "AVX512_FP16, AMX-FP16 or an ARM CPU")}
#: the emulated device that stands in where the CPU lacks the capability
EMULATED = {"bf16": "--backend ort --dtype bf16 (bf16 storage emulated in ONNX Runtime)",
            "fp16": "--backend ort --dtype fp16"}


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        if getattr(exc, "name", None) in ("openvino", None) and "openvino" in str(exc):
            raise BackendUnavailable(f"openvino: the OpenVINO runtime is not installed ({exc}); "
                                     f"{INSTALL}") from None
        raise BackendUnavailable(_broken(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a broken install fails in many ways
        raise BackendUnavailable(_broken(exc)) from None
    return openvino


def _broken(exc: BaseException) -> str:
    return (f"openvino: the OpenVINO runtime is installed but does not load "
            f"({type(exc).__name__}: {native_reason(exc)}); reinstall it: pip install "
            "--force-reinstall openvino, or uninstall it to run without")


_CORE: Any = None


def core() -> Any:
    """The process's ``openvino.Core`` (created once)."""
    global _CORE
    if _CORE is None:
        ov = _openvino()
        try:
            _CORE = ov.Core()
        except Exception as exc:  # noqa: BLE001 - the plugins of a broken install
            raise BackendUnavailable(_broken(exc)) from None
    return _CORE


def cpu_capabilities() -> list[str]:
    """The CPU plugin's ``OPTIMIZATION_CAPABILITIES`` (``FP32``, ``BF16``, ``INT8`` ...)."""
    return [str(c) for c in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def dtype_unavailable(dtype: str) -> str | None:
    """Why OpenVINO's CPU plugin cannot run ``dtype`` natively here (None when it can);
    raises BackendUnavailable when OpenVINO itself is not installed."""
    if dtype not in PRECISION:
        return f"openvino {dtype}: not a dtype OpenVINO runs (one of {', '.join(PRECISION)})"
    if dtype not in NATIVE:
        return None
    capability, features = NATIVE[dtype]
    have = cpu_capabilities()
    if capability in have:
        return None
    return (f"openvino {dtype}: this CPU ({core().get_property('CPU', 'FULL_DEVICE_NAME')}) "
            f"has no native {dtype} ({features}; the CPU plugin reports {', '.join(have)}); "
            f"the emulated {dtype} device is {EMULATED[dtype]}")


def _is_quantized(model: Any) -> bool:
    return any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


class OpenVinoBackend(Backend):
    """Runs an ONNX or OpenVINO IR model with OpenVINO's CPU plugin (module docstring).

    Args:
        model: path of an ``.onnx`` file or an IR ``.xml``.
        dtype: ``fp32``, ``bf16``, ``fp16`` or ``int8`` (the precision; int8 needs an NNCF
            model).
        intra_threads: ``INFERENCE_NUM_THREADS`` with one stream (None: OpenVINO's choice).
        device: the OpenVINO device (``CPU``).
    """

    name = "openvino"

    def __init__(self, model: str | Path, dtype: str = "fp32", intra_threads: int | None = None,
                 device: str = "CPU") -> None:
        path = Path(model)
        if not path.is_file():
            raise DataMissingError(f"model file not found: {path}")
        ov = _openvino()
        if dtype not in PRECISION:
            raise InputError(f"openvino: dtype {dtype!r} is not one of {', '.join(PRECISION)}")
        missing = dtype_unavailable(dtype) if device == "CPU" else None
        if missing:
            raise BackendUnavailable(missing)
        try:
            with captured_native_stderr() as noise:  # protobuf's own lines on a bad file
                graph = core().read_model(str(path))
        except BackendUnavailable:
            raise
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses for bad files
            raise InputError(f"{path}: OpenVINO cannot read the model: "
                             f"{native_reason(exc, noise)}") from None
        quantized = _is_quantized(graph)
        if dtype == "int8" and not quantized:
            raise InputError(f"{path}: --dtype int8 on OpenVINO needs an NNCF-quantized model "
                             "(scrfd-ref quantize --method nncf writes one); this one has no "
                             "FakeQuantize node")
        if dtype != "int8" and quantized:
            raise InputError(f"{path}: an int8 (FakeQuantize) model run as {dtype}; give "
                             "--dtype int8")
        inputs = graph.inputs
        if len(inputs) != 1 or inputs[0].get_partial_shape().rank.get_length() != 4:
            raise InputError(f"{path}: expected one NCHW image input, got "
                             f"{[str(i.get_partial_shape()) for i in inputs]}")
        shape = inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape]
        self._fixed_batch = dims[0]
        self._input_size = (dims[3], dims[2]) if dims[2] and dims[3] else None
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": PRECISION[dtype],
                                  "PERFORMANCE_HINT": "LATENCY"}
        if intra_threads:
            # no pinning: each compiled model would pin its one stream to the same first
            # core, and one-thread replicas would share it (35 instead of 71 images/s)
            config.update(INFERENCE_NUM_THREADS=int(intra_threads), NUM_STREAMS=1,
                          ENABLE_CPU_PINNING=False)
        try:
            self.compiled = core().compile_model(graph, device, config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO's own exception types
            raise InputError(f"{path}: OpenVINO cannot compile the model for {device}: "
                             f"{native_reason(exc)}") from None
        self.request = self.compiled.create_infer_request()
        self._outputs = list(self.compiled.outputs)
        self.model_path = path
        self.dtype = dtype
        self.device = device
        self._version = ov.__version__

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self._input_size

    def _run_one(self, blob: np.ndarray) -> list[np.ndarray]:
        result = self.request.infer({0: blob})
        # the request reuses its output buffers: copy before the next call
        return [np.array(result[o], copy=True) for o in self._outputs]

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        blob = np.ascontiguousarray(blob, dtype=np.float32)
        return run_in_model_batches(blob, self._run_one, input_size=self._input_size,
                                    fixed_batch=self._fixed_batch, label=str(self.model_path))

    def info(self) -> dict[str, Any]:
        precision = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        return {"backend": self.name, "library": "openvino", "version": self._version,
                "dtype": self.dtype, "device": self.device.lower(),
                "inference_precision": str(getattr(precision, "type_name", precision)),
                "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
                "cpu": str(core().get_property("CPU", "FULL_DEVICE_NAME")),
                "cpu_capabilities": cpu_capabilities(), "model": str(self.model_path)}

    def close(self) -> None:
        self.request = None
        self.compiled = None
