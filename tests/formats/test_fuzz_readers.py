"""Hypothesis fuzzing of every reader: any input parses or raises the project's own error.

Each reader gets a valid file mutated at random (bytes flipped, cut, inserted, lines
shuffled or duplicated, values replaced) and arbitrary bytes; the only acceptable
outcomes are a result or a :class:`~scrfd_ref.core.errors.ScrfdRefError` (which the CLI prints
as one line). Any other exception is a crash a user would see as a traceback.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scrfd_ref.core.errors import ScrfdRefError

#: examples per reader (SCRFD_FUZZ_EXAMPLES=600 for a deeper local run)
EXAMPLES = int(os.environ.get("SCRFD_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
#: the .mat readers run in a forked child per call (a crash guard): fewer examples
FUZZ_MAT = settings(FUZZ, max_examples=max(1, EXAMPLES // 3))


@st.composite
def mutated(draw, valid: bytes) -> bytes:
    """``valid`` with a few random edits (or, sometimes, arbitrary bytes)."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=512))
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 16))]
    return bytes(data)


@st.composite
def mutated_lines(draw, valid: str) -> str:
    """``valid`` text with lines duplicated, dropped, swapped or replaced by odd values."""
    lines = valid.splitlines()
    odd = st.sampled_from(["", "nan", "inf", "-1", "1e400", "x y", "0 0 0 0", "  ", "\x00",
                           "1 2 3 4 5 6", "-5 -5 -3 -3 0.5", "9" * 40, "é"])
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines.append(draw(odd))
            continue
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["dup", "drop", "swap", "replace", "token"]))
        if op == "dup":
            lines.insert(i, lines[i])
        elif op == "drop":
            del lines[i]
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "replace":
            lines[i] = draw(odd)
        else:
            parts = lines[i].split() or [""]
            parts[draw(st.integers(0, len(parts) - 1))] = draw(odd)
            lines[i] = " ".join(parts)
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))


def _accepts_or_refuses(fn, *args) -> None:
    try:
        fn(*args)
    except ScrfdRefError:
        pass


# ----------------------------------------------------------------------------- npz


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


VALID_OUTPUT = _npz_bytes({f"output_{i}": np.zeros((1, c, s, s), np.float16)
                           for i, (c, s) in enumerate([(2, 8), (2, 4), (2, 2), (8, 8), (8, 4),
                                                       (8, 2)])})
VALID_INPUT = _npz_bytes({"input_0": np.zeros((3, 5, 7), np.uint8)})


@FUZZ
@given(data=mutated(VALID_OUTPUT))
def test_output_npz_reader(tmp_path, data):
    from scrfd_ref.formats.device_npz import read_output_npz

    p = tmp_path / "output_000000.npz"
    p.write_bytes(data)
    _accepts_or_refuses(read_output_npz, p)


@FUZZ
@given(data=mutated(VALID_INPUT))
def test_input_npz_reader(tmp_path, data):
    from scrfd_ref.formats.device_npz import read_input_npz

    p = tmp_path / "a.npz"
    p.write_bytes(data)
    _accepts_or_refuses(read_input_npz, p)


@FUZZ
@given(shapes=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20), st.integers(0, 9),
                                 st.integers(0, 9)), min_size=0, max_size=10),
       dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.uint8, bool]))
def test_output_npz_of_any_shapes(tmp_path, shapes, dtype):
    """Arrays of any shape and dtype under the right keys: read, checked, or refused."""
    from scrfd_ref.formats.device_outputs import check_outputs

    folder = tmp_path / "o"
    folder.mkdir(exist_ok=True)
    (folder / "output_000000.npz").write_bytes(_npz_bytes(
        {f"output_{i}": np.zeros(s, dtype) for i, s in enumerate(shapes)}))
    (folder / "datalist.txt").write_text("/x/a.npz\n")
    _accepts_or_refuses(check_outputs, folder)


# ----------------------------------------------------------------------------- text


VALID_PRED = "1--A/1_a_1\n3\n1.0 2.0 30.5 40.0 0.9\n5 6 7 8 0.5\n10 10 -2 3 0.01\n"


