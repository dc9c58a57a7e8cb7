"""Bad WIDER FACE input: every case is a clear ScrfdRefError that names the file.

Ground-truth .mat files are small synthetic ones in the official layout (written with
scipy.io.savemat into tmp_path), so no data file is copied anywhere.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from scrfd_ref.core.errors import DataMissingError, InputError, ScrfdRefError
from scrfd_ref.formats.ground_truth import (
    SETTINGS,
    load_ground_truth,
    read_wider_mat,
    read_wider_txt,
    setting_mat_paths,
)
from scrfd_ref.formats.wider_txt import read_prediction_dir, read_prediction_file
from scrfd_ref.widerface.evaluate import evaluate, evaluate_dir

EVENTS = {"1--Alpha": {"1_a_1": [[10, 10, 20, 20], [50, 50, 8, 8]], "1_a_2": [[5, 5, 30, 30]]},
          "2--Beta": {"2_b_1": [[0, 0, 12, 14], [40, 40, 5, 5], [90, 10, 25, 25]]}}


def _cell(items) -> np.ndarray:
    out = np.empty((len(items), 1), dtype=object)
    for i, x in enumerate(items):
        out[i, 0] = x
    return out


def write_mats(folder: Path, events=EVENTS, drop_key: tuple[str, str] | None = None,
               drop_image: str | None = None) -> Path:
    """Official-layout wider_face_val.mat + wider_{easy,medium,hard}_val.mat."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(events)
    ev = _cell([np.array([e]) for e in names])
    fl = _cell([_cell([np.array([n]) for n in events[e]]) for e in names])
    bb = _cell([_cell([np.array(b, dtype=np.int32) for b in events[e].values()]) for e in names])
    face = {"event_list": ev, "file_list": fl, "face_bbx_list": bb}
    if drop_key and drop_key[0] == "face":
        face.pop(drop_key[1])
    scipy.io.savemat(folder / "wider_face_val.mat", face)
    for k, s in enumerate(SETTINGS):
        gl = []
        for e in names:
            per = [np.arange(1, len(b) + 1, dtype=np.uint8)[: k + 1].reshape(-1, 1)
                   for n, b in events[e].items()]
            if drop_image and s == "hard" and e == names[0]:
                per = per[:-1]
            gl.append(_cell(per))
        d = {"gt_list": _cell(gl), "event_list": ev, "file_list": fl}
        if drop_image and s == "hard":
            d.pop("file_list")
        if drop_key and drop_key[0] == s:
            d.pop(drop_key[1])
        scipy.io.savemat(folder / f"wider_{s}_val.mat", d)
    return folder


def write_pred(folder: Path, event: str, name: str, text: str) -> Path:
    (folder / event).mkdir(parents=True, exist_ok=True)
    p = folder / event / f"{name}.txt"
    p.write_text(text)
    return p


def _raises(exc_type, path, fn, *args, **kw) -> str:
    """Call ``fn``; assert it raises ``exc_type`` whose message names ``path``."""
    with pytest.raises(exc_type) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert str(path) in msg, f"message does not name {path}: {msg}"
    assert isinstance(info.value, ScrfdRefError)
    return msg


# --------------------------------------------------------------------------- ground truth

def test_synthetic_mats_are_read(tmp_path):
    gt = read_wider_mat(write_mats(tmp_path))
    assert gt.events == ("1--Alpha", "2--Beta") and len(gt.images) == 3 and gt.num_boxes == 6
    assert [gt.num_counted(s) for s in SETTINGS] == [3, 5, 6]


def test_truncated_mat(tmp_path):
    folder = write_mats(tmp_path)
    f = folder / "wider_face_val.mat"
    f.write_bytes(f.read_bytes()[:300])
    msg = _raises(InputError, f, read_wider_mat, folder)
    assert "truncated or corrupt" in msg


def test_garbage_setting_mat(tmp_path):
    folder = write_mats(tmp_path)
    f = folder / "wider_medium_val.mat"
    f.write_text("this is not a MATLAB file\n" * 20)
    _raises(InputError, f, read_wider_mat, folder)


