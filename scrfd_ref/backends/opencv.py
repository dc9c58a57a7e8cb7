"""OpenCV DNN backend: ``cv2.dnn`` runs the same ONNX graph with its own importer and kernels.

This is the independent implementation the suite cross-checks ONNX Runtime against. The
backend hides OpenCV's differences from ONNX Runtime so that both return the same thing:

- **output order**: the classic engine lists its unconnected outputs in its own order
  (alphabetical for the named 500m_bnkps export); outputs are therefore requested by
  their ONNX graph output names and returned in graph order. If OpenCV does not know
  some of those names, its outputs are matched back to the graph outputs by shape
  (SCRFD order: scores, boxes, landmarks; strides ascending within each kind), and
  shapes are checked against the graph's declared output shapes when the model input is
  static;
- **batch axis**: outputs get the rank the ONNX graph declares (a leading batch axis of
  1 is dropped or added), so shapes equal ONNX Runtime's;
- **batch > 1** on a batch-1 model: one run per image, joined with
  :func:`~scrfd_ref.backends.base.stack_outputs` (OpenCV would otherwise run the batch
  and silently merge it into one image's worth of anchors).

OpenCV 5.0 has two ONNX engines (5.1 only the new one). ``engine="auto"`` tries the new
engine (dynamic shapes, fp16 weights) and falls back to the classic one where it exists;
the engine that loaded is in
:meth:`OpenCVBackend.info`. (With OpenCV 5.0.0 the new engine runs all five shared
models in fp32 and fp16; the classic one runs only the static scrfd_500m_bnkps in fp32:
it rejects the dynamic exports' ``Shape`` ops and fp16 weights.) A model is probed once at construction on a zero blob, so a
model OpenCV cannot load *or run* raises :class:`~scrfd_ref.core.errors.BackendUnavailable`
with a one-line reason (pytest can skip on it).

int8 QDQ models are refused by default (``allow_qdq=False``): OpenCV 5.0 rejects some of
ORT's QDQ files at load (``DequantizeLinear``: "zpshape == scshape" on scrfd_1g /
scrfd_2.5g, whose InstanceNormalization bias gets a ``(1,)`` scale and a scalar zero
point) and silently miscomputes others (scrfd_2.5g_bnkps: constant stride-8/16 scores
unless the heads are kept float). ``allow_qdq=True`` runs them anyway, for study.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from scrfd_ref.backends.base import Backend, run_in_model_batches
from scrfd_ref.core.errors import (
    BackendUnavailable,
    DataMissingError,
    InputError,
    LayoutError,
)

ENGINES = ("auto", "new", "classic")
#: input (W, H) of the load-time probe run for models with a dynamic input
PROBE_SIZE = (64, 64)
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})

Dims = tuple[int | None, ...]


class OpenCVBackend(Backend):
    """Runs an ONNX model with ``cv2.dnn`` (CPU, OpenCV's own kernels).

    Args:
        model: path of the ONNX file (or its serialized bytes).
        dtype: label for reports (``fp32``/``fp16``/``int8``); the model decides the math.
        input_size: ``(W, H)`` to pin a dynamic-input model to (a fixed-input model
            keeps its own size and must agree).
        engine: ``auto`` (new engine, else classic), ``new`` or ``classic``.
        allow_qdq: run int8 QDQ models although OpenCV 5.0 miscomputes some of them.

    Raises:
        DataMissingError: the file does not exist.
        InputError: the file is not ONNX, has no single NCHW input, or ``input_size``
            contradicts the model's fixed input.
        BackendUnavailable: OpenCV cannot load or run the model (or it is int8 QDQ).
    """

    name = "opencv"

    def __init__(self, model: str | Path | bytes, dtype: str = "fp32",
                 input_size: tuple[int, int] | None = None, engine: str = "auto",
                 allow_qdq: bool = False) -> None:
        if engine not in ENGINES:
            raise InputError(f"unknown OpenCV engine {engine!r}; known: {', '.join(ENGINES)}")
        self.model_path, data = _read_model(model)
        graph = _parse_graph(data, self.label)
        if not allow_qdq and _QDQ_OPS & graph["ops"]:
            raise BackendUnavailable(
                f"opencv: {self.label} is an int8 QDQ model; cv2.dnn {_cv2_version()} rejects "
                "or miscomputes ORT's QDQ graphs (pass allow_qdq=True to run it anyway)")
        self.dtype = dtype
        self.input_dims: Dims = graph["input_dims"]
        self.output_names: list[str] = graph["output_names"]
        self.output_dims: list[Dims] = graph["output_dims"]
        self._input_size = _pick_input_size(self.input_dims, input_size, self.label)
        self._fixed_batch = self.input_dims[0]
        self.net, self.engine = _load_net(self.model_path, data, engine, self._probe_blob(),
                                          self.label)

    @property
    def label(self) -> str:
        """The model file for messages (``model bytes`` when given bytes)."""
        return str(self.model_path) if self.model_path else "model bytes"

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self._input_size

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        blob = np.ascontiguousarray(blob, dtype=np.float32)
        if blob.ndim != 4:
            raise InputError(f"{self.label}: expected a (B, 3, H, W) blob, got shape {blob.shape}")
        return run_in_model_batches(blob, self._run_one, input_size=self._input_size,
                                    fixed_batch=self._fixed_batch, label=self.label)

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "library": "opencv", "version": _cv2_version(),
                "engine": self.engine, "dnn_backend": "opencv", "target": "cpu",
                "dtype": self.dtype, "device": "cpu", "model": self.label}

    def close(self) -> None:
        self.net = None

    # ------------------------------------------------------------------ internals

    def _probe_blob(self) -> np.ndarray:
        w, h = self._input_size or PROBE_SIZE
        return np.zeros((self._fixed_batch or 1, 3, h, w), np.float32)

    def _run_one(self, blob: np.ndarray) -> list[np.ndarray]:
        import cv2

        try:
            return _forward(self.net, blob, self.output_names, self.output_dims,
                            all(d is not None for d in self.input_dims))
        except cv2.error as exc:
            raise InputError(f"{self.label}: OpenCV cannot run a {tuple(blob.shape)} blob: "
                             f"{_cv2_reason(exc)}") from exc


# ----------------------------------------------------------------------------- model file

def _read_model(model: str | Path | bytes) -> tuple[Path | None, bytes]:
    if isinstance(model, (bytes, bytearray)):
        return None, bytes(model)
    path = Path(model)
    if not path.is_file():
        raise DataMissingError(f"model file not found: {path}")
    return path, path.read_bytes()


def _parse_graph(data: bytes, label: str) -> dict[str, Any]:
    """Input dims, output names/dims and op types of a serialized ONNX model."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError) as exc:
        raise InputError(f"{label}: not a readable ONNX model (truncated, corrupt or not "
                         f"ONNX): {exc}") from exc
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if not model.graph.node or len(inputs) != 1 or len(_dims(inputs[0])) != 4:
        raise InputError(f"{label}: expected an ONNX graph with one NCHW image input, got "
                         f"inputs {[i.name for i in inputs]}")
    return {"input_dims": _dims(inputs[0]),
            "output_names": [o.name for o in model.graph.output],
            "output_dims": [_dims(o) for o in model.graph.output],
            "ops": {n.op_type for n in model.graph.node}}


def _dims(value_info: Any) -> Dims:
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                 for d in value_info.type.tensor_type.shape.dim)


