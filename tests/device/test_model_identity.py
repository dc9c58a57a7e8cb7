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