def test_mat_missing_key(tmp_path):
    folder = write_mats(tmp_path, drop_key=("face", "face_bbx_list"))
    msg = _raises(InputError, folder / "wider_face_val.mat", read_wider_mat, folder)
    assert "face_bbx_list" in msg


def test_setting_mat_missing_gt_list(tmp_path):
    folder = write_mats(tmp_path, drop_key=("easy", "gt_list"))
    msg = _raises(InputError, folder / "wider_easy_val.mat", read_wider_mat, folder)
    assert "gt_list" in msg


def test_mismatched_image_counts(tmp_path):
    folder = write_mats(tmp_path, drop_image="yes")
    msg = _raises(InputError, folder / "wider_hard_val.mat", read_wider_mat, folder)
    assert "mismatched image counts" in msg and "1--Alpha" in msg


def test_setting_files_that_do_not_nest_are_refused(tmp_path):
    """Issue 33, class 2: easy within medium within hard is the format's promise; the
    easy and hard files swapped (both readable, counts right) were read silently before."""
    folder = write_mats(tmp_path)
    easy, hard = folder / "wider_easy_val.mat", folder / "wider_hard_val.mat"
    easy.rename(folder / "x.mat")
    hard.rename(easy)
    (folder / "x.mat").rename(hard)
    msg = _raises(InputError, folder, read_wider_mat, folder)
    assert re.search(r"1--Alpha/1_a_1: box\(es\) 2 count in medium but not in hard; the WIDER "
                     r"settings nest", msg), msg


def test_missing_setting_mat(tmp_path):
    folder = write_mats(tmp_path)
    (folder / "wider_hard_val.mat").unlink()
    _raises(DataMissingError, folder / "wider_hard_val.mat", read_wider_mat, folder)


def test_missing_ground_truth_folder(tmp_path):
    _raises(DataMissingError, tmp_path / "nowhere", load_ground_truth, tmp_path / "nowhere")


def test_ground_truth_txt_non_numeric_box(tmp_path):
    f = tmp_path / "wider_face_val_bbx_gt.txt"
    f.write_text("1--Alpha/1_a_1.jpg\n2\n10 10 20 20 0 0 0 0 0 0\nten 50 8 8 0 0 0 0 0 0\n")
    msg = _raises(InputError, f, read_wider_txt, f)
    assert f"{f}:4" in msg


def test_ground_truth_txt_truncated(tmp_path):
    f = tmp_path / "wider_face_val_bbx_gt.txt"
    f.write_text("1--Alpha/1_a_1.jpg\n3\n10 10 20 20 0 0 0 0 0 0\n")
    msg = _raises(InputError, f, read_wider_txt, f)
    assert "truncated" in msg


def test_ground_truth_txt_against_setting_mats_with_other_images(tmp_path):
    folder = write_mats(tmp_path / "gt")
    f = tmp_path / "gt" / "wider_face_val_bbx_gt.txt"
    f.write_text("1--Alpha/1_a_1.jpg\n2\n10 10 20 20\n50 50 8 8\n")  # one image of three
    _raises(InputError, folder / "wider_easy_val.mat", read_wider_txt, f,
            setting_mat_paths(folder))


def test_ground_truth_txt_zero_box_placeholder_is_accepted(tmp_path):
    f = tmp_path / "gt.txt"
    f.write_text("1--Alpha/1_a_1.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n1--Alpha/1_a_2.jpg\n1\n"
                 "5 5 30 30 0 0 0 0 0 0\n")
    gt = read_wider_txt(f)
    assert [img.boxes.shape[0] for img in gt.images] == [0, 1]
    assert gt.settings == ("all",) and gt.num_counted("all") == 1  # no setting files
    assert "'all faces' setting only" in gt.note


# --------------------------------------------------------------------------- prediction txt

def test_wrong_count(tmp_path):
    f = write_pred(tmp_path, "1--Alpha", "1_a_1", "1_a_1\n3\n1 2 3 4 0.9\n5 6 7 8 0.5\n")
    msg = _raises(InputError, f, read_prediction_file, f)
    assert f"{f}:2" in msg and "3 detections but 2" in msg


