"""localize: stages read from the graph, cuts that recompose the model, the judge's
scores and verdicts, the commands end to end and their refusals.

Expected values come from outside the code under test: SNRs of arrays built with a known
error, the module paths the real export keeps in its initializer names (``neck.*``,
``bbox_head.*``), the full model run directly by onnxruntime, faults whose stage is known
because the test put them there.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from scrfd_ref.cli.app import main
from scrfd_ref.core.errors import InputError
from scrfd_ref.device.stages import find_stages, stage_of_node
from scrfd_ref.device.synthetic import write_synthetic_model
from scrfd_ref.diagnose.localize import EXACT_DB, output_scores
from scrfd_ref.diagnose.localize_folder import read_bands
from scrfd_ref.formats.cut_npz import read_cut_npz, write_cut_npz
from scrfd_ref.formats.device_npz import write_datalist, write_input_npz

SIZE = (160, 160)


# ----------------------------------------------------------------------------- scores

def test_snr_and_channel_snr_of_a_known_error():
    g = np.ones((1, 4, 8, 8), np.float32)
    d = g + 0.1                                       # noise power 0.01 of signal 1: 20 dB
    s = output_scores([g], [d])
    assert s["snr_db"] == pytest.approx(20.0, abs=1e-4)
    assert s["cosine"] == pytest.approx(1.0, abs=1e-6)
    d = g.copy()
    d[0, 2] += 1.0                                    # one channel wrong by the signal's RMS
    s = output_scores([g], [d])
    assert s["channel_snr_db"][2] == pytest.approx(0.0, abs=1e-6)
    assert s["channel_snr_db"][0] == EXACT_DB
    assert s["snr_db"] == pytest.approx(10 * np.log10(4.0), abs=1e-4)  # 1/4 of the tensor
    assert output_scores([g], [g * np.nan])["finite"] is False


def test_flattened_heads_use_the_last_axis_as_channels():
    g = np.ones((1, 50, 10), np.float32)
    d = g.copy()
    d[..., 3] = 0.0
    s = output_scores([g], [d])
    assert len(s["channel_snr_db"]) == 10 and s["channel_snr_db"][3] == pytest.approx(0.0)


# ----------------------------------------------------------------------------- stages

def test_synthetic_stages_follow_its_documented_structure(tmp_path):
    # synthetic.py: a stride-8 patch stem, two stride-2 convs, per-stride 1x1 head convs
    g = find_stages(write_synthetic_model(tmp_path / "m.onnx"), SIZE)
    assert [s.name for s in g.stages] == ["stem", "backbone s16", "backbone s32", "heads"]
    assert g.stages[0].op_types == ("Conv", "Relu")
    heads = g.stages[-1]
    assert len(heads.outputs) == 9 and heads.op_types.count("Conv") == 9


def test_real_500m_stages_agree_with_the_module_names_of_the_export(data_root, need):
    path = need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    g = find_stages(path, (640, 640))   # a static export: its own size
    model = onnx.load(str(path))
    weight = {n.name: n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    kinds = {s.kind for s in g.stages}
    assert kinds == {"stem", "backbone", "neck", "tower", "heads"} and len(g.stages) == 12
    all_nodes = [n for s in g.stages for n in s.nodes]
    assert len(all_nodes) == len(set(all_nodes)) == len(model.graph.node)
    for node, w in weight.items():
        stage = stage_of_node(g, node)
        if w.startswith("neck."):
            assert stage.kind == "neck", (node, w, stage.name)
            level = int(w.split(".")[2])          # lateral_convs.0 reads C3 (stride 8) ...
            if "lateral" in w or "fpn_convs" in w and "pafpn" not in w:
                assert stage.stride == (8, 16, 32)[level], (node, w, stage.name)
        elif w.startswith("bbox_head."):
            assert stage.kind == "heads", (node, w, stage.name)
    towers = [s for s in g.stages if s.kind == "tower"]
    assert [t.stride for t in towers] == [8, 16, 32]
    assert len({t.op_types for t in towers}) == 1          # the same tower per stride


# ----------------------------------------------------------------------------- commands

def _images(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = rng.integers(0, 255, (120 + 10 * i, 150, 3), dtype=np.uint8)
        paths.append(write_input_npz(folder / f"img_{i}.npz", img))
    return write_datalist(folder / "list.txt", paths)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A synthetic model cut at 160x160, its fp16 run and judge (in process)."""
    root = tmp_path_factory.mktemp("localize")
    model = write_synthetic_model(root / "m.onnx")
    datalist = _images(root / "npz")
    assert main(["localize", "cut", "--model", str(model), "--datalist", str(datalist),
                 "--out", str(root / "cuts"), "--input-size", "160,160", "-q"]) == 0
    assert main(["localize", "run", "--cuts", str(root / "cuts"), "--device", "ort/fp16",
                 "--out", str(root / "fp16"), "-q"]) == 0
    return root, model


