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


@pytest.mark.data
def test_weights_of_another_regime_with_the_same_heads_are_refused_by_their_compute(
        data_root, need, tmp_path, monkeypatch):
    """Issue 33's campaign (I02/I04): 2.5g_bnkps weights saved as scrfd_500m_bnkps ran as
    500m_bnkps (same heads). Each variant's name states its compute at 640 x 480 (the SCRFD
    paper's regimes: 0.5 / 1 / 2.5 / 10 / 34 GMACs); the graph's own count tells them apart."""
    import shutil

    from scrfd_ref.core.errors import InputError
    from scrfd_ref.device.model_identity import check_variant, model_gmacs

    monkeypatch.setenv("SCRFD_CACHE", str(tmp_path / "cache"))
    small = need(data_root / "models" / "scrfd_500m_bnkps_dynamic.onnx", "model file")
    big = need(data_root / "models" / "scrfd_2.5g_bnkps_dynamic.onnx", "model file")
    assert 0.5 / 1.4 <= model_gmacs(small) <= 0.5 * 1.4
    assert 2.5 / 1.4 <= model_gmacs(big) <= 2.5 * 1.4
    check_variant(small, "500m_bnkps")
    renamed = tmp_path / "scrfd_500m_bnkps.onnx"
    shutil.copy(big, renamed)
    with pytest.raises(InputError, match=r"scrfd_500m_bnkps\.onnx is named as SCRFD 500m_bnkps "
                       r"\(0\.5 GMACs at 640x480.*computes 2\.\d+ GMACs: it looks like a 2\.5g "
                       r"variant"):
        check_variant(renamed, "500m_bnkps")
    assert list((tmp_path / "cache").glob("compute.*.json"))   # counted once per file