def test_nan_score(tmp_path):
    f = write_pred(tmp_path, "1--Alpha", "1_a_1", "1_a_1\n2\n1 2 3 4 0.9\n5 6 7 8 nan\n")
    msg = _raises(InputError, f, read_prediction_file, f)
    assert f"{f}:4" in msg


def test_infinite_coordinate(tmp_path):
    f = write_pred(tmp_path, "1--Alpha", "1_a_1", "1_a_1\n1\ninf 2 3 4 0.9\n")
    assert f"{f}:3" in _raises(InputError, f, read_prediction_file, f)


def test_negative_width_is_read_as_the_official_evaluation_reads_it(tmp_path):
    f = write_pred(tmp_path, "1--Alpha", "1_a_1", "1_a_1\n2\n1 2 3 4 0.9\n5 6 -7 8 0.5\n")
    rows = read_prediction_file(f)
    assert rows[1].tolist() == [5.0, 6.0, -7.0, 8.0, 0.5]
    from scrfd_ref.formats.wider_txt import count_inverted

    assert count_inverted(rows) == 1


def test_non_numeric_line(tmp_path):
    f = write_pred(tmp_path, "1--Alpha", "1_a_1", "1_a_1\n2\n1 2 3 4 0.9\n5 six 7 8 0.5\n")
    msg = _raises(InputError, f, read_prediction_file, f)
    assert f"{f}:4" in msg and "six" in msg


def test_wrong_number_of_columns(tmp_path):
    f = write_pred(tmp_path, "1--Alpha", "1_a_1", "1_a_1\n1\n1 2 3 4\n")
    assert f"{f}:3" in _raises(InputError, f, read_prediction_file, f)


def test_count_not_an_integer(tmp_path):
    f = write_pred(tmp_path, "1--Alpha", "1_a_1", "1_a_1\ntwo\n1 2 3 4 0.9\n5 6 7 8 0.5\n")
    assert f"{f}:2" in _raises(InputError, f, read_prediction_file, f)


def test_empty_file(tmp_path):
    f = write_pred(tmp_path, "1--Alpha", "1_a_1", "")
    assert f"{f}:1" in _raises(InputError, f, read_prediction_file, f)


def test_name_line_does_not_match_the_file(tmp_path):
    f = write_pred(tmp_path, "1--Alpha", "1_a_1", "1_a_2.jpg\n1\n1 2 3 4 0.9\n")
    msg = _raises(InputError, f, read_prediction_file, f)
    assert f"{f}:1" in msg and "1_a_2" in msg


def test_name_line_names_another_event(tmp_path):
    f = write_pred(tmp_path, "1--Alpha", "1_a_1", "2--Beta/1_a_1.jpg\n1\n1 2 3 4 0.9\n")
    assert "2--Beta" in _raises(InputError, f, read_prediction_file, f)


def test_missing_event_folder(tmp_path):
    write_pred(tmp_path, "1--Alpha", "1_a_1", "1_a_1\n0\n")
    msg = _raises(InputError, tmp_path / "2--Beta", read_prediction_dir, tmp_path,
                  ["1--Alpha", "2--Beta"])
    assert "missing event folder" in msg


def test_duplicate_image(tmp_path):
    a = write_pred(tmp_path, "1--Alpha", "1_a_1", "1_a_1\n0\n")
    b = write_pred(tmp_path, "1--Alpha", "1_a_1.jpg", "1_a_1.jpg\n0\n")
    msg = _raises(InputError, a, read_prediction_dir, tmp_path)
    assert str(b) in msg and "duplicate" in msg


def test_same_image_in_two_event_folders(tmp_path):
    a = write_pred(tmp_path, "1--Alpha", "1_a_1", "1_a_1\n0\n")
    b = write_pred(tmp_path, "2--Beta", "1_a_1", "1_a_1\n0\n")
    msg = _raises(InputError, b, read_prediction_dir, tmp_path)
    assert str(a) in msg


def test_empty_directory(tmp_path):
    msg = _raises(InputError, tmp_path, read_prediction_dir, tmp_path)
    assert "empty" in msg


