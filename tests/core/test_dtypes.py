"""The dtype list is declared once (scrfd_ref/core/dtypes.py) and bf16 is a dtype everywhere;
the bf16-storage emulation rounds like bfloat16 hardware (checked against values worked out
by hand and against ONNX Runtime's own Cast)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from scrfd_ref.core.dtypes import DTYPES, SPECS, check_dtype, dtype_spec, output_dtype
from scrfd_ref.core.errors import InputError

PACKAGE = Path(__file__).resolve().parents[2] / "scrfd_ref"


def test_four_dtypes_with_what_each_needs():
    assert DTYPES == ("fp32", "fp16", "bf16", "int8")
    assert [s.significand_bits for s in SPECS] == [24, 11, 8, None]
    # bf16 values widen to float32 exactly, not to float16 (its range is float32's)
    assert output_dtype("bf16") == "fp32" and output_dtype("fp16") == "fp16"
    assert dtype_spec("bf16").emulation == "bf16-storage"
    assert dtype_spec("bf16").gates == "bf16"


def test_a_misspelt_dtype_names_the_closest():
    with pytest.raises(InputError, match=r"--dtype 'int08' is not a dtype; did you mean int8\?"):
        check_dtype("int08", "--dtype")


def test_no_module_spells_the_dtype_list_again():
    """Two or more dtype names in one literal tuple / list / set outside core/dtypes.py
    means a second copy of the list that would drift (the conventions page)."""
    names = "|".join(DTYPES)
    literal = re.compile(rf"[(\[{{]\s*\"({names})\",\s*\"({names})\"")
    copies = [f"{p.relative_to(PACKAGE)}:{n + 1}" for p in PACKAGE.rglob("*.py")
              if p.name != "dtypes.py"
              for n, line in enumerate(p.read_text().splitlines()) if literal.search(line)]
    assert not copies, f"dtype lists spelt outside scrfd_ref/core/dtypes.py: {copies}"


@pytest.mark.parametrize("argv", [
    ["detect", "--dtype", "bf16"], ["wider-run", "--out", "o", "--dtype", "bf16"],
    ["dump", "--datalist", "d", "--out", "o", "--dtype", "bf16"], ["perf", "--dtype", "bf16"],
    ["diagnose", "--device-outputs", "x", "--dtype", "bf16"], ["quantize", "--dtype", "bf16"]])
def test_every_command_that_names_a_dtype_takes_bf16(argv):
    from scrfd_ref.cli.app import build_parser

    assert build_parser().parse_args(argv).dtype == "bf16"


# ----------------------------------------------------------------------------- bf16 values

def test_bf16_rounding_by_hand():
    """bfloat16 keeps 8 significant bits (7 stored): round to nearest, ties to even."""
    from scrfd_ref.device.emulate import round_bf16

    x = np.array([1 + 2 ** -8,        # halfway between 1 and 1 + 2^-7: ties to even -> 1
                  1 + 3 * 2 ** -8,    # halfway between 1 + 2^-7 and 1 + 2^-6: -> 1 + 2^-6
                  1 + 2 ** -9,        # below halfway -> 1
                  1 + 2 ** -8 + 2 ** -20,   # above halfway -> 1 + 2^-7
                  -(1 + 3 * 2 ** -8), 1001.9, 2 ** -130, np.inf, -np.inf],
                 np.float32)
    want = np.array([1.0, 1 + 2 ** -6, 1.0, 1 + 2 ** -7, -(1 + 2 ** -6), 1000.0, 2 ** -130,
                     np.inf, -np.inf], np.float32)
    assert np.array_equal(round_bf16(x), want)
    assert np.isnan(round_bf16(np.array([np.nan], np.float32)))[0]


def test_bf16_rounding_equals_onnx_runtime_cast():
    """The numpy rounding the emulation uses for weights equals ONNX Runtime's Cast to
    BFLOAT16 (which rounds every intermediate tensor) on 200,000 random values."""
    import onnxruntime as ort

    from scrfd_ref.device.emulate import round_bf16

    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.BFLOAT16),
             helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [None])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(200_000) * 10.0 ** rng.integers(-30, 30, 200_000)).astype(
        np.float32)
    assert np.array_equal(session.run(None, {"x": x})[0], round_bf16(x))


def _two_node_model() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.array([1.0 + 2 ** -13], np.float32), "w")
    b = numpy_helper.from_array(np.array([2 ** -14], np.float32), "b")
    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["y"]), helper.make_node("Add", ["y", "b"], ["z"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 32, 32])], [w, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
    m.ir_version = 6
    return m


@pytest.mark.parametrize("emulation, want", [("bf16-storage", 1000.0),
                                             ("fp16-storage", 1002.0)])
def test_storage_emulation_rounds_every_tensor(tmp_path, emulation, want):
    """x * w + b with x = 1001.9: by hand, bf16 (spacing 4 at 1000) rounds x to 1000, w =
    1 + 2^-13 to 1, keeps b = 2^-14 (float32's range) and rounds 1000 + 6e-5 back to 1000;
    fp16 (spacing 0.5 at 1000: 10 stored bits) rounds x to 1002 and the sum to 1002.
    The opset-11 model is upgraded where bf16 needs it (Cast to BFLOAT16: opset 13)."""
    from scrfd_ref.backends.ort import OrtBackend
    from scrfd_ref.device.emulate import RUN_OPTIONS, round_storage

    path = tmp_path / "e.onnx"
    onnx.save(round_storage(_two_node_model(), emulation), str(path))
    x = np.full((1, 3, 32, 32), 1001.9, np.float32)
    with OrtBackend(path, **RUN_OPTIONS) as backend:
        (z,) = backend.run(x)
    assert np.all(z == np.float32(want))


def test_convert_model_bf16_is_the_storage_emulation(tmp_path):
    """--dtype bf16 on ONNX Runtime runs the emulation, graph optimisation off (so no pass
    folds the rounding casts), and the head outputs carry bf16 rounding noise: well under
    fp32's agreement, well over what a wrong model gives."""
    from scrfd_ref.backends.ort import OrtBackend
    from scrfd_ref.device.synthetic import write_synthetic_model
    from scrfd_ref.quantize.convert import convert_model

    src = write_synthetic_model(tmp_path / "m.onnx", seed=3)
    path = convert_model(src, "bf16", cache_dir=tmp_path / "cache")
    assert ".bf16-storage." in path.name
    assert convert_model(src, "bf16", cache_dir=tmp_path / "cache") == path   # cached
    blob = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    with OrtBackend(src) as ref, OrtBackend(path, dtype="bf16") as dev:
        assert dev.info()["graph_optimization"] == "disable"
        snr = [10 * np.log10((r ** 2).sum() / ((r - d) ** 2).sum())
               for r, d in zip(ref.run(blob), dev.run(blob))]
    # 8 significant bits: rounding error ~2^-9 relative per tensor, a few layers deep
    assert all(20 < s < 60 for s in snr), snr
