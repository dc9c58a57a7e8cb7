"""The OpenVINO backend (an optional extra): a third-party compiler as a device.

Without the extra (the default tier in CI) only the tests that fake the runtime run: the
missing package and a CPU without native bf16 are one-line usage errors naming the
install line or the capability. The tests that need OpenVINO are in the acceptance tier
(CI installs the extra for it; under --require-data its absence fails there):

- fp32 (precision hint f32) equals ONNX Runtime's fp32 to float32 rounding;
- native bf16 carries the noise of the bf16-storage emulation (the emulation is an honest
  bf16 device, checked against a real one), and far more than fp32;
- int8 runs only NNCF models and an NNCF model only as int8; the NNCF model is cached by
  content;
- data-parallel runs get one-thread replicas.
"""
from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from scrfd_ref.core.errors import BackendUnavailable, InputError

INSTALL = "pip install -e '.[openvino]'"


def _snr(ref: np.ndarray, dev: np.ndarray) -> float:
    err = float(((ref.astype(np.float64) - dev) ** 2).sum())
    return 10 * np.log10(float((ref.astype(np.float64) ** 2).sum()) / max(err, 1e-300))


@pytest.fixture
def fake_openvino(monkeypatch):
    """``fake_openvino(capabilities)``: an ``openvino`` module whose CPU plugin reports
    ``capabilities`` (no real runtime needed)."""
    import scrfd_ref.backends.openvino as ov

    def install(capabilities):
        class Core:
            def get_property(self, device, name):
                return {"OPTIMIZATION_CAPABILITIES": list(capabilities),
                        "FULL_DEVICE_NAME": "Fake CPU"}[name]

        module = types.ModuleType("openvino")
        module.Core, module.__version__ = Core, "0.0-fake"
        monkeypatch.setitem(sys.modules, "openvino", module)
        monkeypatch.setattr(ov, "_CORE", None)
    return install


def test_without_the_extra_the_backend_names_the_install_line(monkeypatch, tmp_path):
    import scrfd_ref.backends.openvino as ov
    from scrfd_ref.backends import get_backend

    monkeypatch.setitem(sys.modules, "openvino", None)   # import openvino -> ImportError
    monkeypatch.setattr(ov, "_CORE", None)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    with pytest.raises(BackendUnavailable, match=r"openvino: the OpenVINO runtime is not "
                                                 rf"installed .*{re.escape(INSTALL)}") as info:
        get_backend("openvino", model)
    assert info.value.exit_code == 2


def test_bf16_without_native_support_names_the_capability(fake_openvino, tmp_path):
    from scrfd_ref.backends.openvino import OpenVinoBackend

    fake_openvino(["FP32", "INT8"])
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    with pytest.raises(BackendUnavailable, match=r"openvino bf16: this CPU \(Fake CPU\) has no "
                                                 r"native bf16 \(AVX512_BF16 or AMX-BF16; .*"
                                                 r"reports FP32, INT8\).*--backend ort "
                                                 r"--dtype bf16"):
        OpenVinoBackend(model, dtype="bf16")


def test_the_matrix_leaves_out_bf16_on_a_cpu_without_it(fake_openvino, data_root):
    """The allowed case of the conventions: left out with its reason, never a failure."""
    from scrfd_ref.conformance.runs import plan_matrix

    fake_openvino(["FP32", "INT8"])
    plan = plan_matrix(["500m_bnkps"], ["openvino"], ["fp32", "bf16", "int8"], data_root,
                       require_data=False)
    if not plan.specs:
        pytest.skip("no 500m_bnkps weights in the data folder")
    assert [s.id for s in plan.specs] == ["openvino-fp32-500m_bnkps", "openvino-int8-500m_bnkps"]
    assert any(line.startswith("openvino bf16: this CPU (Fake CPU) has no native bf16")
               for line in plan.not_run)


def test_with_native_bf16_the_matrix_keeps_it(fake_openvino, data_root):
    from scrfd_ref.conformance.runs import plan_matrix

    fake_openvino(["FP32", "BF16", "INT8"])
    plan = plan_matrix(["500m_bnkps"], ["openvino"], ["bf16"], data_root, require_data=False)
    assert [s.id for s in plan.specs] in ([], ["openvino-bf16-500m_bnkps"])
    assert not any("bf16" in line for line in plan.not_run)


# ----------------------------------------------------------------------------- real runtime


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from scrfd_ref.device.synthetic import write_synthetic_model

    root = tmp_path_factory.mktemp("ov")
    blob = np.random.default_rng(5).uniform(-1, 1, (2, 3, 64, 96)).astype(np.float32)
    return write_synthetic_model(root / "m.onnx", seed=4), blob, root


