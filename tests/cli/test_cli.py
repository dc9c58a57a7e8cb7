"""The ``scrfd-ref`` command line: help, the detect JSON contract, clean errors."""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess

import numpy as np
import pytest

from scrfd_ref.cli import build_parser, main
from scrfd_ref.detector import Detector
from scrfd_ref.formats.detections_json import read_detections_json
from scrfd_ref.formats.images import read_image


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_of_every_command_is_explained():
    parser = build_parser()
    subs = _subcommands(parser)
    assert {"detect", "models", "profiles"} <= set(subs)
    for name, sub in subs.items():
        assert sub.description, f"{name} has no description"
        for action in sub._actions:
            if action.dest != "help":
                assert action.help and len(action.help) > 10, f"{name} {action.option_strings} lacks help"


def test_console_script_is_installed():
    exe = shutil.which("scrfd-ref")
    assert exe, "the scrfd-ref console script is not on PATH (pip install -e .)"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "detect" in out and "--data-dir" in out


@pytest.mark.data
def test_detect_json_contract(tmp_path, data_root, need, capsys):
    image_path = need(data_root / "images" / "one_face_1280x720.jpg", "sample image")
    model = need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    target = tmp_path / "d.json"
    rc = main(["--data-dir", str(data_root), "detect", str(image_path), "--model", str(model),
               "--profile", "device-flow", "--score-thr", "0.3", "--json", str(target),
               "--out", str(tmp_path / "pics")])
    assert rc == 0
    doc = read_detections_json(target)
    assert doc["model"] == str(model)
    assert doc["profile"]["name"] == "device-flow" and doc["profile"]["score_thr"] == 0.3
    assert doc["profile"]["nms_thr"] == 0.45 and doc["profile"]["box_mode"] == "clip_round"
    (img,) = doc["images"]
    assert (img["width"], img["height"]) == (1280, 720)
    scores = [d["score"] for d in img["detections"]]
    assert scores == sorted(scores, reverse=True) and len(scores) >= 1
    for d in img["detections"]:
        assert len(d["box"]) == 4 and len(d["landmarks"]) == 5
        assert all(float(v).is_integer() for v in d["box"]), "device-flow rounds boxes"
    # the document holds exactly what the Python API returns
    want = Detector(model, profile="device-flow", score_thr=0.3).detect(read_image(image_path))
    np.testing.assert_array_equal(np.array([d["box"] for d in img["detections"]], np.float32),
                                  want.boxes)
    np.testing.assert_array_equal(np.array(scores, np.float32), want.scores)
    assert (tmp_path / "pics" / "one_face_1280x720.jpg").is_file()


@pytest.mark.data
def test_detect_json_to_stdout(data_root, need, capsys):
    need(data_root / "models" / "scrfd_1g.onnx", "model file")
    rc = main(["--data-dir", str(data_root), "detect", "--model", "1g", "--json", "-"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["images"]) == 2
    assert all(d["landmarks"] is None for i in doc["images"] for d in i["detections"])


def test_missing_image_is_one_clear_line(tmp_path, capsys, data_root):
    rc = main(["--data-dir", str(data_root), "detect", str(tmp_path / "nope.jpg")])
    err = capsys.readouterr().err
    assert rc == 2 and "nope.jpg" in err and "Traceback" not in err


def test_missing_variant_weights_say_where_to_put_them(tmp_path, capsys):
    (tmp_path / "x.jpg").write_bytes(b"checked after the model")
    rc = main(["--data-dir", str(tmp_path), "detect", "--model", "34g", str(tmp_path / "x.jpg")])
    err = capsys.readouterr().err
    assert rc == 2 and "scrfd_34g.onnx" in err and str(tmp_path / "models") in err


def test_models_table_lists_all_variants(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path), "models"]) == 0
    out = capsys.readouterr().out
    for v in ("500m", "500m_bnkps", "1g", "2.5g", "2.5g_bnkps", "10g", "10g_bnkps", "34g"):
        assert f"\n{v} " in out
    assert "90.97" in out and "missing" in out


