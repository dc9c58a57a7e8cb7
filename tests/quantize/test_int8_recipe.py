"""The int8 recipe's parts: the label-free agreement score, the mixed-precision search, the
conversion report, the emulated fp16-storage device, the recipe table and the CLI.

Expected values are computed by hand in each test (precision / recall points of a few
boxes, MAC counts from the layer shapes), never by the code under test.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from scrfd_ref.core.detections import Detections
from scrfd_ref.core.errors import InputError
from scrfd_ref.quantize.mixed_precision import agreement_ap, candidates, search
from scrfd_ref.quantize.sensitivity import NodeSensitivity


def dets(boxes, scores) -> Detections:
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4),
                      np.asarray(scores, np.float32), None)


REF = [dets([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], [0.9, 0.8, 0.2])]


# ----------------------------------------------------------------------------- agreement

def test_a_model_that_reproduces_fp32_agrees_fully():
    assert agreement_ap(REF, REF) == 1.0


def test_agreement_is_the_area_under_the_pr_curve_of_the_pseudo_ground_truth():
    # pseudo ground truth: the two boxes scored >= 0.3. Device: a false positive at 0.95,
    # then the first face at 0.9. Points: (r 0, p 0), (r 0.5, p 0.5); area 0.5 * 0.5.
    dev = [dets([[100, 100, 120, 120], [0, 0, 10, 10]], [0.95, 0.9])]
    assert agreement_ap(REF, dev) == pytest.approx(0.25)
    # first face found at 0.9, the second box shifted so it misses: (r 0.5, p 1), then
    # (r 0.5, p 0.5); area 0.5 * 1
    shifted = [dets([[0, 0, 10, 10], [28, 28, 48, 48]], [0.9, 0.8])]
    # IoU of [20,40] vs [28,48] squares: 12*12 / (400 + 400 - 144) = 0.2195 < 0.5
    assert agreement_ap(REF, shifted) == pytest.approx(0.5)


def test_agreement_needs_a_reference_face():
    with pytest.raises(InputError, match="nothing to agree on"):
        agreement_ap([dets([[0, 0, 1, 1]], [0.1])], REF)


# ----------------------------------------------------------------------------- search

def row(name, lost, share, int8=True) -> NodeSensitivity:
    return NodeSensitivity(name, "Conv", name, 30.0, 30.0 - lost, lost, 40.0,
                           int(share * 1000), share, int8)


RANKED = [row("A", 10.0, 0.02), row("B", 5.0, 0.09), row("C", 4.0, 0.01),
          row("D", 3.0, 0.01, int8=False), row("E", -1.0, 0.01), row("F", 2.0, 0.01)]


def test_candidates_skip_float_nodes_harmless_nodes_and_what_the_share_cannot_afford():
    # int8 share of these rows: A .02 + B .09 + C .01 + E .01 + F .01 = 0.14 (D is float)
    chosen = candidates(RANKED, limit=6, min_int8_share=0.0)
    assert [r.name for r in chosen] == ["A", "B", "C", "F"]     # D is float, E adds no error
    # keeping 0.05 of the 0.14 int8 share: A (0.02) fits, B (0.09) would leave 0.03
    assert [r.name for r in candidates(RANKED, 6, 0.05)] == ["A", "C", "F"]
    assert [r.name for r in candidates(RANKED, 2, 0.0)] == ["A", "B"]


def test_search_stops_at_the_first_step_that_meets_the_target():
    scores = {(): 0.97, ("A",): 0.985, ("A", "B"): 0.995, ("A", "B", "C"): 0.999}
    built = []

    def build(nodes):
        built.append(nodes)
        return nodes             # the "model file" is the node tuple itself here

    result = search(RANKED, build, lambda nodes: scores[nodes], target=0.99, limit=6,
                    min_int8_share=0.0)
    assert result.float_nodes == ("A", "B") and result.met
    assert built == [(), ("A",), ("A", "B")]                 # nothing built past the target
    assert result.steps[-1].int8_mac_share == pytest.approx(sum(
        r.macs_share for r in RANKED if r.int8) - 0.02 - 0.09)


def test_search_keeps_the_best_step_when_the_target_is_not_met():
    scores = {(): 0.9, ("A",): 0.95, ("A", "B"): 0.93}
    result = search(RANKED[:2], lambda n: n, lambda n: scores[n], target=0.99, limit=6,
                    min_int8_share=0.0)
    assert not result.met and result.float_nodes == ("A",)
    assert len(result.steps) == 3


# ----------------------------------------------------------------------------- report

def test_the_report_names_float_nodes_share_latency_and_the_ranking():
    from scrfd_ref.quantize.int8_report import report_markdown

    record = {"settings": {"calibrate_method": "Percentile", "percentile": 99.999,
                           "per_channel": True, "weight_type": "QInt8",
                           "activation_type": "QUInt8", "input_size": [640, 640]},
              "int8_mac_share": 0.98,
              "latency_ms": {"fp32": 10.0, "all_int8": 8.0, "chosen": 8.5},
              "search": {"float_nodes": ["Conv_2"], "target": 0.99, "met": True,
                         "chosen": 1, "steps": [
                             {"float_nodes": [], "agreement": 0.98, "int8_mac_share": 1.0},
                             {"float_nodes": ["Conv_2"], "agreement": 0.995,
                              "int8_mac_share": 0.98}]},
              "sensitivity": [row("Conv_2", 14.0, 0.02).to_dict(),
                              row("Conv_12", 5.0, 0.05).to_dict()]}
    md = report_markdown(record, "m.onnx")
    assert "Percentile 99.999" in md and "int8 share of the MACs: 98.0%" in md
    assert "kept in float by the mixed-precision search: Conv_2" in md
    assert "float nodes cost +0.50 ms" in md
    assert "| 1 (chosen) | Conv_2 | 0.9950 | 98.0% |" in md
    assert md.index("| Conv_2 | 14.00") < md.index("| Conv_12 | 5.00")


# ----------------------------------------------------------------------------- emulation

def test_fp16_storage_rounds_every_float_tensor(tmp_path):
    """A two-node graph: x * w + b, with x, w and b chosen so that only fp16 rounding
    changes the result; the emulated model gives the value computed by hand in fp16."""
    from onnx import TensorProto, helper, numpy_helper

    from scrfd_ref.backends.ort import OrtBackend
    from scrfd_ref.device.emulate import RUN_OPTIONS, round_to_fp16

    w = numpy_helper.from_array(np.array([1.0 + 2 ** -13], np.float32), "w")   # not fp16
    b = numpy_helper.from_array(np.array([2 ** -14], np.float32), "b")
    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["y"]), helper.make_node("Add", ["y", "b"], ["z"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 32, 32])], [w, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    path = tmp_path / "e.onnx"
    onnx.save(round_to_fp16(m), str(path))
    x = np.full((1, 3, 32, 32), 1000.3, np.float32)
    with OrtBackend(path, **RUN_OPTIONS) as backend:
        (z,) = backend.run(x)
    # by hand: x -> 1000.5 (fp16 spacing 0.5 at 1000), w -> 1.0, y = 1000.5, b -> 2^-14,
    # z = 1000.5 + 6e-5 -> 1000.5 in fp16
    assert np.all(z == np.float32(1000.5))


# ----------------------------------------------------------------------------- recipes

def test_the_recipe_table_is_markdown_with_ratios():
    from scrfd_ref.conformance.int8_recipes import RecipeRow, table_markdown

    rows = [RecipeRow("m.onnx", "fp32", {"easy": 0.9, "medium": 0.8, "hard": 0.5},
                      {"easy": 1.0, "medium": 1.0, "hard": 1.0}),
            RecipeRow("m.onnx", "default", {"easy": 0.9, "medium": 0.8, "hard": 0.499},
                      {"easy": 1.0, "medium": 1.0, "hard": 0.998}, 0.98, ["Conv_2"])]
    text = table_markdown(rows)
    assert "| m.onnx | default | 0.9000 (1.0000) | 0.8000 (1.0000) | 0.4990 (0.9980) | " \
           "98.0% | Conv_2 |" in text


def test_held_out_images_are_every_image_but_the_calibration_list(data_root, need,
                                                                   ground_truth):
    from scrfd_ref.conformance.int8_recipes import held_out_items
    from scrfd_ref.quantize.calibration import calibration_keys

    folder = need(data_root / "widerface" / "WIDER_val" / "images", "WIDER val images")
    items = held_out_items(folder, ground_truth)
    keys = {f"{i.event}/{i.name}" for i in items}
    assert not keys & set(calibration_keys())
    assert len(keys) + 50 == len(list(folder.glob("*/*.jpg")))


# ----------------------------------------------------------------------------- faults

def test_raw_int8_outputs_are_refused_naming_the_dtype(tmp_path):
    from scrfd_ref.conformance.faults import Fault, inject
    from scrfd_ref.formats.device_npz import read_output_npz, write_output_npz

    honest = tmp_path / "honest"
    honest.mkdir()
    rng = np.random.RandomState(0)
    outs = [rng.randn(1, c, 80 // s, 80 // s).astype(np.float32)
            for c in (2, 8) for s in (8, 16, 32)]
    write_output_npz(honest / "output_0.npz", outs, "fp32")
    bad = inject(honest, tmp_path / "bad", Fault("raw_int8", magnitude=16))
    with np.load(bad / "output_0.npz") as z:
        raw = [z[f"output_{i}"] for i in range(6)]
    assert all(r.dtype == np.int8 for r in raw)
    assert np.array_equal(raw[3], np.clip(np.round(outs[3] * 16), -128, 127).astype(np.int8))
    with pytest.raises(InputError, match="dtype int8"):
        read_output_npz(bad / "output_0.npz")


# ----------------------------------------------------------------------------- bad input

def test_an_unknown_float_node_is_refused_with_the_closest_name(tmp_path):
    import cv2

    from scrfd_ref.device.synthetic import write_synthetic_model
    from scrfd_ref.quantize.convert import QuantRecipe, convert_model

    model = write_synthetic_model(tmp_path / "s.onnx", input_size=(64, 64))
    image = tmp_path / "calib" / "a.jpg"
    image.parent.mkdir()
    cv2.imwrite(str(image), np.full((48, 64, 3), 90, np.uint8))
    names = [n.name for n in onnx.load(str(model)).graph.node if n.op_type == "Conv"]
    wrong = names[0] + "x"
    with pytest.raises(InputError, match=f"float node '{wrong}': no node of that name in "
                                         f"s.onnx; did you mean {names[0]}"):
        convert_model(model, "int8", cache_dir=tmp_path / "cache", calibration_images=[image],
                      input_size=(64, 64), recipe=QuantRecipe(float_nodes=(wrong,),
                                                              mixed_precision=False))
    assert not list((tmp_path / "cache").glob("*.onnx"))


def test_macs_of_a_conv_follow_from_its_shapes(data_root, need):
    """MACs of the first conv of 500m_bnkps at 640x640, from its weight shape, stride and
    padding (output side = (640 + pads - kernel) / stride + 1)."""
    from scrfd_ref.device.model_summary import conv_macs

    model = onnx.load(str(need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")))
    first = next(n for n in model.graph.node if n.op_type == "Conv")
    w = next(i for i in model.graph.initializer if i.name == first.input[1])
    attrs = {a.name: list(a.ints) for a in first.attribute}
    cout, cin, kh, kw = w.dims
    side = (640 + attrs["pads"][0] + attrs["pads"][2] - kh) // attrs["strides"][0] + 1
    macs = conv_macs(model, model.graph.input[0].name, np.zeros((1, 3, 640, 640), np.float32))
    assert macs[first.name] == cout * side * side * cin * kh * kw


def test_quantize_report_writes_json_and_markdown(tmp_path, capsys, monkeypatch):
    """`scrfd-ref quantize --report DIR` on a small synthetic model: report.json is the
    conversion record, report.md its rendering; the summary names float nodes and share."""
    import cv2

    from scrfd_ref.cli.app import main
    from scrfd_ref.device.synthetic import write_synthetic_model

    monkeypatch.setenv("SCRFD_CACHE", str(tmp_path / "cache"))
    model = write_synthetic_model(tmp_path / "s.onnx", input_size=(64, 64))
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.RandomState(0)
    for i in range(3):
        cv2.imwrite(str(calib / f"{i}.png"), rng.randint(0, 255, (48, 64, 3), np.uint8))
    rc = main(["quantize", "-m", str(model), "--calib-images", str(calib), "--out",
               str(tmp_path / "q.onnx"), "--report", str(tmp_path / "rep"), "-q"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "float nodes:" in out and "int8 MACs 100.0%" in out
    record = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert record["settings"]["calibrate_method"] == "Percentile"
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Sensitivity" in md and record["sensitivity"][0]["name"] in md
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Sensitivity" in html and record["sensitivity"][-1]["name"] in html
    # the synthetic model finds no face: the search is skipped, and says why
    if "search" not in record:
        assert "nothing to agree on" in record["search_skipped"] and "skipped" in err


# ----------------------------------------------------------------------------- significance

def test_recipe_differences_are_significant_only_when_the_images_show_them():
    """Three 'recipes' on the same synthetic images: one identical to fp32 (interval [1, 1],
    no difference), one that loses half its true positives (a real drop: significant
    against both), scored by the paired bootstrap with the gates' int8 settings."""
    from test_bootstrap import synthetic_gt
    from wider_synth import noisy_predictions

    from scrfd_ref.conformance.int8_recipes import (
        bootstrap_settings,
        compare_recipes,
        differences_markdown,
    )

    gt = synthetic_gt(300, 3)
    fp32 = noisy_predictions(gt, seed=4)
    rng = np.random.default_rng(0)
    lossy = {k: a[rng.random(len(a)) >= 0.5] for k, a in fp32.items()}
    settings = bootstrap_settings()
    assert settings == {"confidence": 0.95, "resamples": 1000, "seed": 0}
    ratios, diffs = compare_recipes("m.onnx", {"fp32": fp32, "same": dict(fp32),
                                               "lossy": lossy}, gt, settings)
    assert ratios["same"] == {s: [1.0, 1.0] for s in ("easy", "medium", "hard")}
    assert all(iv[1] < 1.0 for iv in ratios["lossy"].values()), ratios["lossy"]
    (d,) = diffs
    assert (d.a, d.b) == ("same", "lossy")
    assert all(d.significant.values()) and all(v < 0 for v in d.delta.values())
    text = differences_markdown(diffs, settings)
    assert "| m.onnx | same | lossy |" in text and "**significant**" in text