@FUZZ
@given(text=mutated_lines(VALID_PRED))
def test_prediction_txt_reader(tmp_path, text):
    from scrfd_ref.formats.wider_txt import read_prediction_file

    p = tmp_path / "1--A" / "1_a_1.txt"
    p.parent.mkdir(exist_ok=True)
    p.write_text(text, encoding="utf-8", errors="surrogateescape")
    _accepts_or_refuses(read_prediction_file, p)


@FUZZ
@given(data=mutated(VALID_PRED.encode()))
def test_prediction_txt_reader_bytes(tmp_path, data):
    from scrfd_ref.formats.wider_txt import read_prediction_dir

    p = tmp_path / "pred" / "1--A" / "1_a_1.txt"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    _accepts_or_refuses(read_prediction_dir, tmp_path / "pred")


VALID_GT_TXT = ("1--A/1_a_1.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n5 6 7 8 0 0 0 0 0 0\n"
                "1--A/1_a_2.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n2--B/2_b_1.jpg\n1\n9 9 9 9\n")


@FUZZ
@given(text=mutated_lines(VALID_GT_TXT))
def test_ground_truth_txt_reader(tmp_path, text):
    from scrfd_ref.formats.ground_truth import read_wider_txt

    p = tmp_path / "gt.txt"
    p.write_text(text, encoding="utf-8", errors="surrogateescape")
    _accepts_or_refuses(read_wider_txt, p)


@FUZZ
@given(text=mutated_lines("/a/x.npz\n/a/y.npz\n/b/z.npz\n"))
def test_datalist_reader(tmp_path, text):
    from scrfd_ref.formats.device_npz import read_datalist

    p = tmp_path / "datalist.txt"
    p.write_text(text, encoding="utf-8", errors="surrogateescape")
    _accepts_or_refuses(read_datalist, p)


# ----------------------------------------------------------------------------- JSON


VALID_MANIFEST = json.dumps({"manifest": 1, "kind": "dump", "identity": {
    "variant": "500m_bnkps", "profile": {"name": "device-flow", "input_size": [640, 640]}},
    "complete": True, "started": "2026-01-01T00:00:00Z"})

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                      children, max_size=4),
    max_leaves=12)


@FUZZ
@given(data=mutated(VALID_MANIFEST.encode()))
def test_manifest_reader(tmp_path, data):
    from scrfd_ref.formats.manifest import DUMP_MANIFEST, read_source

    (tmp_path / DUMP_MANIFEST).write_bytes(data)
    _accepts_or_refuses(read_source, tmp_path, DUMP_MANIFEST)


@FUZZ
@given(profile=st.dictionaries(st.sampled_from(["name", "input_size", "letterbox", "pad_value",
                                                "score_thr", "nms_thr", "box_mode", "max_num",
                                                "max_num_metric", "mean", "std", "norm",
                                                "channel_order", "interpolation", "bogus"]),
                               JSON_VALUES, max_size=6)
       | JSON_VALUES)
def test_recorded_profile_reader(profile):
    """A manifest's recorded profile of any shape: a Profile or an InputError."""
    from scrfd_ref.device.flow import decode_profile
    from scrfd_ref.formats.manifest import Source

    source = Source({"identity": {"profile": profile}, "complete": True}, None)
    _accepts_or_refuses(decode_profile, source, None)


@FUZZ
@given(doc=JSON_VALUES)
def test_detections_json_reader(tmp_path, doc):
    from scrfd_ref.formats.detections_json import read_detections_json

    p = tmp_path / "d.json"
    p.write_text(json.dumps(doc))
    _accepts_or_refuses(read_detections_json, p)


@FUZZ
@given(data=mutated(b'{"model": "m", "profile": {}, "images": [{"path": "a", "width": 1, '
                    b'"height": 1, "detections": [{"box": [1, 2, 3, 4], "score": 0.5}]}]}'))
def test_detections_json_reader_bytes(tmp_path, data):
    from scrfd_ref.formats.detections_json import read_detections_json

    p = tmp_path / "d.json"
    p.write_bytes(data)
    _accepts_or_refuses(read_detections_json, p)


# ----------------------------------------------------------------------------- TOML