@pytest.mark.data
def test_wider_run_resumes(tmp_path, data_root, need, capsys):
    need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    need(data_root / "widerface" / "WIDER_val" / "images" / "19--Couple", "WIDER event folder")
    out = tmp_path / "pred"
    args = ["--data-dir", str(data_root), "wider-run", "-q", "-m", "500m_bnkps", "--out", str(out),
            "--events", "19--Couple"]
    assert main(args) == 0
    files = sorted((out / "19--Couple").glob("*.txt"))
    assert len(files) == 36
    first, second = files[0].read_text(), files[1].read_text()
    files[0].unlink()
    files[1].write_text("edited after the run: not what it recorded")
    capsys.readouterr()
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "34 already done, 2 written" in out  # the edited file is computed again
    assert "1 file(s) of the interrupted run do not match the sha256" in err
    assert files[0].read_text() == first and files[1].read_text() == second


@pytest.mark.data
def test_export_device_layout_command(tmp_path, data_root, need, capsys):
    from scrfd_ref.device.onnx_tools import describe_model

    model = need(data_root / "models" / "scrfd_2.5g_bnkps_dynamic.onnx", "model file")
    out = tmp_path / "dev.onnx"
    assert main(["export-device-layout", str(model), str(out), "--input-size", "640,480",
                 "--drop-landmarks"]) == 0
    info = describe_model(out)
    assert info.layout == "device" and info.num_outputs == 6 and not info.landmarks
    assert list(info.output_shapes[0]) == [1, 2, 60, 80]
    assert "score_8" in capsys.readouterr().out


@pytest.mark.acceptance   # 13 s of reference runs: acceptance (conformance/ covers the rest)
def test_diagnose_predictions_names_the_profile_a_device_followed(tmp_path, data_root, need,
                                                                  capsys):
    """wider-run with the device-flow profile, then diagnose its prediction files: against
    the profile its manifest records nothing is wrong (exit 0); claimed to be
    widerface-eval, the device-flow profile is named (exit 1) with its evidence."""
    need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    need(data_root / "widerface" / "WIDER_val" / "images" / "19--Couple", "WIDER event folder")
    out = tmp_path / "pred"
    assert main(["--data-dir", str(data_root), "wider-run", "-q", "-m", "500m_bnkps", "--out",
                 str(out), "--events", "19--Couple", "--profile", "device-flow"]) == 0
    base = ["--data-dir", str(data_root), "diagnose", "--predictions", str(out), "-m",
            "500m_bnkps", "--count", "6"]
    capsys.readouterr()
    assert main(base) == 1       # 6 images of one event hold no small face: inconclusive
    assert "inconclusive" in capsys.readouterr().out
    assert main(base + ["--accept-inconclusive"]) == 0
    said = capsys.readouterr().out
    assert "reference profile device-flow" in said and "fails no fp32 gate" in said
    assert "nothing to explain" in said
    assert main(base + ["--profile", "widerface-eval", "--json", str(tmp_path / "d.json")]) == 1
    said = capsys.readouterr().out
    assert "1. the device follows the device-flow profile" in said
    doc = json.loads((tmp_path / "d.json").read_text())
    assert doc["causes"][0]["name"] == "profile"
    assert doc["causes"][0]["gain_db"] >= 3.0
    assert len(doc["looked_at"]["images"]) == 6
    assert doc["looked_at"]["facts"]["integer_share"] == 1.0


def test_wider_run_workers_write_the_same_files_and_report_stages(tmp_path, data_root, need,
                                                                  capsys):
    """Two one-thread sessions side by side write byte-identical prediction files to the
    single-threaded path; --json has the throughput and the time of every stage."""
    need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    need(data_root / "widerface" / "WIDER_val" / "images" / "4--Dancing", "WIDER event folder")
    base = ["--data-dir", str(data_root), "wider-run", "-q", "-m", "500m_bnkps", "--events",
            "4--Dancing"]
    assert main(base + ["--out", str(tmp_path / "two"), "--workers", "2", "--json",
                        str(tmp_path / "two.json")]) == 0
    assert main(base + ["--out", str(tmp_path / "one"), "--workers", "1"]) == 0
    said = capsys.readouterr().out
    assert "2 workers" in said and "1 workers" in said and "ms/image" in said
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.txt"))
    assert len(files) == 43
    for rel in files:
        assert (tmp_path / "two" / rel).read_bytes() == (tmp_path / "one" / rel).read_bytes()
    doc = json.loads((tmp_path / "two.json").read_text())
    assert doc["written"] == 43 and doc["workers"] == 2 and doc["images_per_s"] > 0
    assert set(doc["stages"]) == {"read", "preprocess", "infer", "post", "write"}
    assert all(v["seconds"] > 0 for v in doc["stages"].values())
