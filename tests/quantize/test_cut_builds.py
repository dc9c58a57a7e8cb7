"""Cut builds (scrfd_ref.quantize.cut_builds): one piece of a cut graph built and run as
each device.

The piece is a small float graph made with onnx.helper at opset 11 (as the SCRFD exports):
two inputs ``feat.hi`` 1x8x16x16 and ``feat.lo`` 1x8x8x8, Conv+Relu on each, the second
upsampled 2x (Resize nearest, asymmetric / floor as SCRFD's FPN) and added to the first;
outputs ``fused`` 1x8x16x16 and ``out.lo`` 1x8x8x8 (which the Resize also reads). int8
devices calibrate on 4 random feeds, every device is compared with fp32 on a fifth.

Tolerances (relative: max |device - fp32| / max |fp32| per output; int8: SNR), and what
this graph gave (2-core x86 with AVX512_BF16; ORT 1.32, OpenVINO 2026.4, NNCF 3.4,
OpenCV 5.1):

- ort/fp16 and ort/fp16-storage: 1e-2 (measured 2.3e-4 / 5.7e-4);
- ort/bf16-storage and openvino/bf16: 3e-2 (measured 3.7e-3 / 2.3e-3);
- ort/int8 and openvino/int8: SNR > 15 dB (measured 38.8 / 36.5 dB);
- openvino/fp32 and opencv/fp32: 1e-5 (measured 2.3e-7, not bit-identical: their own
  convolution kernels); ort/fp32 is the reference itself.

Every reduced-precision device must also differ from fp32 somewhere: equal outputs would
mean the conversion did not happen. Devices that need the OpenVINO extra skip without it.
"""
from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from scrfd_ref.core.errors import BackendUnavailable, InputError
from scrfd_ref.quantize.cut_builds import (
    CUT_DEVICES,
    INT8_DEVICES,
    build_cut_runner,
    device_unavailable,
)

INSTALL = "pip install -e '.[openvino]'"
SHAPES = {"feat.hi": (1, 8, 16, 16), "feat.lo": (1, 8, 8, 8)}
OUTPUTS = {"fused": (1, 8, 16, 16), "out.lo": (1, 8, 8, 8)}
#: max |device - fp32| / max |fp32| per output (module docstring)
REL_TOL = {"ort/fp32": 0.0, "ort/fp16": 1e-2, "ort/fp16-storage": 1e-2,
           "ort/bf16-storage": 3e-2, "openvino/fp32": 1e-5, "openvino/bf16": 3e-2,
           "opencv/fp32": 1e-5}
INT8_MIN_SNR_DB = 15.0
#: devices whose outputs must differ from fp32 (the conversion happened)
REDUCED = ("ort/fp16", "ort/int8", "ort/fp16-storage", "ort/bf16-storage", "openvino/bf16",
           "openvino/int8")
NUM_CALIBRATION = 4


