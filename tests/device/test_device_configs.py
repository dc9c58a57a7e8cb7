"""The device team's own config files through the tool: the build YAML as a recipe, the
``check-config`` linter, ``quantize``, and ``--vdsp-params`` on detect, dump, npz-decode,
wider-run, perf and profiles.

Files modelled on the zoo's are in ``tests/configs`` (see ``test_vdsp_params.py``).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from cli_workspace import build_workspace

from scrfd_ref.cli import main
from scrfd_ref.core.errors import UsageError
from scrfd_ref.device.config_lint import check_config
from scrfd_ref.device.synthetic import write_synthetic_model
from scrfd_ref.formats.build_yaml import read_build_yaml
from scrfd_ref.formats.vdsp import read_vdsp_params
from scrfd_ref.quantize.convert import QuantRecipe

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
VDSP = CONFIGS / "vdsp"
YAML = CONFIGS / "yaml"
VARIANTS = ["500m", "500m_bnkps", "1g", "2.5g", "2.5g_bnkps", "10g", "10g_bnkps", "34g"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("cfg") / "ws")


@pytest.fixture()
def fresh(ws, tmp_path) -> Path:
    """A copy of the workspace this test may change."""
    out = tmp_path / "ws"
    shutil.copytree(ws, out, symlinks=True)
    for datalist in (out / "datalist.txt", out / "dump" / "datalist.txt"):
        datalist.write_text(datalist.read_text().replace(str(ws), str(out)))
    return out


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- build YAML


def test_both_nestings_of_the_zoo_read_into_the_same_recipe():
    a = read_build_yaml(YAML / "official_scrfd.yaml")
    b = read_build_yaml(YAML / "flat_scrfd.yaml")
    for r, count in ((a, 50), (b, 8)):
        assert (r.dtype, r.input_shape, r.calibrate_mode, r.per_channel, r.calib_count) == \
            ("int8", (1, 3, 640, 640), "minmax", True, count)
        assert (r.ops.resize_long_side, r.ops.pad_to_square, r.ops.mean, r.ops.std,
                r.ops.div255) == (640, True, (127.5,) * 3, (128.0,) * 3, False)
        assert r.unsupported == ()
    assert a.calib_path == "path/to/widerface/val/calib" and a.calib_suffix == "jpg"


def test_the_zoo_recipe_is_minmax_per_channel_every_node_int8():
    """The vendor's recipe (max, per channel, 50 images, long side 640, pad square,
    (x - 127.5) / 128, no mixed precision) is the project's MinMax recipe: same settings;
    the project's default (percentile + search) differs."""
    from scrfd_ref.quantize.convert import conversion_settings

    recipe = QuantRecipe.from_build_yaml(read_build_yaml(YAML / "official_scrfd.yaml"))
    plain = QuantRecipe(method="minmax", mixed_precision=False)
    assert conversion_settings("int8", recipe=recipe) == conversion_settings("int8",
                                                                             recipe=plain)
    assert conversion_settings("int8", recipe=recipe) != conversion_settings("int8")
    assert recipe.calib_count == QuantRecipe().calib_count == 50


@pytest.mark.parametrize("mode, method", [("max", "minmax"), ("percentile", "percentile"),
                                          ("kl", "entropy"), ("entropy", "entropy")])
def test_calibration_modes(tmp_path, mode, method):
    text = (YAML / "flat_scrfd.yaml").read_text().replace("calibrate_mode: max",
                                                          f"calibrate_mode: {mode}")
    assert read_build_yaml(write(tmp_path / "y.yaml", text)).calibrate_mode == method


def test_a_yaml_tag_never_constructs_an_object(tmp_path):
    marker = tmp_path / "constructed"
    text = f"name: !!python/object/apply:os.system ['touch {marker}']\nbackend: {{dtype: int8}}\n"
    with pytest.raises(UsageError, match="not a readable YAML file"):
        read_build_yaml(write(tmp_path / "y.yaml", text))
    assert not marker.exists()


@pytest.mark.parametrize("text, message", [
    ("name: x\nbackend: {type: tvm_vacc}\n", "backend dtype must be fp16 or int8, got None"),
    ("backend: {dtype: int8}\n", "an int8 build needs calibrate_mode"),
    ("backend: {dtype: int8, quantize: {calibrate_mode: median}}\n", "calibrate_mode 'median'"),
    ("backend: {dtype: int8, calibrate_mode: max}\ncalibrate_mode: percentile\n",
     "calibrate_mode has different values"),
    ("backend: {dtype: int8, calibrate_mode: max, calib: {get_data_num: 0}}\n",
     "get_data_num must be a positive integer"),
    ("- a\n- b\n", "a build YAML is a mapping"),
    ("backend: {dtype: int8\n", "not a readable YAML file")])
