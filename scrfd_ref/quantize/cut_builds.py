"""Build and run one piece of a cut SCRFD graph as a device (backend + dtype).

``localize`` cuts the graph into plain ONNX models (static shapes, float32 inputs and
outputs, any number, any names); :func:`build_cut_runner` converts or compiles an fp32
piece for a device of :data:`CUT_DEVICES`. The :class:`CutRunner` keeps float32 at the
boundary (the device's precision is inside) and returns the fp32 model's output order and
shapes. Per device:

- ``ort/fp16``: a graph output that a node of the piece also reads goes out through an
  ``Identity``, else ``keep_io_types`` feeds that node the float32 output cast (ORT then
  refuses the model: float and float16 bound to one type).
- ``ort/int8``: opset 13, ``quantize_static`` as :mod:`scrfd_ref.quantize.int8_build`
  (QDQ, per-channel ``QInt8`` weights, ``QUInt8`` activations) with the default recipe's
  percentile 99.999: a feed is a whole feature map, so a few feeds hold enough values to
  cut outliers (5 feeds, cuts of scrfd_500m_bnkps: 1-3 dB more SNR than MinMax, up to 3x
  its build time). The piece's outputs keep their Q/DQ pair too: what an int8 device
  hands on is int8. Graph optimisation ``basic``, as the ``ort`` backend runs int8.
- ``ort/fp16-storage`` / ``ort/bf16-storage``: :func:`scrfd_ref.device.emulate.round_storage`,
  graph optimisation disabled (every rounding cast kept).
- ``openvino/int8``: ``nncf.quantize`` (default preset, as :mod:`scrfd_ref.quantize.nncf_int8`)
  of the model OpenVINO reads from the ONNX file, saved as IR, compiled with hint ``f32``.
"""
from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scrfd_ref.core.errors import BackendUnavailable, DataMissingError, InputError, LayoutError

#: device name -> one-line description
CUT_DEVICES: dict[str, str] = {
    "ort/fp32": "ONNX Runtime CPU, the fp32 model as it is (the reference)",
    "ort/fp16": "ONNX Runtime CPU, float16 model (onnxconverter_common, float32 I/O)",
    "ort/int8": "ONNX Runtime CPU, static QDQ int8, per-channel weights, percentile calibration",
    "ort/fp16-storage": "ONNX Runtime CPU, tensors and weights rounded to float16, fp32 math",
    "ort/bf16-storage": "ONNX Runtime CPU, tensors and weights rounded to bfloat16, fp32 math",
    "openvino/fp32": "OpenVINO CPU plugin, inference precision f32",
    "openvino/bf16": "OpenVINO CPU plugin, inference precision bf16 (native bf16 CPUs only)",
    "openvino/int8": "OpenVINO CPU plugin, NNCF post-training int8 (default preset)",
    "opencv/fp32": "OpenCV DNN (cv2.dnn: its own ONNX engine and kernels), fp32",
}
#: devices that need calibration feeds
INT8_DEVICES = ("ort/int8", "openvino/int8")
#: ORT graph optimisation of the ORT devices that do not take ORT's default (all)
_ORT_LEVEL = {"ort/int8": "ORT_ENABLE_BASIC", "ort/fp16-storage": "ORT_DISABLE_ALL",
              "ort/bf16-storage": "ORT_DISABLE_ALL"}

Feed = dict[str, np.ndarray]
Infer = Callable[[Any, Feed], list]


def _known(device: str) -> None:
    if device not in CUT_DEVICES:
        raise InputError(f"unknown cut device {device!r}; known: {', '.join(CUT_DEVICES)}")


def device_unavailable(device: str) -> str | None:
    """Why ``device`` cannot run here (the OpenVINO extra missing, with its install line;
    no native bf16 in this CPU), or None when it can.

    Raises:
        InputError: ``device`` is not one of :data:`CUT_DEVICES`.
    """
    _known(device)
    if not device.startswith("openvino/"):
        return None
    from scrfd_ref.backends.openvino import core, dtype_unavailable
    from scrfd_ref.quantize.nncf_int8 import nncf_missing

    try:
        core()
    except BackendUnavailable as exc:
        return str(exc)
    return nncf_missing() if device == "openvino/int8" else dtype_unavailable(device[9:])