def test_event_folders_without_files(tmp_path):
    (tmp_path / "1--Alpha").mkdir()
    _raises(InputError, tmp_path, read_prediction_dir, tmp_path)


def test_prediction_folder_does_not_exist(tmp_path):
    _raises(DataMissingError, tmp_path / "absent", read_prediction_dir, tmp_path / "absent")


# --------------------------------------------------------------------------- evaluation

def _full_pred_dir(root: Path, skip: set[str] = frozenset()) -> Path:
    for e, imgs in EVENTS.items():
        for n, boxes in imgs.items():
            if n in skip:
                continue
            rows = [f"{b[0]} {b[1]} {b[2]} {b[3]} 0.{7 + k}" for k, b in enumerate(boxes)]
            write_pred(root, e, n, "\n".join([n, str(len(rows)), *rows]) + "\n")
    return root


def test_missing_prediction_files_are_counted_and_named(tmp_path):
    gt = read_wider_mat(write_mats(tmp_path / "gt"))
    pred = _full_pred_dir(tmp_path / "pred", skip={"1_a_2", "2_b_1"})
    (pred / "2--Beta").mkdir(exist_ok=True)
    with pytest.raises(InputError, match=r"2 of 3 images have no prediction file: "
                                         r"1--Alpha/1_a_2, 2--Beta/2_b_1"):
        evaluate_dir(pred, gt)
    r = evaluate_dir(pred, gt, allow_missing=True)
    assert len(r.missing) == 2 and r.images == 3


def test_prediction_for_an_unknown_image(tmp_path):
    gt = read_wider_mat(write_mats(tmp_path / "gt"))
    pred = _full_pred_dir(tmp_path / "pred")
    write_pred(pred, "1--Alpha", "1_a_99", "1_a_99\n0\n")
    with pytest.raises(InputError, match="not in the ground truth.*1--Alpha/1_a_99"):
        evaluate_dir(pred, gt)


def test_unknown_event_folder_in_full_mode(tmp_path):
    gt = read_wider_mat(write_mats(tmp_path / "gt"))
    pred = _full_pred_dir(tmp_path / "pred")
    write_pred(pred, "9--Gamma", "9_g_1", "9_g_1\n0\n")
    msg = _raises(InputError, pred, evaluate_dir, pred, gt)
    assert "9--Gamma" in msg


def test_unknown_event_selected(tmp_path):
    gt = read_wider_mat(write_mats(tmp_path / "gt"))
    with pytest.raises(InputError, match="unknown event.*7--Nope"):
        evaluate_dir(_full_pred_dir(tmp_path / "pred"), gt, events=["7--Nope"])


def test_malformed_prediction_array():
    from scrfd_ref.formats.ground_truth import GroundTruth, make_image

    gt = GroundTruth(events=("1--A",), images=(make_image("1--A", "x", [[0, 0, 5, 5]],
                                                          {s: [0] for s in SETTINGS}),))
    with pytest.raises(InputError, match="1--A/x"):
        evaluate({("1--A", "x"): np.array([[0, 0, 5, 5]])}, gt)
    with pytest.raises(InputError, match="1--A/x"):
        evaluate({("1--A", "x"): np.array([[0, 0, 5, 5, np.nan]])}, gt)
    # a negative height is evaluated as the official code does (counted, never refused)
    res = evaluate({("1--A", "x"): np.array([[0, 0, 5, -5, 0.5]])}, gt)
    assert res.inverted == 1 and res.ap["easy"] == 0.0


def test_eval_command_surfaces_input_errors(tmp_path):
    from scrfd_ref.cli.wider import register

    gt_dir = write_mats(tmp_path / "gt")
    pred = _full_pred_dir(tmp_path / "pred")
    bad = write_pred(pred, "2--Beta", "2_b_1", "2_b_1\n1\n1 2 3 4 0.9 7\n")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "--pred", str(pred), "--gt", str(gt_dir)])
    msg = _raises(InputError, bad, args.func, args)
    assert f"{bad}:3" in msg