def test_bad_yaml_is_refused_with_the_key(tmp_path, text, message):
    with pytest.raises(UsageError, match=message):
        read_build_yaml(write(tmp_path / "y.yaml", text))


def test_keys_not_understood_are_listed(tmp_path):
    text = (YAML / "flat_scrfd.yaml").read_text() + "optimize_level: 3\n"
    text = text.replace("    - type: ToTensor", "    - type: ColorJitter\n    - type: ToTensor")
    r = read_build_yaml(write(tmp_path / "y.yaml", text))
    assert "optimize_level" in r.unsupported
    assert any("ColorJitter" in u for u in r.unsupported)


# ----------------------------------------------------------------------------- the linter


@pytest.fixture(scope="module")
def fixed_model(tmp_path_factory) -> Path:
    return write_synthetic_model(tmp_path_factory.mktemp("m") / "fixed640.onnx",
                                 input_size=(640, 640))


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory) -> Path:
    return write_synthetic_model(tmp_path_factory.mktemp("m") / "dynamic.onnx")


def errors_of(findings) -> list[str]:
    return [f"{f.field}: {f.message}" for f in findings if f.severity == "error"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_256_files_are_flagged_and_the_640_one_passes(variant, fixed_model, dynamic_model):
    vdsp = read_vdsp_params(VDSP / f"scrfd_{variant}.json")
    recipe = read_build_yaml(YAML / "official_scrfd.yaml")
    for model in (fixed_model, dynamic_model, None):
        errors = errors_of(check_config(model, vdsp, recipe))
        if variant == "500m":
            assert errors == []
        else:
            assert any(e.startswith("vdsp OpConfig.OimageWidth/OimageHeight: 256x256 but")
                       for e in errors), errors
            assert any(e.startswith("yaml calib Resize vs vdsp") for e in errors), errors


@pytest.mark.parametrize("name, field", [
    ("imagenet_div255.json", "vdsp OpConfig.NormaType: DIV255_MINUSMEAN_DIVSTD"),
    ("div255.json", "vdsp OpConfig.NormaType: DIV255,")])
def test_other_normalisations_are_errors(name, field):
    errors = errors_of(check_config(None, read_vdsp_params(VDSP / name), None))
    assert any(e.startswith(field) for e in errors), errors


def test_imagenet_mean_std_with_scrfd_norm_type_is_an_error(tmp_path):
    doc = json.loads((VDSP / "scrfd_500m.json").read_text())
    doc["OpConfig"].update(Mean=[123.675, 116.28, 103.53], Std=[58.395, 57.12, 57.375])
    errors = errors_of(check_config(None, read_vdsp_params(write(tmp_path / "v.json",
                                                                 json.dumps(doc))), None))
    assert any(e.startswith("vdsp OpConfig.Mean/Std") for e in errors), errors


@pytest.mark.parametrize("fmt, code, bad", [("BGR888", "NO_CHANGE", True),
                                            ("BGR888", "BGR2RGB", False),
                                            ("RGB_PLANAR", "RGB2BGR", True),
                                            ("RGB888", "NO_CHANGE", False)])
def test_bgr_reaching_the_model_is_an_error(tmp_path, fmt, code, bad):
    doc = json.loads((VDSP / "scrfd_500m.json").read_text())
    doc["OpConfig"].update(IimageFormat=fmt, ColorCvtCode=code)
    errors = errors_of(check_config(None, read_vdsp_params(write(tmp_path / "v.json",
                                                                 json.dumps(doc))), None))
    assert any(e.startswith("vdsp OpConfig.ColorCvtCode") for e in errors) == bad, errors


def test_the_bgr888_zoo_file_is_clean():
    findings = check_config(None, read_vdsp_params(VDSP / "bgr888_bgr2rgb.json"), None)
    assert findings == []   # it has Padding, so not even the info line


def test_pitch_smaller_than_width_and_typos_are_errors(tmp_path):
    doc = json.loads((VDSP / "scrfd_500m.json").read_text())
    doc["OpConfig"]["IimageHeightPitch"] = 600
    doc["OpConfig"]["Meen"] = doc["OpConfig"].pop("Mean")
    errors = errors_of(check_config(None, read_vdsp_params(write(tmp_path / "v.json",
                                                                 json.dumps(doc))), None))
    assert "vdsp OpConfig.IimageHeightPitch: 600 is smaller than IimageHeight 640 (a row " \
           "stride must hold the row)" in errors
    assert "vdsp OpConfig.Meen: unknown key; did you mean Mean?" in errors


def test_yaml_calibration_differing_from_the_vdsp_file(tmp_path):
    text = (YAML / "official_scrfd.yaml").read_text()
    resize = read_build_yaml(write(tmp_path / "r.yaml", text.replace("size: [640, -1]",
                                                                     "size: [320, -1]")))
    norm = read_build_yaml(write(tmp_path / "n.yaml", text.replace(
        "std: [128.0, 128.0, 128.0]", "std: [127.5, 127.5, 127.5]")))
    vdsp = read_vdsp_params(VDSP / "scrfd_500m.json")
    assert any(e.startswith("yaml calib Resize vs vdsp")
               for e in errors_of(check_config(None, vdsp, resize)))
    assert any(e.startswith("yaml calib Normalize vs vdsp")
               for e in errors_of(check_config(None, vdsp, norm)))


def test_a_dynamic_model_is_checked_against_the_yaml_shape_and_input_size(dynamic_model):
    vdsp = read_vdsp_params(VDSP / "scrfd_500m.json")
    recipe = read_build_yaml(YAML / "official_scrfd.yaml")
    assert errors_of(check_config(dynamic_model, vdsp, recipe)) == []
    errors = errors_of(check_config(dynamic_model, vdsp, recipe, (320, 320)))
    assert any(e.startswith("yaml frontend.shape: 640x640") for e in errors)
    assert any(e.startswith("vdsp OpConfig.OimageWidth/OimageHeight: 640x640") for e in errors)


def test_check_config_exit_codes(capsys, fixed_model, tmp_path):
    ok = run(capsys, "check-config", "-m", fixed_model, "--vdsp-params", VDSP / "scrfd_500m.json",
             "--build-yaml", YAML / "official_scrfd.yaml")
    assert ok[0] == 0 and "0 error(s), 0 warning(s)" in ok[1]
    assert "info: vdsp OpConfig.Padding: absent" in ok[1]
    bad = run(capsys, "check-config", "-m", fixed_model, "--vdsp-params", VDSP / "scrfd_1g.json")
    assert bad[0] == 1
    assert bad[1].splitlines()[0].startswith("error: vdsp OpConfig.OimageWidth/OimageHeight: "
                                             "256x256 but the model's fixed input")
    assert len([x for x in bad[2].splitlines() if ": error: " in x]) == 1
    assert run(capsys, "check-config", "--vdsp-params", tmp_path / "none.json")[0] == 2
    assert run(capsys, "check-config", "--build-yaml",
               write(tmp_path / "y.yaml", "backend: [\n"))[0] == 2
    assert run(capsys, "check-config", "-m", fixed_model)[0] == 2


# ----------------------------------------------------------------------------- quantize


def _calibration_folder(root: Path, n: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(root / f"c{i}.jpg"), rng.integers(0, 255, (120, 160, 3), np.uint8))
    return root


def _weight_scales(path: Path) -> list[tuple[int, ...]]:
    """Shapes of the scales of the DequantizeLinear nodes that feed Conv weights."""
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    shapes = []
    for n in model.graph.node:
        if n.op_type == "Conv" and n.input[1] in producers:
            dq = producers[n.input[1]]
            if dq.op_type == "DequantizeLinear" and dq.input[1] in inits:
                shapes.append(tuple(inits[dq.input[1]].dims))
    return shapes


def test_quantize_follows_the_yaml_recipe(capsys, dynamic_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SCRFD_CACHE", str(tmp_path / "cache"))
    calib = _calibration_folder(tmp_path / "calib")
    per_channel = tmp_path / "pc.onnx"
    rc, out, err = run(capsys, "quantize", "-m", dynamic_model, "--build-yaml",
                       YAML / "flat_scrfd.yaml", "--calib-images", calib, "--out", per_channel,
                       "-q")
    assert rc == 0, err
    assert "calibration: 3 image(s), minmax, per channel, input 640x640" in out
    assert "fewer than the 8 asked for" in err
    scales = _weight_scales(per_channel)
    assert scales and all(len(s) == 1 and s[0] > 1 for s in scales)   # one per out channel
    text = (YAML / "flat_scrfd.yaml").read_text().replace("quantize_per_channel: true",
                                                          "quantize_per_channel: false")
    per_tensor = tmp_path / "pt.onnx"
    rc, out, _ = run(capsys, "quantize", "-m", dynamic_model, "--build-yaml",
                     write(tmp_path / "pt.yaml", text), "--calib-images", calib, "--out",
                     per_tensor, "-q")
    assert rc == 0 and "per tensor" in out
    assert all(s in ((), (1,)) for s in _weight_scales(per_tensor))
    assert "weighted nodes with int8 weights" in out


def test_an_explicit_dtype_wins_over_the_yaml_with_a_warning(capsys, dynamic_model, tmp_path,
                                                             monkeypatch):
    monkeypatch.setenv("SCRFD_CACHE", str(tmp_path / "cache"))
    out_file = tmp_path / "m16.onnx"
    rc, out, err = run(capsys, "quantize", "-m", dynamic_model, "--dtype", "fp16",
                       "--build-yaml", YAML / "official_scrfd.yaml", "--out", out_file)
    assert rc == 0 and "--dtype fp16 overrides the build YAML's dtype int8" in err
    assert "weighted nodes in float16" in out
    assert any(i.data_type == onnx.TensorProto.FLOAT16
               for i in onnx.load(str(out_file)).graph.initializer)


def test_quantize_refuses_a_yaml_with_config_errors(capsys, fixed_model, tmp_path):
    text = (YAML / "official_scrfd.yaml").read_text().replace("size: [640, -1]", "size: [256, -1]")
    rc, _, err = run(capsys, "quantize", "-m", fixed_model, "--build-yaml",
                     write(tmp_path / "y.yaml", text), "--out", tmp_path / "q.onnx")
    assert rc == 1 and "yaml calib Resize: long side to 256" in err
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.acceptance  # an int8 conversion
def test_quantize_build_yaml_gives_the_int8_model_the_suite_tests(capsys, data_root, need):
    """Without --out the zoo recipe lands in the cache entry the conformance int8 device
    of the same variant opens with --build-yaml (prepare_model with the YAML's recipe)."""
    from scrfd_ref.quantize.prepare import prepare_model

    model = need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    need(data_root / "widerface" / "WIDER_val" / "images", "WIDER val images")
    rc, out, err = run(capsys, "--data-dir", data_root, "quantize", "-m", model,
                       "--build-yaml", YAML / "official_scrfd.yaml", "-q")
    assert rc == 0, err
    written = Path(out.splitlines()[0].split(" -> ")[1].rsplit(" (", 1)[0])
    recipe = QuantRecipe.from_build_yaml(read_build_yaml(YAML / "official_scrfd.yaml"))
    assert written == prepare_model(model, dtype="int8", recipe=recipe)
    assert "calibration: 50 image(s), minmax, per channel, input 640x640" in out


# ----------------------------------------------------------------------------- --vdsp-params


def test_detect_with_the_zoos_640_file_is_exactly_device_flow(capsys, data_root, need,
                                                               tmp_path):
    model = need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    images = [need(data_root / "images" / n, "sample image")
              for n in ("one_face_1280x720.jpg", "debug_input.jpg")]
    event = need(data_root / "widerface" / "WIDER_val" / "images" / "0--Parade", "WIDER event")
    images += sorted(event.glob("*.jpg"))[:6]
    docs = []
    for name, opts in (("flow", ["--profile", "device-flow"]),
                       ("vdsp", ["--vdsp-params", VDSP / "scrfd_500m.json"])):
        rc, _, err = run(capsys, "detect", "-m", model, *opts, "--json", tmp_path / f"{name}.json",
                         *images)
        assert rc == 0, err
        docs.append(json.loads((tmp_path / f"{name}.json").read_text()))
    assert sum(len(r["detections"]) for r in docs[0]["images"]) > 0
    assert docs[0] == docs[1]


def test_detect_refuses_a_vdsp_size_other_than_the_fixed_model(capsys, fixed_model, ws):
    rc, _, err = run(capsys, "detect", "-m", fixed_model, "--vdsp-params",
                     VDSP / "scrfd_1g.json", ws / "images" / "1--A" / "1_a_1.jpg")
    assert rc == 2 and "the device output is 256x256 but fixed640.onnx is fixed at 640x640" in err


def test_profiles_prints_the_resolved_profile(capsys):
    rc, out, _ = run(capsys, "profiles", "--vdsp-params", VDSP / "imagenet_div255.json",
                     "--json", "-")
    doc = json.loads(out)
    assert rc == 0 and doc["name"] == "device-flow"
    assert (doc["norm"], doc["mean"], doc["std"]) == ("div255_minusmean_divstd",
                                                      [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert doc["vdsp_params"]["file"] == "imagenet_div255.json"
    rc, out, _ = run(capsys, "profiles", "-P", "widerface-eval", "--vdsp-params",
                     VDSP / "scrfd_2.5g.json", "--json", "-")
    doc = json.loads(out)
    assert (doc["name"], doc["input_size"], doc["score_thr"]) == ("widerface-eval", [256, 256],
                                                                  0.02)


def test_wider_run_records_the_vdsp_preprocessing(capsys, fresh):
    rc, _, err = run(capsys, "--data-dir", fresh / "nodata", "wider-run", "-q", "-m",
                     fresh / "model.onnx", "--images", fresh / "images", "--out", fresh / "pv",
                     "--vdsp-params", VDSP / "scrfd_1g.json")
    assert rc == 0, err
    manifest = json.loads((fresh / "pv" / "scrfd_run.json").read_text())
    profile = manifest["identity"]["profile"]
    assert (profile["name"], profile["input_size"], profile["letterbox"]) == \
        ("device-flow", [256, 256], "centered")   # device-flow unless --profile


def test_dump_records_the_file_and_refuses_another_one_later(capsys, fresh):
    base = ["--data-dir", fresh / "nodata"]
    dump = ["dump", "-q", "-m", fresh / "model.onnx", "--datalist", fresh / "datalist.txt",
            "--out", fresh / "dv"]
    assert run(capsys, *base, *dump, "--vdsp-params", VDSP / "scrfd_1g.json")[0] == 0
    identity = json.loads((fresh / "dv" / "scrfd_dump.json").read_text())["identity"]
    assert identity["vdsp_params"]["OpConfig"]["OimageWidth"] == 256
    assert identity["profile"]["input_size"] == [256, 256]
    rc, _, err = run(capsys, *base, *dump, "--vdsp-params", VDSP / "scrfd_500m.json")
    assert rc == 2 and "holds a different dump run" in err and "vdsp_params" in err

    decode = ["npz-decode", "-q", "--datalist", fresh / "datalist.txt", "--outputs",
              fresh / "dv", "--images", fresh / "images"]
    rc, out, err = run(capsys, *base, *decode, "--out", fresh / "d1", "--vdsp-params",
                       VDSP / "scrfd_500m.json")
    assert rc == 2 and "the dump was made with vdsp params scrfd_1g.json and this file " \
                       "differs (IimageHeight 256 -> 640" in err
    rc, out, err = run(capsys, *base, *decode, "--out", fresh / "d2", "--vdsp-params",
                       VDSP / "scrfd_1g.json")
    assert rc == 0 and "input 256x256" in out, err
    rc, out, err = run(capsys, *base, *decode, "--out", fresh / "d3")
    assert rc == 0 and "input 256x256" in out
    assert sorted(p.read_text() for p in (fresh / "d2").rglob("*.txt")) == \
        sorted(p.read_text() for p in (fresh / "d3").rglob("*.txt"))


def test_npz_decode_of_a_plain_dump_checks_the_vdsp_geometry(capsys, fresh):
    base = ["--data-dir", fresh / "nodata", "npz-decode", "-q", "--datalist",
            fresh / "datalist.txt", "--outputs", fresh / "dump", "--images", fresh / "images"]
    rc, _, err = run(capsys, *base, "--out", fresh / "a", "--vdsp-params",
                     VDSP / "scrfd_500m.json")
    assert rc == 0, err
    rc, _, err = run(capsys, *base, "--out", fresh / "b", "--vdsp-params",
                     VDSP / "div255.json")
    assert rc == 2 and "norm" in err and "--force-profile" in err


def test_perf_takes_its_shape_and_profile_from_the_vdsp_file(capsys, fresh):
    rc, _, err = run(capsys, "perf", "-m", fresh / "model.onnx", "--vdsp-params",
                     VDSP / "scrfd_1g.json", "-s", "3,640,640")
    assert rc == 2 and "sets 256x256" in err
    rc, out, err = run(capsys, "--data-dir", fresh / "nodata", "perf", "-m",
                       fresh / "model.onnx", "--vdsp-params", VDSP / "scrfd_1g.json",
                       "--pipeline", "-n", "2", "-w", "0", "--json", "-")
    assert rc == 0, err
    settings = json.loads(out)["settings"]
    assert settings["shape"] == [3, 256, 256]
    assert settings["profile"]["input_size"] == [256, 256]
    assert settings["profile"]["letterbox"] == "centered"
