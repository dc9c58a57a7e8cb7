"""The six WIDER FACE face labels (``<attribute>_label_list`` of ``wider_face_val.mat``),
read into ``GroundTruthImage.attributes``.

Independent references:

* **the real val set** (data tier): every label count, overall and among the faces the
  official "hard" setting counts, equals a count made here with ``scipy.io.loadmat`` on the
  raw files, walked with the official Python port's indexing (``x[i][0][j][0]``), and the
  published totals (counted with scipy beforehand, written down as constants);
* **synthetic .mat files** written here with ``scipy.io.savemat`` in the official layout
  (as ``tests/widerface/test_wider_bad_input.py`` writes them): the labels come back box for
  box; a file without label keys reads with no attributes; a file with some label keys, a
  label list of the wrong length or a label outside the attribute's values is refused;
* **a text ground truth** has no attributes (its label columns are ignored).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from scrfd_ref.core.errors import InputError
from scrfd_ref.formats.ground_truth import load_ground_truth, read_wider_mat, read_wider_txt
from scrfd_ref.formats.ground_truth_types import ATTRIBUTES, make_image

LABEL_KEYS = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")

# counted beforehand with scipy.io.loadmat on the official wider_face_val.mat /
# wider_hard_val.mat (not with this project's reader)
TOTAL_FACES = 39708
PUBLISHED = {"blur": [5686, 10381, 23641], "expression": [39308, 400],
             "illumination": [37410, 2298], "invalid": [39123, 585],
             "occlusion": [23812, 7185, 8711], "pose": [38053, 1655]}
PUBLISHED_HARD = {"blur": [5304, 10154, 16500], "invalid": [None, 0]}


# --------------------------------------------------------------------------- writers

def _cell(items) -> np.ndarray:
    out = np.empty((len(items), 1), dtype=object)
    for i, x in enumerate(items):
        out[i, 0] = x
    return out


def write_labelled_mats(folder: Path, images: dict, labels: dict | None,
                        keys: tuple[str, ...] = LABEL_KEYS) -> Path:
    """Official-layout ``wider_face_val.mat`` (+ the ``<key>_label_list`` of ``keys``) and
    ``wider_{easy,medium,hard}_val.mat`` (every box counted in every setting).

    ``images``: ``{event: {name: (n, 4) boxes}}``; ``labels``: ``{key: {event: {name:
    (n,) labels}}}``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    events = list(images)
    ev = _cell([np.array([e]) for e in events])
    fl = _cell([_cell([np.array([n]) for n in images[e]]) for e in events])
    bb = _cell([_cell([np.asarray(b, dtype=np.int32).reshape(-1, 4)
                       for b in images[e].values()]) for e in events])
    face = {"event_list": ev, "file_list": fl, "face_bbx_list": bb}
    for k in keys if labels is not None else ():
        face[f"{k}_label_list"] = _cell([_cell([np.asarray(labels[k][e][n], np.uint8)
                                                .reshape(-1, 1) for n in images[e]])
                                         for e in events])
    scipy.io.savemat(folder / "wider_face_val.mat", face)
    gl = _cell([_cell([np.arange(1, len(b) + 1, dtype=np.uint16).reshape(-1, 1)
                       for b in images[e].values()]) for e in events])
    for s in ("easy", "medium", "hard"):
        scipy.io.savemat(folder / f"wider_{s}_val.mat",
                         {"gt_list": gl, "event_list": ev, "file_list": fl})
    return folder


def _synthetic(seed: int = 0) -> tuple[dict, dict]:
    """Two events, five images (one without faces), random labels in range."""
    rng = np.random.default_rng(seed)
    images, labels = {}, {k: {} for k in LABEL_KEYS}
    for e, names in (("1--A", ("a1", "a2", "a3")), ("2--B", ("b1", "b2"))):
        images[e] = {}
        for k in LABEL_KEYS:
            labels[k][e] = {}
        for n in names:
            m = 0 if n == "a2" else int(rng.integers(1, 6))
            images[e][n] = np.column_stack([rng.integers(0, 500, (m, 2)),
                                            rng.integers(5, 80, (m, 2))])
            for k in LABEL_KEYS:
                labels[k][e][n] = rng.integers(0, len(ATTRIBUTES[k]), m)
    return images, labels