def _value(name: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _save(nodes: list, inputs: dict, outputs: dict, inits: dict, path: Path) -> Path:
    graph = helper.make_graph(nodes, "cut", [_value(n, s) for n, s in inputs.items()],
                              [_value(n, s) for n, s in outputs.items()],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _conv(rng: np.random.Generator, name: str, src: str, dst: str, inits: dict) -> list:
    inits[f"{name}.w"] = rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32)
    inits[f"{name}.b"] = rng.normal(0, 0.1, 8).astype(np.float32)
    return [helper.make_node("Conv", [src, f"{name}.w", f"{name}.b"], [f"{name}.c"],
                             pads=[1, 1, 1, 1], name=name),
            helper.make_node("Relu", [f"{name}.c"], [dst], name=f"{name}.relu")]


def _feed(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {n: rng.normal(0, 1, s).astype(np.float32) for n, s in SHAPES.items()}


@pytest.fixture(scope="module")
def cut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two-input, two-output piece (module docstring)."""
    rng = np.random.default_rng(0)
    inits = {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 2], np.float32)}
    nodes = [*_conv(rng, "hi", "feat.hi", "out.hi", inits),
             *_conv(rng, "lo", "feat.lo", "out.lo", inits),
             helper.make_node("Resize", ["out.lo", "roi", "scales"], ["up"], mode="nearest",
                              coordinate_transformation_mode="asymmetric",
                              nearest_mode="floor", name="up"),
             helper.make_node("Add", ["out.hi", "up"], ["fused"], name="add")]
    return _save(nodes, SHAPES, OUTPUTS, inits, tmp_path_factory.mktemp("cut") / "cut.onnx")


@pytest.fixture(scope="module")
def feeds() -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Calibration feeds and the feed every device is compared on."""
    rng = np.random.default_rng(1)
    return [_feed(rng) for _ in range(NUM_CALIBRATION)], _feed(rng)


@pytest.fixture(scope="module")
def reference(cut: Path, feeds) -> list[np.ndarray]:
    with build_cut_runner(cut, "ort/fp32") as runner:
        return runner.run(feeds[1])


def _need(device: str) -> None:
    """Skip a device this machine cannot run (the OpenVINO extra, native bf16)."""
    if device.startswith("openvino/"):
        pytest.importorskip("openvino", reason=INSTALL)
        if device == "openvino/int8":
            pytest.importorskip("nncf", reason=INSTALL)
    reason = device_unavailable(device)
    if reason:
        pytest.skip(reason)


def _snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    err = float(((got.astype(np.float64) - ref) ** 2).sum())
    return 10 * np.log10(float((ref.astype(np.float64) ** 2).sum()) / max(err, 1e-300))


def _rel(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - ref).max() / np.abs(ref).max())


def test_the_devices_and_their_descriptions():
    assert list(CUT_DEVICES) == ["ort/fp32", "ort/fp16", "ort/int8", "ort/fp16-storage",
                                 "ort/bf16-storage", "openvino/fp32", "openvino/bf16",
                                 "openvino/int8", "opencv/fp32"]
    assert all(d and "\n" not in d for d in CUT_DEVICES.values())
    assert set(INT8_DEVICES) == {"ort/int8", "openvino/int8"}


@pytest.mark.parametrize("device", list(CUT_DEVICES))
def test_each_device_gives_the_fp32_shapes_close_to_fp32(device, cut, feeds, reference,
                                                         tmp_path):
    _need(device)
    calibration, feed = feeds
    with build_cut_runner(cut, device, calibration, work_dir=tmp_path) as runner:
        assert runner.device == device
        assert runner.input_names == list(SHAPES)
        assert runner.output_names == list(OUTPUTS)
        outs = runner.run(feed)
        again = runner.run(feed)
    assert [o.shape for o in outs] == list(OUTPUTS.values())
    assert all(o.dtype == np.float32 for o in outs)
    for name, ref, got, got2 in zip(OUTPUTS, reference, outs, again):
        assert np.array_equal(got, got2), f"{device} {name}: two runs of one feed differ"
        if device in INT8_DEVICES:
            snr = _snr_db(ref, got)
            assert snr > INT8_MIN_SNR_DB, f"{device} {name}: SNR {snr:.1f} dB"
        else:
            rel = _rel(ref, got)
            assert rel <= REL_TOL[device], f"{device} {name}: relative error {rel:.2e}"
    if device in REDUCED:
        assert any(not np.array_equal(r, o) for r, o in zip(reference, outs)), \
            f"{device}: bit-identical to fp32, the conversion did not happen"
    # a converted model is written to work_dir; openvino/fp32, bf16 and opencv compile
    # the source itself
    written = sorted(p.name for p in tmp_path.iterdir())
    name = f"cut.{device.replace('/', '-')}"
    if device == "openvino/int8":
        assert written == [f"{name}.bin", f"{name}.xml"]
    else:
        converts = device.startswith("ort/") and device != "ort/fp32"
        assert written == ([f"{name}.onnx"] if converts else [])


def test_the_converted_file_does_not_overwrite_the_source(cut, feeds, tmp_path):
    src = tmp_path / "cut.onnx"
    src.write_bytes(cut.read_bytes())
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    with build_cut_runner(src, "ort/fp16", work_dir=tmp_path) as runner:
        runner.run(feeds[1])
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
    assert (tmp_path / "cut.ort-fp16.onnx").is_file()


def test_a_temporary_work_dir_goes_with_the_runner(cut, feeds, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    runner = build_cut_runner(cut, "ort/int8", feeds[0])
    assert [p.name for p in tmp_path.iterdir()][0].startswith("scrfd-cut.")
    runner.close()
    runner.close()   # idempotent
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="closed"):
        runner.run(feeds[1])


def test_fp16_of_an_output_that_the_piece_also_reads(tmp_path):
    """A graph output read by a Conv inside the piece (an FPN level that is also a cut
    point): onnxconverter_common alone would feed that Conv the float32 output cast."""
    rng = np.random.default_rng(2)
    inits: dict[str, np.ndarray] = {}
    nodes = [*_conv(rng, "a", "x", "y", inits), *_conv(rng, "b", "y", "z", inits)]
    shape = (1, 8, 8, 8)
    model = _save(nodes, {"x": shape}, {"y": shape, "z": shape}, inits, tmp_path / "two.onnx")
    feed = {"x": rng.normal(0, 1, shape).astype(np.float32)}
    with build_cut_runner(model, "ort/fp32") as runner:
        reference = runner.run(feed)
    with build_cut_runner(model, "ort/fp16", work_dir=tmp_path) as runner:
        outs = runner.run(feed)
    for ref, got in zip(reference, outs):
        assert _rel(ref, got) <= REL_TOL["ort/fp16"] and not np.array_equal(ref, got)


@pytest.mark.parametrize("device", INT8_DEVICES)
def test_int8_without_calibration_is_an_input_error(device, cut):
    with pytest.raises(InputError, match=rf"{device} needs calibration feeds .*none were given"):
        build_cut_runner(cut, device)


def test_an_unknown_device_names_the_known_ones(cut):
    known = r"ort/fp32, ort/fp16, ort/int8, .*opencv/fp32"
    with pytest.raises(InputError, match=rf"unknown cut device 'tensorrt/fp16'; known: {known}"):
        build_cut_runner(cut, "tensorrt/fp16")
    with pytest.raises(InputError, match=rf"unknown cut device 'ort'; known: {known}"):
        device_unavailable("ort")


def test_a_feed_that_does_not_fit_is_an_input_error(cut, feeds):
    calibration, feed = feeds
    with pytest.raises(InputError, match=r"calibration feed 1: expected inputs \['feat.hi', "
                                         r"'feat.lo'\], got \['feat.hi'\]"):
        build_cut_runner(cut, "ort/int8", [calibration[0], {"feat.hi": feed["feat.hi"]}])
    with build_cut_runner(cut, "ort/fp32") as runner:
        with pytest.raises(InputError, match=r"input 'feat.lo' has shape \(1, 8, 16, 16\), "
                                             r"the model wants \(1, 8, 8, 8\)"):
            runner.run({"feat.hi": feed["feat.hi"], "feat.lo": feed["feat.hi"]})
        with pytest.raises(InputError, match=r"got \['feat.hi', 'feat.lo', 'other'\]"):
            runner.run({**feed, "other": feed["feat.lo"]})


def test_without_the_extra_the_openvino_devices_name_the_install_line(cut, feeds,
                                                                     monkeypatch):
    import scrfd_ref.backends.openvino as ov

    monkeypatch.setitem(sys.modules, "openvino", None)   # import openvino -> ImportError
    monkeypatch.setattr(ov, "_CORE", None)
    for device in ("openvino/fp32", "openvino/bf16", "openvino/int8"):
        assert INSTALL in device_unavailable(device)
        with pytest.raises(BackendUnavailable, match=r"pip install -e '\.\[openvino\]'"):
            build_cut_runner(cut, device, feeds[0])
    assert device_unavailable("ort/bf16-storage") is None
