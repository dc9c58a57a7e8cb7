"""Backends are found by name; third parties plug in through the entry-point group."""
from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from scrfd_ref.backends import ENTRY_POINT_GROUP, available_backends, get_backend
from scrfd_ref.core.errors import InputError


@pytest.fixture()
def vendor_package(tmp_path, monkeypatch):
    """An installed-looking package ``vendor_rt`` whose dist-info registers backend ``vendor``."""
    pkg = tmp_path / "vendor_rt"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        import numpy as np
        from scrfd_ref.backends.base import Backend

        class VendorBackend(Backend):
            name = "vendor"

            def __init__(self, model, **options):
                self.model, self.options = model, options

            def run(self, blob):
                b, _, h, w = blob.shape
                outs = [np.full((b, 2, h // s, w // s), -8, np.float16) for s in (8, 16, 32)]
                outs[0][:, 0, 20, 10] = 8  # one confident anchor: stride 8, row 20, col 10
                outs += [np.ones((b, 8, h // s, w // s), np.float16) for s in (8, 16, 32)]
                return outs

            def info(self):
                return {"backend": "vendor", "library": "vendor_rt", "version": "9.9",
                        "dtype": self.options.get("dtype", "fp32"), "device": "npu"}

        def make(model, **options):
            return VendorBackend(model, **options)
    '''))
    dist = tmp_path / "vendor_rt-9.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vendor-rt\nVersion: 9.9\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nvendor = vendor_rt:make\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("vendor_rt", None)


def test_builtins_are_registered():
    assert {"ort", "opencv", "gpu", "replay"} <= set(available_backends())


def test_entry_point_backend_is_found_and_runs_through_the_detector(vendor_package):
    from scrfd_ref.detector import Detector

    assert "vendor" in available_backends()
    backend = get_backend("vendor", "model.bin", dtype="int8")
    assert backend.info()["library"] == "vendor_rt" and backend.info()["dtype"] == "int8"
    det = Detector(backend, profile="device-flow")
    dets = det.detect(np.full((480, 640, 3), 128, np.uint8))
    # anchor centre (10*8, 20*8) = (80, 160), distances 1 stride = 8 px: input box
    # (72, 152, 88, 168); the centred letterbox of 640x480 into 640x640 is scale 1,
    # offset (0, 80), so the original box is (72, 72, 88, 88)
    assert len(dets) == 1 and dets.landmarks is None
    assert dets.boxes[0].tolist() == [72.0, 72.0, 88.0, 88.0]


def test_entry_point_backend_appears_in_conformance_parametrization(vendor_package, pytestconfig):
    from scrfd_ref.pytest_plugin.session import device_specs

    class Cfg:
        stash: dict = {}

        def getoption(self, name):
            return {"--variant": ["500m_bnkps"], "--dtype": ["fp16"],
                    "--data-dir": pytestconfig.getoption("--data-dir")}.get(name)

    ids = [s.id for s in device_specs(Cfg())]
    assert "vendor-fp16-500m_bnkps" in ids and "ort-fp16-500m_bnkps" in ids


def test_unknown_backend_lists_the_available_ones():
    with pytest.raises(InputError, match="unknown backend 'nope'; available: .*ort"):
        get_backend("nope", "m.onnx")