@pytest.fixture
def in_process(monkeypatch):
    """The .mat readers run in this process: the child-process guard (a fresh interpreter
    here, about 0.3 s a read; tested with the corrupt files of test_wider_bad_input.py) is
    no part of what these tests check."""
    from scrfd_ref.formats import ground_truth_mat

    monkeypatch.setattr(ground_truth_mat, "_guarded_many",
                        lambda calls: [fn(Path(p)) for fn, p in calls])


# --------------------------------------------------------------------------- real data

def _raw_counts(gt_dir: Path) -> tuple[int, dict, dict]:
    """``(faces, {key: counts per value}, {key: counts among 'hard' faces})`` straight from
    scipy.io.loadmat, with the official port's indexing."""
    face = scipy.io.loadmat(str(gt_dir / "wider_face_val.mat"))
    hard = scipy.io.loadmat(str(gt_dir / "wider_hard_val.mat"))["gt_list"]
    bbx = face["face_bbx_list"]
    total = 0
    all_counts = {k: np.zeros(3, np.int64) for k in LABEL_KEYS}
    hard_counts = {k: np.zeros(3, np.int64) for k in LABEL_KEYS}
    for i in range(len(face["event_list"])):
        for j in range(len(face["file_list"][i][0])):
            n = bbx[i][0][j][0].shape[0]
            total += n
            keep = np.asarray(hard[i][0][j][0], dtype=np.int64).ravel() - 1
            for k in LABEL_KEYS:
                lab = np.asarray(face[f"{k}_label_list"][i][0][j][0], dtype=np.int64).ravel()
                assert lab.size == n
                all_counts[k] += np.bincount(lab, minlength=3)[:3]
                hard_counts[k] += np.bincount(lab[keep], minlength=3)[:3]
    return total, all_counts, hard_counts


@pytest.mark.data
def test_label_counts_over_the_val_set_equal_scipy_and_the_published_counts(
        ground_truth, data_root):
    gt_dir = data_root / "widerface" / "ground_truth"
    total, raw_all, raw_hard = _raw_counts(gt_dir)
    assert ground_truth.has_attributes
    assert total == ground_truth.num_boxes == TOTAL_FACES
    for k, published in PUBLISHED.items():
        assert raw_all[k][:len(published)].tolist() == published, k
    assert raw_hard["blur"].tolist() == PUBLISHED_HARD["blur"]
    assert raw_hard["invalid"][1] == 0
    got_all = {k: np.zeros(3, np.int64) for k in LABEL_KEYS}
    got_hard = {k: np.zeros(3, np.int64) for k in LABEL_KEYS}
    for img in ground_truth.images:
        assert set(img.attributes) == set(LABEL_KEYS)
        for k in LABEL_KEYS:
            a = img.attributes[k]
            assert a.shape == (img.boxes.shape[0],) and a.dtype == np.uint8
            assert not a.flags.writeable
            got_all[k] += np.bincount(a, minlength=3)[:3]
            got_hard[k] += np.bincount(a[img.counted["hard"]], minlength=3)[:3]
    for k in LABEL_KEYS:
        assert got_all[k].tolist() == raw_all[k].tolist(), k
        assert got_hard[k].tolist() == raw_hard[k].tolist(), k
        assert got_all[k][len(ATTRIBUTES[k]):].sum() == 0, k


# --------------------------------------------------------------------------- synthetic .mat

def test_labels_are_read_box_for_box(tmp_path, in_process):
    images, labels = _synthetic()
    gt = read_wider_mat(write_labelled_mats(tmp_path, images, labels))
    assert gt.has_attributes
    assert len(gt.images) == 5
    for img in gt.images:
        n = len(images[img.event][img.name])
        assert img.boxes.shape == (n, 4)
        for k in LABEL_KEYS:
            assert img.attributes[k].tolist() == list(labels[k][img.event][img.name]), (img.key, k)