class CutRunner:
    """One fp32 cut (``model_path``) built for one ``device`` by :func:`build_cut_runner`;
    ``input_names`` / ``output_names`` in graph order (the order :meth:`run` returns). A
    context manager: :meth:`close` on exit."""

    def __init__(self, device: str, model_path: Path, signature: dict[str, Any], engine: Any,
                 infer: Infer, cleanup: Callable[[], None]) -> None:
        self.device, self.model_path = device, model_path
        self.input_names: list[str] = list(signature["inputs"])
        self.output_names: list[str] = list(signature["outputs"])
        self._shapes = signature["inputs"]
        self._dims = list(signature["outputs"].values())
        self._engine, self._infer, self._cleanup = engine, infer, cleanup

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Float32 outputs (the fp32 model's shapes, in :attr:`output_names` order) for
        ``feed`` (input name -> float32 array of that input's shape).

        Raises:
            InputError: a missing or unknown input, an array of the wrong shape, a closed
                runner, or a run the engine refuses.
            LayoutError: the engine returned outputs that do not fit the model's.
        """
        label = f"{self.model_path.name} on {self.device}"
        if self._engine is None:
            raise InputError(f"{label}: the runner is closed")
        outs = list(self._infer(self._engine, _checked_feed(feed, self._shapes, label)))
        if len(outs) != len(self._dims):
            raise LayoutError(f"{label}: {len(outs)} outputs, the model has {len(self._dims)}")
        return [_conform(o, d, n, label) for o, d, n in zip(outs, self._dims, self.output_names)]

    def close(self) -> None:
        """Release the compiled model and the temporary folder, if any (idempotent)."""
        if self._engine is not None:
            self._engine = None
            self._cleanup()

    def __enter__(self) -> CutRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def built_model(model_path: Path, device: str, folder: Path) -> Path:
    """Where :func:`build_cut_runner` writes the ONNX file it converts ``model_path`` to
    for an ``ort/*`` device, in ``folder`` (its ``work_dir``)."""
    return Path(folder) / f"{Path(model_path).stem}.{device.replace('/', '-')}.onnx"


def build_cut_runner(model_path: Path, device: str,
                     calibration: Sequence[dict[str, np.ndarray]] = (),
                     work_dir: Path | None = None) -> CutRunner:
    """Convert or compile the fp32 cut ``model_path`` for ``device``; its runner.

    Args:
        model_path: the fp32 ONNX piece (static input shapes, float32 inputs and outputs).
        device: one of :data:`CUT_DEVICES`.
        calibration: feeds (input name -> float32 array of the input's shape) the int8
            devices calibrate on (all of them); the other devices ignore them.
        work_dir: folder the converted model is written to, as
            ``<stem>.<backend>-<dtype>.onnx`` (``.xml`` + ``.bin`` for openvino/int8);
            created if missing. None: a temporary folder, removed by :meth:`CutRunner.close`.

    Raises:
        InputError: unknown device, unreadable or dynamic-input model, int8 without
            calibration feeds, a feed that does not fit, a model the engine refuses.
        DataMissingError: no file at ``model_path``.
        BackendUnavailable: the device cannot run here (:func:`device_unavailable`).
    """
    import onnx

    _known(device)
    model_path = Path(model_path)
    if not model_path.is_file():
        raise DataMissingError(f"model file not found: {model_path}")
    try:
        model = onnx.load(str(model_path))
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise InputError(f"{model_path}: not a readable ONNX model: {exc}") from None
    signature = _signature(model, model_path)
    feeds: list[Feed] = []
    if device in INT8_DEVICES:
        if not calibration:
            raise InputError(f"{device} needs calibration feeds (input name -> float32 array) "
                             f"to quantize {model_path.name}; none were given")
        feeds = [_checked_feed(f, signature["inputs"], f"calibration feed {k}")
                 for k, f in enumerate(calibration)]
    reason = device_unavailable(device)   # after the input checks, which need no extra
    if reason:
        raise BackendUnavailable(reason)
    folder = Path(tempfile.mkdtemp(prefix="scrfd-cut.") if work_dir is None else work_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = str(built_model(model_path, device, folder).with_suffix(""))

    def cleanup() -> None:
        if work_dir is None:
            shutil.rmtree(folder, ignore_errors=True)

    backend, dtype = device.split("/")
    try:
        if backend == "ort":
            engine, infer = _ort(model, model_path, device, stem, feeds)
        elif backend == "openvino":
            engine, infer = _openvino(model_path, dtype, stem, feeds, list(signature["outputs"]))
        else:
            engine, infer = _opencv(model_path, list(signature["outputs"]))
    except BaseException:
        cleanup()
        raise
    return CutRunner(device, model_path, signature, engine, infer, cleanup)


# ----------------------------------------------------------------------------- model I/O

def _dims(value_info: Any) -> tuple[int | None, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                 for d in value_info.type.tensor_type.shape.dim)


def _signature(model: Any, path: Path) -> dict[str, Any]:
    """``inputs``: name -> static shape; ``outputs``: name -> dims (None where unknown)."""
    import onnx

    inits = {i.name for i in model.graph.initializer}
    inputs = {i.name: _dims(i) for i in model.graph.input if i.name not in inits}
    dynamic = [n for n, d in inputs.items() if None in d]
    if dynamic:
        raise InputError(f"{path}: input(s) {', '.join(dynamic)} have dynamic dims; a cut "
                         "needs static input shapes")
    outputs = onnx.shape_inference.infer_shapes(model).graph.output
    return {"inputs": inputs, "outputs": {o.name: _dims(o) for o in outputs}}


def _checked_feed(feed: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
                  what: str) -> Feed:
    """``feed`` as contiguous float32 arrays, checked against the input names and shapes."""
    if not isinstance(feed, dict) or set(feed) != set(shapes):
        got = sorted(feed) if isinstance(feed, dict) else type(feed).__name__
        raise InputError(f"{what}: expected inputs {sorted(shapes)}, got {got}")
    out = {n: np.ascontiguousarray(feed[n], dtype=np.float32) for n in shapes}
    for name, shape in shapes.items():
        if out[name].shape != shape:
            raise InputError(f"{what}: input {name!r} has shape {out[name].shape}, the model "
                             f"wants {shape}")
    return out


def _conform(arr: Any, dims: tuple[int | None, ...], name: str, label: str) -> np.ndarray:
    """``arr`` as float32 with the declared shape (an engine may drop a leading 1)."""
    arr = np.asarray(arr, dtype=np.float32)
    if None in dims or arr.shape == dims:
        return arr
    if arr.size == int(np.prod(dims)):
        return arr.reshape(dims)
    raise LayoutError(f"{label}: output {name!r} has shape {arr.shape}, the model declares "
                      f"{dims}")


# ----------------------------------------------------------------------------- engines

def _ort(model: Any, src: Path, device: str, stem: str, feeds: list[Feed]) -> tuple[Any, Infer]:
    import onnx
    import onnxruntime as ort

    dtype, path = device.split("/")[1], Path(stem + ".onnx")
    if dtype == "fp32":
        path = src
    elif dtype == "fp16":
        from scrfd_ref.quantize.write import _write_fp16

        _write_fp16(_outputs_via_identity(model), path, ())
    elif dtype == "int8":
        _ort_int8(model, src, path, feeds)
    else:
        from scrfd_ref.device.emulate import round_storage

        onnx.save(round_storage(model, dtype), str(path))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if device in _ORT_LEVEL:
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _ORT_LEVEL[device])
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT's own exception types
        raise InputError(f"{path}: ONNX Runtime cannot load the {device} model: "
                         f"{str(exc).strip().splitlines()[0][:300]}") from None
    return sess, lambda s, feed: s.run(None, feed)


def _outputs_via_identity(model: Any) -> Any:
    """A copy of ``model`` where each graph output that a node also reads comes out of an
    ``Identity`` (the producer and the readers use the tensor renamed ``<name>__inner``)."""
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    shared = {o.name for o in g.output} & {i for n in g.node for i in n.input}
    for n in g.node:
        n.input[:] = [f"{i}__inner" if i in shared else i for i in n.input]
        n.output[:] = [f"{o}__inner" if o in shared else o for o in n.output]
    g.node.extend(helper.make_node("Identity", [f"{t}__inner"], [t], name=f"{t}__out")
                  for t in sorted(shared))
    return m


def _ort_int8(model: Any, src: Path, dst: Path, feeds: list[Feed]) -> None:
    import onnxruntime.quantization as oq

    from scrfd_ref.device.model_files import upgrade_opset
    from scrfd_ref.quantize import convert as recipe
    from scrfd_ref.quantize.write import _quiet_ort_advice

    class _Reader(oq.CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self) -> Feed | None:
            return next(self._feeds, None)

    upgraded = upgrade_opset(model, src, recipe.INT8_OPSET)
    with _quiet_ort_advice(), contextlib.redirect_stdout(io.StringIO()):
        oq.quantize_static(upgraded, str(dst), _Reader(), quant_format=oq.QuantFormat.QDQ,
                           per_channel=True, reduce_range=False,
                           activation_type=getattr(oq.QuantType, recipe.ACTIVATION_TYPE),
                           weight_type=getattr(oq.QuantType, recipe.WEIGHT_TYPE),
                           calibrate_method=oq.CalibrationMethod.Percentile,
                           extra_options={"CalibPercentile": recipe.DEFAULT_PERCENTILE})


def _openvino(src: Path, dtype: str, stem: str, feeds: list[Feed],
              names: list[str]) -> tuple[Any, Infer]:
    from scrfd_ref.backends.native_errors import captured_native_stderr, native_reason
    from scrfd_ref.backends.openvino import PRECISION, core

    path = src
    try:
        if dtype == "int8":
            import nncf
            import openvino as ov

            with captured_native_stderr() as noise:
                graph = core().read_model(str(src))
            logger = logging.getLogger("nncf")
            level = logger.level
            logger.setLevel(logging.ERROR)   # its progress bars go to stdout, its notes here
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    graph = nncf.quantize(graph, nncf.Dataset(feeds), subset_size=len(feeds))
            finally:
                logger.setLevel(level)
            path = Path(stem + ".xml")
            ov.save_model(graph, str(path), compress_to_fp16=False)
        with captured_native_stderr() as noise:
            compiled = core().compile_model(str(path), "CPU", {
                "INFERENCE_PRECISION_HINT": PRECISION[dtype], "PERFORMANCE_HINT": "LATENCY"})
    except RuntimeError as exc:  # OpenVINO's exceptions derive from it
        raise InputError(f"{path}: OpenVINO cannot read, quantize or compile the model: "
                         f"{native_reason(exc, noise)}") from None
    ports = list(compiled.outputs)   # by ONNX output name; by index where one was renamed
    order = [next((p for p in ports if n in p.get_names()), ports[k])
             for k, n in enumerate(names)]

    def infer(request: Any, feed: Feed) -> list[np.ndarray]:
        result = request.infer(feed)
        return [np.array(result[p], copy=True) for p in order]   # buffers are reused

    return compiled.create_infer_request(), infer


def _opencv(src: Path, names: list[str]) -> tuple[Any, Infer]:
    import cv2

    from scrfd_ref.backends.opencv import _cv2_reason, engine_ids

    try:
        net = cv2.dnn.readNetFromONNX(str(src), engine_ids()["new"])   # not ENGINE_ORT
    except cv2.error as exc:
        raise InputError(f"{src}: OpenCV cannot load the model: {_cv2_reason(exc)}") from None

    def infer(net: Any, feed: Feed) -> list[np.ndarray]:
        try:
            for name, arr in feed.items():
                net.setInput(arr, name)
            return list(net.forward(names))
        except cv2.error as exc:
            raise InputError(f"{src}: OpenCV cannot run the model: {_cv2_reason(exc)}") from None

    return net, infer


__all__ = ["CUT_DEVICES", "INT8_DEVICES", "CutRunner", "build_cut_runner",
           "device_unavailable"]
