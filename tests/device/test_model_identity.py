"""A model file is what its graph is: weights saved under another variant's name are
refused, naming what the graph looks like (issue 33, class 1: 1g weights as
``scrfd_500m_bnkps.onnx`` ran with exit 0 and ``landmarks: null``)."""
from __future__ import annotations

import shutil

import pytest

from scrfd_ref.cli.app import main
from scrfd_ref.device.model_identity import variant_problem

pytestmark = pytest.mark.data


@pytest.fixture
def models(data_root, need):
    folder = data_root / "models"
    for name in ("scrfd_1g.onnx", "scrfd_500m_bnkps.onnx"):
        need(folder / name, "model file")
    return folder


def test_each_shared_file_fits_its_own_variant(models):
    assert variant_problem(models / "scrfd_1g.onnx", "1g") is None
    assert variant_problem(models / "scrfd_500m_bnkps.onnx", "500m_bnkps") is None


def test_weights_under_another_variants_name_are_refused(models, tmp_path, capsys):
    (tmp_path / "models").mkdir()
    shutil.copy(models / "scrfd_1g.onnx", tmp_path / "models" / "scrfd_500m_bnkps.onnx")
    shutil.copy(models / "scrfd_500m_bnkps.onnx", tmp_path / "models" / "scrfd_2.5g.onnx")
    image = tmp_path / "x.jpg"
    image.write_bytes(b"")
    assert main(["--data-dir", str(tmp_path), "detect", "-m", "500m_bnkps", str(image)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("named as SCRFD 500m_bnkps but its graph is a variant without "
                              "landmark heads") in err[0], err
    problem = variant_problem(tmp_path / "models" / "scrfd_2.5g.onnx", "2.5g")
    assert problem and "a variant with landmark heads" in problem


def _tiny(tmp_path, nodes, inits, name):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], inits)
    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_model_arithmetic_reads_what_a_file_computes_in(tmp_path):
    """Issue 33: a pre-built int8 / fp16 / bf16 file is told by its graph, whatever its name."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from scrfd_ref.device.model_identity import model_arithmetic

    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    qdq = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
           helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    assert model_arithmetic(_tiny(tmp_path, qdq, [scale, zero], "fp32_by_name"))[0] == "int8"
    half = [numpy_helper.from_array(np.ones(3, np.float16), f"w{i}") for i in range(3)]
    cast = [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)]
    assert model_arithmetic(_tiny(tmp_path, cast, half, "h"))[0] == "fp16"
    bf = [helper.make_node("Cast", ["x"], ["b"], to=TensorProto.BFLOAT16),
          helper.make_node("Cast", ["b"], ["y"], to=TensorProto.FLOAT)]
    assert model_arithmetic(_tiny(tmp_path, bf, [], "b"))[0] == "bf16"
    full = [numpy_helper.from_array(np.ones(3, np.float32), "w")]
    assert model_arithmetic(_tiny(tmp_path, cast, full, "f"))[0] == "fp32"