GATES_TEXT = (Path(__file__).resolve().parents[2] / "data" / "gates.toml").read_text()


@FUZZ
@given(text=mutated_lines(GATES_TEXT))
def test_gates_reader(tmp_path, text):
    from scrfd_ref.conformance.gates import Gates

    p = tmp_path / "g.toml"
    p.write_text(text, encoding="utf-8", errors="surrogateescape")
    _accepts_or_refuses(Gates.load, p)


@FUZZ
@given(data=mutated(GATES_TEXT.encode()[:1500]))
def test_gates_reader_bytes(tmp_path, data):
    from scrfd_ref.conformance.gates import Gates

    p = tmp_path / "g.toml"
    p.write_bytes(data)
    _accepts_or_refuses(Gates.load, p)


# ----------------------------------------------------------------------------- .mat


def _mat_bytes(doc: dict) -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, doc)
    return buf.getvalue()


def _cells(items: list) -> np.ndarray:
    out = np.empty((len(items), 1), dtype=object)
    for i, x in enumerate(items):
        out[i, 0] = x
    return out


VALID_FACE_MAT = _mat_bytes({
    "event_list": _cells(["1--A"]),
    "file_list": _cells([_cells(["1_a_1", "1_a_2"])]),
    "face_bbx_list": _cells([_cells([np.array([[1.0, 2, 3, 4]]), np.zeros((0, 4))])]),
})
VALID_SETTING_MAT = _mat_bytes({"gt_list": _cells([_cells([np.array([[1]]), np.zeros((0, 1))])])})


@pytest.fixture()
def gt_folder(tmp_path):
    folder = tmp_path / "gt"
    folder.mkdir()
    for s in ("easy", "medium", "hard"):
        (folder / f"wider_{s}_val.mat").write_bytes(VALID_SETTING_MAT)
    (folder / "wider_face_val.mat").write_bytes(VALID_FACE_MAT)
    return folder


def test_the_valid_mat_files_are_valid(gt_folder):
    from scrfd_ref.formats.ground_truth import read_wider_mat

    gt = read_wider_mat(gt_folder)
    assert gt.num_boxes == 1 and gt.num_counted("hard") == 1


@pytest.mark.acceptance   # a forked child per example: the default tier's budget
@FUZZ_MAT
@given(data=mutated(VALID_FACE_MAT))
def test_face_mat_reader(gt_folder, data):
    from scrfd_ref.formats.ground_truth import read_wider_mat

    (gt_folder / "wider_face_val.mat").write_bytes(data)
    _accepts_or_refuses(read_wider_mat, gt_folder)


@pytest.mark.acceptance   # a forked child per example: the default tier's budget
@FUZZ_MAT
@given(data=mutated(VALID_SETTING_MAT))
def test_setting_mat_reader(gt_folder, data):
    from scrfd_ref.formats.ground_truth import read_wider_mat

    (gt_folder / "wider_face_val.mat").write_bytes(VALID_FACE_MAT)
    (gt_folder / "wider_hard_val.mat").write_bytes(data)
    _accepts_or_refuses(read_wider_mat, gt_folder)


@pytest.mark.filterwarnings("ignore::scipy.io.matlab.MatWriteWarning")
@pytest.mark.acceptance   # a forked child per example: the default tier's budget
@FUZZ_MAT
@given(value=JSON_VALUES, key=st.sampled_from(["event_list", "file_list", "face_bbx_list"]))
def test_face_mat_with_odd_structure(gt_folder, value, key):
    """A well-formed .mat whose cells hold something else: read or refused."""
    from scrfd_ref.formats.ground_truth import read_wider_mat

    doc = {"event_list": _cells(["1--A"]), "file_list": _cells([_cells(["1_a_1"])]),
           "face_bbx_list": _cells([_cells([np.array([[1.0, 2, 3, 4]])])])}
    try:
        doc[key] = np.array(value, dtype=object) if value is not None else np.zeros(0)
        raw = _mat_bytes(doc)
    except Exception:  # noqa: BLE001 - scipy cannot even write it: nothing to read
        return
    (gt_folder / "wider_face_val.mat").write_bytes(raw)
    _accepts_or_refuses(read_wider_mat, gt_folder)