def test_cuts_recompose_the_full_model(workspace):
    root, model = workspace
    doc = json.loads((root / "cuts" / "localize_cuts.json").read_text())
    assert doc["complete"] and len(doc["stages"]) == 4
    heads = doc["stages"][-1]
    # the last prefix is the whole model: its outputs are the full model's, run directly
    from scrfd_ref.core.preprocess import preprocess
    from scrfd_ref.core.profiles import profile_from_dict
    from scrfd_ref.formats.device_npz import read_datalist, read_input_npz

    profile = profile_from_dict(doc["identity"]["profile"])
    blob = preprocess([read_input_npz(read_datalist(root / "cuts" / "images.txt")[0])],
                      profile)[0]
    full = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    direct = full.run(None, {full.get_inputs()[0].name: blob})
    golden = read_cut_npz(root / "cuts" / heads["golden"] / "output_000000.npz",
                          [o["shape"] for o in heads["outputs"]])
    for a, b in zip(direct, golden):
        np.testing.assert_allclose(b.reshape(a.shape), a, rtol=1e-5, atol=1e-6)
    # each segment, fed its golden inputs, gives its golden outputs (fp32)
    for s in doc["stages"]:
        sess = ort.InferenceSession(str(root / "cuts" / s["segment"]["model"]),
                                    providers=["CPUExecutionProvider"])
        ins = read_cut_npz(root / "cuts" / s["segment"]["inputs"] / "img_0.npz",
                           [i["shape"] for i in s["inputs"]], "input")
        outs = sess.run(None, dict(zip([i["name"] for i in s["inputs"]], ins)))
        want = read_cut_npz(root / "cuts" / s["golden"] / "output_000000.npz",
                            [o["shape"] for o in s["outputs"]])
        for a, b in zip(outs, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_honest_fp16_gets_no_stage_and_a_broken_stage_is_named(workspace, tmp_path, capsys):
    root, _ = workspace
    assert main(["localize", "judge", "--cuts", str(root / "cuts"), "--outputs",
                 str(root / "fp16"), "--out", str(tmp_path / "ok")]) == 0
    assert "no stage" in capsys.readouterr().out
    # a vendor's folder (no manifest) in which stage "backbone s16" is wrong by 30 %
    vendor = tmp_path / "vendor"
    shutil.copytree(root / "fp16", vendor)
    (vendor / "localize_run.json").unlink()
    doc = json.loads((root / "cuts" / "localize_cuts.json").read_text())
    broken = next(s for s in doc["stages"] if s["name"] == "backbone s16")
    shapes = [o["shape"] for o in broken["outputs"]]
    for f in sorted((vendor / f"{broken['slug']}.segment").glob("output_*.npz")):
        write_cut_npz(f, [a * 1.3 for a in read_cut_npz(f, shapes)], "output")
    capsys.readouterr()
    assert main(["localize", "judge", "--cuts", str(root / "cuts"), "--outputs", str(vendor),
                 "--dtype", "fp16", "--out", str(tmp_path / "bad")]) == 1
    out = capsys.readouterr().out
    assert "stage backbone s16 diverges" in out and "Conv" in out
    judged = json.loads((tmp_path / "bad" / "localize.json").read_text())
    assert judged["named_stage"] == "backbone s16"
    assert (tmp_path / "bad" / "localize.png").read_bytes()[:4] == b"\x89PNG"
    assert "backbone s16" in (tmp_path / "bad" / "report.html").read_text()


def _judge(root: Path, outputs: Path, *extra: str) -> int:
    return main(["localize", "judge", "--cuts", str(root / "cuts"), "--outputs", str(outputs),
                 *extra])


def test_judge_refuses_what_does_not_pair(workspace, tmp_path, capsys):
    root, _ = workspace
    bad = tmp_path / "bad"
    shutil.copytree(root / "fp16", bad)
    first = sorted(bad.glob("*.segment/output_000000.npz"))[0]
    # an output changed after the run wrote it: its recorded sha256 disagrees
    first.write_bytes(first.read_bytes() + b"\0")
    assert _judge(root, bad) == 1
    assert "differ from the sha256" in capsys.readouterr().err
    # a vendor folder with a missing segment, and one without --dtype
    (bad / "localize_run.json").unlink()
    assert _judge(root, bad) == 1
    assert "give --dtype" in capsys.readouterr().err
    shutil.rmtree(first.parent)
    assert _judge(root, bad, "--dtype", "fp16") == 1
    assert "every segment must be run" in capsys.readouterr().err
    # outputs of the wrong shape
    shutil.copytree(root / "fp16" / first.parent.name, first.parent)
    write_cut_npz(first, [np.zeros((1, 2, 3, 4), np.float32)], "output")
    assert _judge(root, bad, "--dtype", "fp16") == 1
    assert "declares shape" in capsys.readouterr().err


def test_judge_refuses_changed_goldens_and_bad_bands(workspace, tmp_path, capsys):
    root, _ = workspace
    cuts = tmp_path / "cuts"
    shutil.copytree(root / "cuts", cuts)
    bands = tmp_path / "bands.toml"
    shipped = Path(read_bands().source.split(" (sha256")[0]).read_text()
    bands.write_text(shipped.replace("[fp16.stem]\nsnr_db", "[fp16.stem]\nsnr_dB"))
    assert main(["localize", "judge", "--cuts", str(cuts), "--outputs", str(root / "fp16"),
                 "--bands", str(bands)]) == 1
    assert "[fp16.stem] must hold exactly" in capsys.readouterr().err
    gold = sorted(cuts.glob("golden/*/output_000000.npz"))[0]
    gold.write_bytes(gold.read_bytes() + b"\0")
    assert main(["localize", "judge", "--cuts", str(cuts), "--outputs", str(root / "fp16")]) == 1
    assert "differ from the sha256" in capsys.readouterr().err


def test_outputs_never_inside_the_cut_folder(workspace, capsys):
    root, _ = workspace
    assert main(["localize", "run", "--cuts", str(root / "cuts"), "--device", "ort/fp32",
                 "--out", str(root / "cuts" / "mine")]) == 2
    assert "lies inside --cuts" in capsys.readouterr().err


def test_shipped_bands_cover_every_dtype_and_stage_kind():
    bands = read_bands()
    assert "localize_bands.toml" in bands.source
    table = bands.kinds
    for dtype, kinds in table.items():
        for kind, band in kinds.items():
            assert band.why and band.snr_db > 0, (dtype, kind)
    # a wider arithmetic is held to a tighter band: fp32 > fp16 > bf16 > int8
    for kind in table["fp32"]:
        order = [table[d][kind].snr_db for d in ("fp32", "fp16", "bf16", "int8")]
        assert order == sorted(order, reverse=True), (kind, order)


def test_a_stage_name_outside_the_graph_is_refused(tmp_path):
    g = find_stages(write_synthetic_model(tmp_path / "m.onnx"), SIZE)
    with pytest.raises(InputError, match="in no stage"):
        stage_of_node(g, "no_such_node")


def test_a_changed_cut_file_or_other_cuts_are_refused(workspace, tmp_path, capsys):
    root, model = workspace
    cuts = tmp_path / "cuts"
    shutil.copytree(root / "cuts", cuts)
    seg = sorted(cuts.glob("models/*.segment.onnx"))[1]
    seg.write_bytes(seg.read_bytes() + b"\0")          # a model edited after the cut
    assert main(["localize", "run", "--cuts", str(cuts), "--device", "ort/fp32",
                 "--out", str(tmp_path / "o")]) == 1
    assert "differ from the sha256" in capsys.readouterr().err
    # the same model and images cut with another profile: the fp16 run is not of these cuts
    assert main(["localize", "cut", "--model", str(model), "--datalist",
                 str(root / "npz" / "list.txt"), "--out", str(tmp_path / "other"),
                 "--input-size", "160,160", "-P", "insightface", "-q"]) == 0
    capsys.readouterr()
    assert _judge_with(tmp_path / "other", root / "fp16") == 1
    assert "ran other cuts" in capsys.readouterr().err


def _judge_with(cuts: Path, outputs: Path) -> int:
    return main(["localize", "judge", "--cuts", str(cuts), "--outputs", str(outputs)])


@pytest.mark.parametrize("value", ["nan", "inf", "-1e308", "true"])
def test_bands_must_be_finite_numbers(workspace, tmp_path, capsys, value):
    root, _ = workspace
    shipped = Path(read_bands().source.split(" (sha256")[0]).read_text()
    bands = tmp_path / "bands.toml"
    head, _, rest = shipped.partition("[fp16.stem]\nsnr_db = ")
    bands.write_text(head + "[fp16.stem]\nsnr_db = " + value + rest[rest.index("\n"):])
    assert main(["localize", "judge", "--cuts", str(root / "cuts"), "--outputs",
                 str(root / "fp16"), "--bands", str(bands)]) == 1
    assert "finite numbers of dB" in capsys.readouterr().err


def test_cut_never_replaces_its_inputs(workspace, tmp_path, capsys):
    root, model = workspace
    datalist = tmp_path / "images.txt"                     # named like the cut's own copy
    shutil.copy(root / "npz" / "list.txt", datalist)
    before = datalist.read_bytes()
    assert main(["localize", "cut", "--model", str(model), "--datalist", str(datalist),
                 "--out", str(tmp_path), "--input-size", "160,160", "-q"]) == 2
    assert datalist.read_bytes() == before
    assert "--out" in capsys.readouterr().err


@pytest.mark.parametrize("causes", [[], ["bbox_32 scaled"]])
def test_diagnose_points_to_localize_only_when_no_head_cause_explains(tmp_path, capsys, causes):
    import argparse
    from types import SimpleNamespace

    from scrfd_ref.cli.diagnose import _report, localize_hint

    result = SimpleNamespace(lines=lambda: ["FAIL"], failed=True, causes=causes,
                             inconclusive=False, to_dict=lambda: {})
    args = argparse.Namespace(json=str(tmp_path / "d.json"), accept_inconclusive=False)
    hint = localize_hint(Path("m.onnx"), Path("dump/datalist.txt"))
    assert _report(args, "diagnose: x", result, {}, hint) == 1
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "d.json").read_text())
    if causes:
        assert "localize" not in out and "next_step" not in doc
    else:
        assert "scrfd-ref localize cut --model m.onnx --datalist dump/datalist.txt" in out
        assert doc["next_step"] == hint


def test_judge_never_writes_its_verdict_over_the_bands_file(workspace, tmp_path, capsys):
    root, _ = workspace
    bands = tmp_path / "localize.md"                       # named like a verdict file
    bands.write_text(Path(read_bands().source.split(" (sha256")[0]).read_text())
    before = bands.read_bytes()
    assert main(["localize", "judge", "--cuts", str(root / "cuts"), "--outputs",
                 str(root / "fp16"), "--bands", str(bands), "--out", str(tmp_path)]) == 2
    assert bands.read_bytes() == before
    assert "is one of the command's inputs" in capsys.readouterr().err