def test_a_mat_without_label_keys_has_no_attributes(tmp_path, in_process):
    images, _ = _synthetic()
    gt = read_wider_mat(write_labelled_mats(tmp_path, images, None))
    assert not gt.has_attributes
    assert all(img.attributes is None for img in gt.images)
    assert gt.num_boxes == sum(len(b) for ev in images.values() for b in ev.values())


@pytest.mark.parametrize("missing", [("pose",), ("blur", "invalid")])
def test_a_mat_with_only_some_label_keys_is_refused_naming_the_missing(tmp_path, missing,
                                                                       in_process):
    images, labels = _synthetic()
    keep = tuple(k for k in LABEL_KEYS if k not in missing)
    folder = write_labelled_mats(tmp_path, images, labels, keys=keep)
    with pytest.raises(InputError) as info:
        read_wider_mat(folder)
    msg = str(info.value)
    assert str(folder / "wider_face_val.mat") in msg
    for k in missing:
        assert f"{k}_label_list" in msg, msg
    for k in keep:
        assert f"{k}_label_list" not in msg, msg


def test_a_label_list_of_the_wrong_length_is_refused(tmp_path, in_process):
    images, labels = _synthetic()
    labels["occlusion"]["2--B"]["b1"] = np.append(labels["occlusion"]["2--B"]["b1"], 0)
    folder = write_labelled_mats(tmp_path, images, labels)
    with pytest.raises(InputError) as info:
        read_wider_mat(folder)
    msg = str(info.value)
    assert "2--B/b1" in msg and "occlusion" in msg, msg


@pytest.mark.parametrize("key,value", [("blur", 3), ("expression", 2), ("pose", 7)])
def test_a_label_outside_the_attribute_values_is_refused(tmp_path, key, value, in_process):
    images, labels = _synthetic()
    labels[key]["1--A"]["a3"] = labels[key]["1--A"]["a3"].copy()
    labels[key]["1--A"]["a3"][0] = value
    folder = write_labelled_mats(tmp_path, images, labels)
    with pytest.raises(InputError) as info:
        read_wider_mat(folder)
    msg = str(info.value)
    assert "1--A/a3" in msg and key in msg, msg


def test_make_image_checks_the_labels():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20]], float)
    good = {k: [0, 1] for k in LABEL_KEYS}
    img = make_image("e", "n.jpg", boxes, {"hard": [0, 1]}, good)
    assert img.attributes["pose"].tolist() == [0, 1]
    assert make_image("e", "n", boxes, {"hard": [0]}).attributes is None
    bad_cases = [
        {k: v for k, v in good.items() if k != "illumination"},     # a label missing
        {**good, "blur": [0]},                                        # wrong length
        {**good, "blur": [0, 3]},                                     # blur has 3 values
        {**good, "occlusion": [-1, 0]},                               # negative
        {**good, "pose": [0.5, 1]},                                   # not a whole number
    ]
    for bad in bad_cases:
        with pytest.raises(InputError):
            make_image("e", "n", boxes, {"hard": [0, 1]}, bad)


# --------------------------------------------------------------------------- text

def test_a_text_ground_truth_has_no_attributes(tmp_path):
    """The text layout carries label columns too; they are not read (the .mat is the
    source of the labels), so the ground truth says it has none."""
    txt = tmp_path / "wider_face_val_bbx_gt.txt"
    txt.write_text("1--A/a1.jpg\n2\n10 10 20 20 2 0 0 0 0 0 \n50 50 30 30 0 1 1 0 2 1 \n"
                   "2--B/b1.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n")
    for gt in (read_wider_txt(txt), load_ground_truth(txt)):
        assert not gt.has_attributes
        assert [img.attributes for img in gt.images] == [None, None]
        assert gt.num_boxes == 2
