"""Issue 33, class 5: a native runtime's failures as one clean line.

A broken OpenVINO install was reported as "a bug in scrfd-ref"; an invalid model on
OpenVINO printed protobuf's lines and an error cut off at ``core.cpp:84:``.
"""
from __future__ import annotations

import os
import sys

import pytest

from scrfd_ref.backends.native_errors import captured_native_stderr, native_reason
from scrfd_ref.core.errors import BackendUnavailable

#: OpenVINO 2026.4's exception text for a truncated ONNX file (copied from a real run)
OPENVINO_TRUNCATED = ("Exception from src/inference/src/cpp/core.cpp:84:\nCheck "
                      "'m_model->ParseFromIstream(&model_file)' failed at src/frontends/onnx/"
                      "frontend/src/core/graph_iterator_proto.cpp:563:\nFrontEnd API failed "
                      "with GeneralFailure:\nModel can't be parsed\n\n")


def test_the_reason_is_the_line_that_says_what_is_wrong():
    assert native_reason(RuntimeError(OPENVINO_TRUNCATED)) == (
        "FrontEnd API failed with GeneralFailure: Model can't be parsed")
    only_location = RuntimeError("Exception from src/inference/src/cpp/core.cpp:84:\n")
    assert native_reason(only_location, ["[libprotobuf ERROR x.cc:1] bad wire type",
                                         "Error parsing message"]) == "bad wire type"
    assert native_reason(RuntimeError("")) == "RuntimeError"


def test_native_lines_on_fd_2_are_kept_off_the_terminal(capfd):
    with captured_native_stderr() as lines:
        os.write(2, b"[libprotobuf ERROR google/protobuf/wire_format_lite.cc:577] noise\n")
    assert lines == ["[libprotobuf ERROR google/protobuf/wire_format_lite.cc:577] noise"]
    assert "noise" not in capfd.readouterr().err
    os.write(2, b"after\n")  # fd 2 is back
    assert "after" in capfd.readouterr().err


def test_a_broken_openvino_install_is_named_with_what_to_do(tmp_path, monkeypatch):
    from scrfd_ref.backends import openvino as ov_backend

    fake = tmp_path / "openvino"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise OSError('libopenvino.so.2540: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "openvino", raising=False)
    with pytest.raises(BackendUnavailable, match=r"openvino: the OpenVINO runtime is installed "
                       r"but does not load \(OSError: libopenvino\.so\.2540: cannot open shared "
                       r"object file\); reinstall it: pip install --force-reinstall openvino"):
        ov_backend._openvino()
    monkeypatch.setitem(sys.modules, "openvino", None)  # not installed at all
    with pytest.raises(BackendUnavailable, match=r"the OpenVINO runtime is not installed .*"
                       r"pip install -e '\.\[openvino\]'"):
        ov_backend._openvino()