def _pick_input_size(dims: Dims, wanted: tuple[int, int] | None,
                     label: str) -> tuple[int, int] | None:
    fixed = (dims[3], dims[2]) if dims[2] is not None and dims[3] is not None else None
    if wanted is None:
        return fixed
    wanted = (int(wanted[0]), int(wanted[1]))
    if fixed is not None and wanted != fixed:
        raise InputError(f"{label}: model input is fixed at {fixed[0]}x{fixed[1]}, "
                         f"input_size {wanted[0]}x{wanted[1]} was asked for")
    return wanted


# ----------------------------------------------------------------------------- OpenCV

def _cv2_version() -> str:
    import cv2

    return cv2.__version__


def _cv2_reason(exc: BaseException) -> str:
    """The informative line of a cv2.error (its message spans several lines)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    useful = [ln for ln in lines if "error:" in ln] or lines or [type(exc).__name__]
    return useful[-1][:300]


def engine_ids() -> dict[str, int]:
    """The ONNX engines of the installed OpenCV: ``{"new": id, "classic": id}``. OpenCV 5.0
    names them ENGINE_NEW / ENGINE_CLASSIC; 5.1 keeps only the new one, as ENGINE_OPENCV."""
    import cv2

    dnn = cv2.dnn
    found = {"new": getattr(dnn, "ENGINE_NEW", getattr(dnn, "ENGINE_OPENCV", None)),
             "classic": getattr(dnn, "ENGINE_CLASSIC", None)}
    return {name: ident for name, ident in found.items() if ident is not None}


def _load_net(path: Path | None, data: bytes, engine: str, probe: np.ndarray,
              label: str) -> tuple[Any, str]:
    """Load (and probe-run) the model with the requested engine(s); return net and engine.

    Loads from the file: OpenCV 5.0's in-memory overload ignores the engine argument
    (always the new engine), so bytes go through a temporary file.
    """
    import cv2

    candidates = engine_ids()
    if engine not in ("auto", *candidates):
        raise BackendUnavailable(f"opencv {cv2.__version__} has no {engine} engine (OpenCV 5.1 "
                                 "removed the classic one); use engine 'new' or 'auto'")
    tried = [e for e in ("new", "classic") if e in candidates] if engine == "auto" else [engine]
    reasons = []
    with _model_file(path, data) as file:
        for name in tried:
            try:
                net = cv2.dnn.readNetFromONNX(str(file), candidates[name])
                net.setInput(probe)
                net.forward(list(net.getUnconnectedOutLayersNames()))
                return net, name
            except cv2.error as exc:
                reasons.append(f"{name} engine: {_cv2_reason(exc)}")
    raise BackendUnavailable(f"opencv {cv2.__version__} cannot load/run {label}: "
                             + "; ".join(reasons))


@contextlib.contextmanager
def _model_file(path: Path | None, data: bytes) -> Iterator[Path]:
    """``path`` itself, or a temporary ``.onnx`` file holding ``data``."""
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="scrfd-ref-opencv-") as folder:
        file = Path(folder) / "model.onnx"
        file.write_bytes(data)
        yield file


def _forward(net: Any, blob: np.ndarray, names: Sequence[str], dims: Sequence[Dims],
             static: bool) -> list[np.ndarray]:
    """One forward pass; outputs in ONNX graph order with ONNX ranks.

    ``static``: the model input is fully fixed, so the declared output shapes are
    trustworthy and are checked (dynamic exports carry stale 640x640 output shapes).
    """
    net.setInput(blob)
    known = list(net.getUnconnectedOutLayersNames())
    if set(names) <= set(known):
        arrays = [np.asarray(a) for a in net.forward(list(names))]
    else:
        arrays = _match_by_shape([np.asarray(a) for a in net.forward(known)], dims)
    outs = [_to_rank(a, len(d)) for a, d in zip(arrays, dims)]
    if static:
        _check_shapes(outs, names, dims)
    return outs


def _to_rank(array: np.ndarray, rank: int) -> np.ndarray:
    """Drop or add a leading axis of 1 so ``array`` has the ONNX-declared rank."""
    if array.ndim == rank + 1 and array.shape[0] == 1:
        return array[0]
    if array.ndim == rank - 1:
        return array[None]
    return array


def _scrfd_order(array: np.ndarray) -> tuple[int, int]:
    """Sort key: kind by channel count (1, 4, 10), then stride ascending (more rows first).

    Standard outputs ``(N, C)`` / ``(B, N, C)`` carry C last; device maps
    ``(B, 2*C, H, W)`` carry 2*C on axis 1.
    """
    if array.ndim in (2, 3):
        channels = int(array.shape[-1])
    else:
        channels = int(array.shape[1]) // 2 if array.ndim == 4 else 0
    kind = {1: 0, 4: 1, 10: 2}.get(channels, 3)
    return kind, -int(array.size // max(channels, 1))


def _compatible(array: np.ndarray, dims: Dims) -> bool:
    shape = _to_rank(array, len(dims)).shape
    return len(shape) == len(dims) and all(d is None or d == s for d, s in zip(dims, shape))


def _match_by_shape(arrays: list[np.ndarray], dims: Sequence[Dims]) -> list[np.ndarray]:
    """Assign OpenCV's outputs to ONNX outputs: first compatible shape, in SCRFD order."""
    if len(arrays) != len(dims):
        raise LayoutError(f"OpenCV produced {len(arrays)} outputs, the ONNX graph declares "
                          f"{len(dims)}")
    pool = sorted(arrays, key=_scrfd_order)
    matched = []
    for d in dims:
        pick = next((i for i, a in enumerate(pool) if _compatible(a, d)), None)
        if pick is None:
            raise LayoutError(f"no OpenCV output fits the declared ONNX output shape {d}; "
                              f"left: {[a.shape for a in pool]}")
        matched.append(pool.pop(pick))
    return matched


def _check_shapes(outs: Sequence[np.ndarray], names: Sequence[str], dims: Sequence[Dims]) -> None:
    for out, name, d in zip(outs, names, dims):
        if not _compatible(out, d):
            raise LayoutError(f"OpenCV output {name!r} has shape {out.shape}, the ONNX graph "
                              f"declares {tuple(x if x is not None else '?' for x in d)}")
