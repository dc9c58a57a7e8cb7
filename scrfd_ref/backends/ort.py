"""ONNX Runtime backend (CPU always; CUDA / TensorRT providers when installed and asked)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scrfd_ref.backends.base import Backend, run_in_model_batches
from scrfd_ref.core.errors import DataMissingError, InputError

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}


def resolve_providers(providers: Sequence[str] | str | None) -> list[str]:
    """Turn ``cpu``/``cuda``/``tensorrt`` aliases into ORT provider names (CPU appended).

    Raises InputError when a requested provider is not installed.
    """
    import onnxruntime as ort

    if providers is None:
        providers = ["cpu"]
    if isinstance(providers, str):
        providers = [p for p in providers.split(",") if p]
    names = [PROVIDER_ALIASES.get(p.lower(), p) for p in providers]
    available = ort.get_available_providers()
    missing = [n for n in names if n not in available]
    if missing:
        raise InputError(f"ONNX Runtime provider(s) {', '.join(missing)} not available "
                         f"(installed: {', '.join(available)})")
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
    return names


class OrtBackend(Backend):
    """Runs an ONNX model with onnxruntime.

    Args:
        model: path of the ONNX file (or serialized model bytes).
        providers: ``cpu`` (default), ``cuda``, ``tensorrt`` or full provider names.
        intra_threads: ORT intra-op threads (None: ORT's default).
        dtype: label for reports (a :data:`~scrfd_ref.core.dtypes.DTYPES` name); the model
            decides the math, the dtype the default graph optimisation.
        graph_optimization: ORT graph optimisation level ``disable``, ``basic``,
            ``extended`` or ``all``. None: ORT's default (all), except for ``int8``:
            ``basic``, which keeps the QDQ graph as the ONNX spec defines it (dequantize,
            float op, quantize: the integer result of an int8 device with int32
            accumulation, to float rounding). ``all`` fuses it into ORT's U8S8 kernels,
            which on x86 CPUs without VNNI (AVX2 ``vpmaddubsw``) saturate int16 partial
            sums: on such a CPU that cost 500m_bnkps about one point of hard AP. Timing
            runs (``scrfd-ref perf``) ask for ``all`` to time those kernels. ``bf16``:
            ``disable``, since a bf16 model in ONNX Runtime is the bf16-storage emulation
            (:mod:`scrfd_ref.device.emulate`) whose rounding casts a pass could fold away.
    """

    name = "ort"

    def __init__(self, model: str | Path | bytes, providers: Sequence[str] | str | None = None,
                 intra_threads: int | None = None, dtype: str = "fp32",
                 graph_optimization: str | None = None, spinning: bool = True) -> None:
        import onnxruntime as ort

        if not isinstance(model, bytes):
            path = Path(model)
            if not path.is_file():
                raise DataMissingError(f"model file not found: {path}")
            source: Any = str(path)
            self.model_path: Path | None = path
        else:
            source, self.model_path = model, None
        opts = ort.SessionOptions()
        if intra_threads:
            opts.intra_op_num_threads = int(intra_threads)
        if not spinning:        # idle intra-op threads sleep instead of spinning: leaves
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # the cores
            # to pipeline threads (decoding, post-processing) between inferences
        if graph_optimization is None and dtype == "int8":
            graph_optimization = "basic"
        if graph_optimization is None and dtype == "bf16":
            graph_optimization = "disable"   # keep every bf16 rounding Cast of the emulation
        self.graph_optimization = graph_optimization or "all"
        if graph_optimization is not None:
            levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                      "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                      "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                      "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
            if graph_optimization not in levels:
                raise InputError(f"graph optimisation {graph_optimization!r} is not one of "
                                 f"{', '.join(levels)}")
            opts.graph_optimization_level = levels[graph_optimization]
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(source, sess_options=opts,
                                                providers=resolve_providers(providers))
        except Exception as exc:  # ORT raises its own exception types for bad files
            raise InputError(f"{self.model_path or 'model bytes'}: ONNX Runtime cannot load "
                             f"the model: {str(exc).strip().splitlines()[0]}") from exc
        inp = self.session.get_inputs()
        if len(inp) != 1 or len(inp[0].shape) != 4:
            raise InputError(f"{self.model_path}: expected one NCHW image input, got "
                             f"{[(i.name, i.shape) for i in inp]}")
        self.input_name = inp[0].name
        self.input_dtype = np.float16 if inp[0].type == "tensor(float16)" else np.float32
        shape = inp[0].shape
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self._input_size = ((shape[3], shape[2])
                            if isinstance(shape[2], int) and isinstance(shape[3], int) else None)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.dtype = dtype

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self._input_size

    def _run_one(self, blob: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: blob})

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        blob = np.ascontiguousarray(blob, dtype=self.input_dtype)
        return run_in_model_batches(blob, self._run_one, input_size=self._input_size,
                                    fixed_batch=self._fixed_batch, label=str(self.model_path))

    def info(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"backend": self.name, "library": "onnxruntime", "version": ort.__version__,
                "providers": self.session.get_providers(), "dtype": self.dtype,
                "device": "gpu" if any(p != "CPUExecutionProvider"
                                       for p in self.session.get_providers()) else "cpu",
                "graph_optimization": self.graph_optimization,
                "model": str(self.model_path) if self.model_path else None}