# ----------------------------------------------------------------------------- saved runs


@FUZZ
@given(meta=mutated(b'{"device": "d", "info": {}, "profile": {}, "images": ["e/a"], '
                    b'"head_images": [], "heads_meta": {}}'))
def test_saved_run_reader(tmp_path, meta):
    """A --ref-cache entry damaged in any way: loaded or refused (then rebuilt)."""
    from scrfd_ref.conformance.runs import Run

    folder = tmp_path / "run"
    folder.mkdir(exist_ok=True)
    (folder / "run.json").write_bytes(meta)
    np.savez(folder / "run.npz", **{"det/e/a/boxes": np.zeros((0, 4), np.float32),
                                    "det/e/a/scores": np.zeros(0, np.float32)})
    _accepts_or_refuses(Run.load, folder)


VALID_VDSP = (Path(__file__).resolve().parents[1] / "configs" / "vdsp" / "bgr888_bgr2rgb.json").read_bytes()
VALID_YAML = (Path(__file__).resolve().parents[1] / "configs" / "yaml" / "official_scrfd.yaml").read_text()


def _vdsp_through_everything(path: Path) -> None:
    """Read a vdsp file, lint it, and map it onto a profile: results or our errors."""
    from scrfd_ref.core.profiles import get_profile
    from scrfd_ref.device.config_lint import check_config
    from scrfd_ref.formats.vdsp import apply_vdsp, read_vdsp_params

    vdsp = read_vdsp_params(path)
    findings = check_config(None, vdsp, None)
    assert all(str(f).split(":")[0] in ("error", "warning", "info") for f in findings)
    if vdsp.problems:
        assert any(f.severity == "error" for f in findings)
    apply_vdsp(get_profile("device-flow"), vdsp)


@FUZZ
@given(data=mutated(VALID_VDSP))
def test_vdsp_params_reader(tmp_path, data):
    (tmp_path / "v.json").write_bytes(data)
    _accepts_or_refuses(_vdsp_through_everything, tmp_path / "v.json")


@FUZZ
@given(config=st.dictionaries(st.sampled_from(
    ["IimageFormat", "IimageWidth", "IimageHeight", "IimageWidthPitch", "OimageWidth",
     "OimageHeight", "Mean", "Std", "NormaType", "ColorCvtCode", "ResizeType", "Padding",
     "Bogus"]), JSON_VALUES | st.sampled_from(["RGB_PLANAR", "BGR888", "DIV255", "BGR2RGB",
                                               "NEAREST", "NO_RESIZE", "YUV_NV12"]),
    max_size=8))
def test_vdsp_params_of_any_values(tmp_path, config):
    doc = {"OpType": "FUSION_OP_RGB_LETTERBOX_CVTCOLOR_NORM_TENSOR",
           "OpConfig": json.loads(json.dumps(json.loads(VALID_VDSP)["OpConfig"]) or "{}")}
    doc["OpConfig"].update(config)
    (tmp_path / "v.json").write_text(json.dumps(doc))
    _accepts_or_refuses(_vdsp_through_everything, tmp_path / "v.json")


def _yaml_through_everything(path: Path) -> None:
    from scrfd_ref.device.config_lint import check_config
    from scrfd_ref.formats.build_yaml import read_build_yaml
    from scrfd_ref.quantize.convert import QuantRecipe

    recipe = read_build_yaml(path)
    check_config(None, None, recipe)
    QuantRecipe.from_build_yaml(recipe)


@FUZZ
@given(text=mutated_lines(VALID_YAML))
def test_build_yaml_reader(tmp_path, text):
    (tmp_path / "y.yaml").write_text(text, encoding="utf-8", errors="surrogateescape")
    _accepts_or_refuses(_yaml_through_everything, tmp_path / "y.yaml")


@FUZZ
@given(data=mutated(VALID_YAML.encode()))
def test_build_yaml_reader_bytes(tmp_path, data):
    (tmp_path / "y.yaml").write_bytes(data)
    _accepts_or_refuses(_yaml_through_everything, tmp_path / "y.yaml")