@pytest.mark.acceptance
def test_fp32_equals_onnx_runtime(openvino_extra, synthetic):
    from scrfd_ref.backends.openvino import OpenVinoBackend
    from scrfd_ref.backends.ort import OrtBackend

    model, blob, _ = synthetic
    with OrtBackend(model) as ref, OpenVinoBackend(model, dtype="fp32") as dev:
        assert dev.info()["inference_precision"] == "f32"
        for r, d in zip(ref.run(blob), dev.run(blob)):
            assert r.shape == d.shape
            assert _snr(r, d) > 90, "fp32 arithmetic differs only by summation order"


@pytest.mark.acceptance
def test_native_bf16_matches_the_storage_emulation(openvino_extra, variant_file, sample_images):
    """On the real model and real images: OpenVINO's bf16 loses what the bf16-storage
    emulation loses (per head SNR against fp32 within 3 dB), and both lose far more than
    fp32 reordering does (< 45 dB where fp32 gives > 90)."""
    from scrfd_ref.backends.openvino import OpenVinoBackend, dtype_unavailable
    from scrfd_ref.backends.ort import OrtBackend
    from scrfd_ref.core.preprocess import preprocess
    from scrfd_ref.core.profiles import get_profile
    from scrfd_ref.device.emulate import emulated_model
    from scrfd_ref.formats.images import read_image

    if dtype_unavailable("bf16"):
        pytest.skip(dtype_unavailable("bf16"))
    model = variant_file("500m_bnkps")
    blobs = [preprocess([read_image(p)], get_profile("insightface"))[0] for p in sample_images[:4]]
    with OrtBackend(model) as ref, OrtBackend(emulated_model(model, "bf16-storage"),
                                              dtype="bf16") as emu, \
            OpenVinoBackend(model, dtype="bf16") as native:
        assert native.info()["inference_precision"] == "bf16"
        for blob in blobs:
            r, e, n = ref.run(blob), emu.run(blob), native.run(blob)
            for head, (a, b, c) in enumerate(zip(r, e, n)):
                emulated, real = _snr(a, b), _snr(a, c)
                assert real < 45 and emulated < 45, (head, emulated, real)
                assert abs(real - emulated) < 3.0, (head, emulated, real)


@pytest.mark.acceptance
def test_int8_needs_an_nncf_model_and_an_nncf_model_needs_int8(openvino_extra, synthetic,
                                                             tmp_path):
    from scrfd_ref.backends.openvino import OpenVinoBackend
    from scrfd_ref.quantize.nncf_int8 import nncf_model

    model, blob, root = synthetic
    with pytest.raises(InputError, match="needs an NNCF-quantized model"):
        OpenVinoBackend(model, dtype="int8")
    images = _images(root)
    q = nncf_model(model, input_size=(96, 64), calibration_images=images, cache=root / "c")
    assert q.suffix == ".xml" and q.with_suffix(".bin").is_file()
    assert nncf_model(model, input_size=(96, 64), calibration_images=images,
                      cache=root / "c") == q      # cached: same key, same file
    with pytest.raises(InputError, match=r"an int8 \(FakeQuantize\) model run as fp32"):
        OpenVinoBackend(q, dtype="fp32")
    with OpenVinoBackend(model) as ref, OpenVinoBackend(q, dtype="int8") as dev:
        snr = [_snr(r, d) for r, d in zip(ref.run(blob), dev.run(blob))]
    assert all(5 < s < 60 for s in snr), snr   # int8 noise: not fp32, not garbage
    other = nncf_model(model, input_size=(96, 64), calibration_images=images[:2],
                       cache=root / "c")
    assert other != q, "another calibration set is another model"


def _images(root: Path) -> list[Path]:
    import cv2

    paths = []
    for i in range(3):
        p = root / "calib" / f"{i}.jpg"
        p.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(p), np.random.default_rng(i).integers(0, 255, (70, 90, 3), np.uint8))
        paths.append(p)
    return paths


@pytest.mark.acceptance
def test_a_file_that_is_no_model_is_one_line(openvino_extra, tmp_path):
    from scrfd_ref.backends.openvino import OpenVinoBackend

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(InputError, match=r"junk\.onnx: OpenVINO cannot read the model: ") as e:
        OpenVinoBackend(junk)
    assert "\n" not in str(e.value)


@pytest.mark.acceptance
def test_data_parallel_runs_get_one_thread_replicas(openvino_extra, synthetic):
    from scrfd_ref.backends.pool import session_pool

    model, blob, _ = synthetic
    sessions = session_pool("openvino", model, workers=2, dtype="fp32")
    try:
        assert len(sessions) == 2
        assert [s.info()["threads"] for s in sessions] == [1, 1]
        a, b = (s.run(blob) for s in sessions)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    finally:
        for s in sessions:
            s.close()
