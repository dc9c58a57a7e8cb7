"""The device flow's files end to end, and every way they can be wrong.

Round trip: image2npz -> dump (ort, fp16 model, device layout) -> npz-decode -> eval gives
the same predictions and AP as running the detector directly on the same fp16
device-layout model with the same profile. Bit-exact when dump writes fp32 outputs: both
paths run the same model on the same blob. With fp16 output files (what a device
delivers) the outputs are rounded once more: ONNX Runtime's CPU kernels run some fp16
nodes in fp32 (inserted casts), so the model's outputs are not fp16 values; that rounding
is the only difference, bounded in the test.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from scrfd_ref.backends import get_backend
from scrfd_ref.cli import main
from scrfd_ref.core.errors import DataMissingError, InputError, ScrfdRefError
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.detector import Detector
from scrfd_ref.device.flow import check_device_outputs, dump, npz_decode
from scrfd_ref.formats.dataset import list_images
from scrfd_ref.formats.device_npz import (
    read_datalist,
    read_input_npz,
    read_output_npz,
    write_datalist,
    write_output_npz,
)
from scrfd_ref.formats.ground_truth import load_ground_truth
from scrfd_ref.formats.images import read_image
from scrfd_ref.formats.wider_txt import read_prediction_dir
from scrfd_ref.quantize.prepare import prepare_model
from scrfd_ref.widerface.evaluate import evaluate_dir
from scrfd_ref.widerface.run import run_dataset

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def wider_images(data_root, need):
    return need(data_root / "widerface" / "WIDER_val" / "images", "WIDER val images")


@pytest.fixture(scope="module")
def model_500m(data_root, need):
    return need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")


@pytest.fixture(scope="module")
def fp16_device_model(model_500m, tmp_path_factory):
    return prepare_model(model_500m, layout="device", dtype="fp16", input_size=(640, 640),
                         cache=tmp_path_factory.mktemp("cache"))


#: two of the shared events (79 images): the flow is the same for every image, and the
#: dataset-wide AP of the reference is pinned elsewhere (test_wider_pinned.py)
FLOW_EVENTS = ("19--Couple", "4--Dancing")


@pytest.fixture(scope="module")
def flow(tmp_path_factory, wider_images, fp16_device_model):
    """image2npz (CLI) + dump (ort, fp16 model) over :data:`FLOW_EVENTS`: ``out/`` with
    fp32 output files, ``out16/`` with fp16 output files."""
    root = tmp_path_factory.mktemp("flow")
    datalist = root / "datalist.txt"
    assert main(["image2npz", "--dataset-path", str(wider_images), "--target-path",
                 str(root / "npz"), "--text-path", str(datalist), "--events", *FLOW_EVENTS,
                 "-q"]) == 0
    profile = get_profile("device-flow")
    with get_backend("ort", fp16_device_model, dtype="fp16") as backend:
        for folder, out_dtype in (("out", "fp32"), ("out16", "fp16")):
            n = dump(backend, datalist, root / folder, profile, dtype=out_dtype, progress=False)
            assert n == len(read_datalist(datalist))
    return root, datalist


def test_image2npz_layout(flow, wider_images):
    root, datalist = flow
    entries = read_datalist(datalist)
    items = list_images(wider_images, FLOW_EVENTS)
    assert len(entries) == len(items) == 79
    assert all(p.is_absolute() for p in entries)
    first = items[0]
    back = read_input_npz(root / "npz" / f"{first.name}.npz")
    assert np.array_equal(back, read_image(first.path))
    with np.load(root / "npz" / f"{first.name}.npz") as z:
        assert z.files == ["input_0"] and z["input_0"].dtype == np.uint8
        assert z["input_0"].shape[0] == 3


def test_dump_writes_vamp_layout(flow):
    root, _ = flow
    outs = read_output_npz(root / "out16" / "output_000000.npz")
    assert [a.dtype for a in outs] == [np.float16] * 9
    assert [a.shape[1] for a in outs] == [2, 2, 2, 8, 8, 8, 20, 20, 20]
    assert [a.shape[2:] for a in outs[:3]] == [(80, 80), (40, 40), (20, 20)]


def test_round_trip_equals_direct_detector(flow, wider_images, fp16_device_model, data_root,
                                           need, tmp_path):
    root, datalist = flow
    profile = get_profile("device-flow")
    npz_decode(datalist, root / "out", wider_images, tmp_path / "via_files", profile,
               progress=False)
    det = Detector(fp16_device_model, profile=profile)
    run_dataset(det, list_images(wider_images, FLOW_EVENTS), tmp_path / "direct",
                progress=False)
    via_files = read_prediction_dir(tmp_path / "via_files")
    direct = read_prediction_dir(tmp_path / "direct")
    assert via_files.keys() == direct.keys() and len(direct) == 79
    for key in direct:
        assert np.array_equal(via_files[key], direct[key]), key
    gt = load_ground_truth(need(data_root / "widerface" / "ground_truth", "WIDER ground truth"))
    a = evaluate_dir(tmp_path / "via_files", gt, events=FLOW_EVENTS)
    b = evaluate_dir(tmp_path / "direct", gt, events=FLOW_EVENTS)
    assert (a.ap["easy"], a.ap["medium"], a.ap["hard"]) == (b.ap["easy"], b.ap["medium"], b.ap["hard"])
    assert a.ap["easy"] > 0.5, "the fp16 device flow should still find most easy faces"
    npz_decode(datalist, root / "out16", wider_images, tmp_path / "via_fp16_files", profile,
               progress=False)
    c = evaluate_dir(tmp_path / "via_fp16_files", gt, events=FLOW_EVENTS)
    for s in ("easy", "medium", "hard"):  # fp16 rounding of the written outputs only
        assert abs(c.ap[s] - b.ap[s]) <= 2e-3, (s, c.ap[s], b.ap[s])


def test_replay_backend_serves_the_dump(flow, wider_images, fp16_device_model):
    root, datalist = flow
    replay = get_backend("replay", root / "out")
    assert replay.info()["files"] == 79 and replay.dtype == "fp32"
    assert get_backend("replay", root / "out16").dtype == "fp16"
    direct = Detector(fp16_device_model, profile="device-flow")
    via = Detector(replay, profile="device-flow")
    for item in list_images(wider_images, FLOW_EVENTS)[:5]:
        image = read_image(item.path)
        a, b = direct.detect(image), via.detect(image)
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)


# ----------------------------------------------------------------------------- bad input


@pytest.fixture()
def small_flow(flow, tmp_path):
    """A copy of the first 3 entries of the flow, safe to break."""
    import shutil

    root, datalist = flow
    entries = read_datalist(datalist)[:3]
    lst = write_datalist(tmp_path / "list.txt", entries)
    out = tmp_path / "out"
    out.mkdir()
    for i in range(3):
        shutil.copy(root / "out" / f"output_{i:06d}.npz", out)
    return lst, out


def _expect(exc_type, match, fn, *args, **kwargs):
    with pytest.raises(exc_type, match=match) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_bad_count_mismatch(small_flow, wider_images):
    lst, out = small_flow
    (out / "output_000002.npz").unlink()
    msg = _expect(InputError, r"the datalist has 3 line\(s\) but the 2 output file\(s\) do not "
                              "pair", check_device_outputs, lst, out, wider_images)
    assert "2 file(s) of batch 1" in msg


def test_bad_missing_key(small_flow, wider_images):
    lst, out = small_flow
    arrays = read_output_npz(out / "output_000001.npz")
    np.savez(out / "output_000001.npz", **{f"output_{i}": a for i, a in enumerate(arrays[:8])},
             extra=arrays[8])
    _expect(InputError, r"output_000001\.npz: expected keys", check_device_outputs, lst, out,
            wider_images)


def test_bad_truncated_npz(small_flow, wider_images):
    lst, out = small_flow
    raw = (out / "output_000000.npz").read_bytes()
    (out / "output_000000.npz").write_bytes(raw[: len(raw) // 2])
    _expect(InputError, r"output_000000\.npz: not a readable npz", check_device_outputs, lst,
            out, wider_images)


@pytest.mark.parametrize("content,kind", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", r"; it is a JPEG image: a datalist lists input npz"),
    (b"\x89PNG\r\n\x1a\n", r"; it is a PNG image"),
    (b"\x93NUMPY\x01\x00", r"; it is a single \.npy array"),
    (b"", r"; it is empty\)$"),
    (b"garbage!", r"\)$"),
])
def test_bad_not_an_npz_is_named(small_flow, wider_images, content, kind):
    lst, out = small_flow
    (out / "output_000001.npz").write_bytes(content)
    _expect(InputError, r"output_000001\.npz: not an npz file \(no zip header" + kind,
            check_device_outputs, lst, out, wider_images)


def test_bad_dtype(small_flow, wider_images):
    lst, out = small_flow
    arrays = read_output_npz(out / "output_000001.npz")
    arrays[3] = arrays[3].astype(np.int32)
    np.savez(out / "output_000001.npz", **{f"output_{i}": a for i, a in enumerate(arrays)})
    _expect(InputError, r"output_3 has dtype int32", check_device_outputs, lst, out, wider_images)


def test_bad_rank(small_flow, wider_images):
    lst, out = small_flow
    arrays = read_output_npz(out / "output_000001.npz")
    arrays[0] = arrays[0][0]
    np.savez(out / "output_000001.npz", **{f"output_{i}": a for i, a in enumerate(arrays)})
    _expect(InputError, r"output_0 has shape \(2, 80, 80\)", check_device_outputs, lst, out,
            wider_images)


def test_bad_head_shape_is_caught_before_anything_is_written(small_flow, wider_images, tmp_path):
    lst, out = small_flow
    arrays = read_output_npz(out / "output_000002.npz")
    arrays[4] = arrays[4][:, :, :20, :20]  # box map of stride 16 cut to stride-32 size
    write_output_npz(out / "output_000002.npz", arrays, "fp16")
    _expect(InputError, r"output_000002\.npz: heads missing or duplicated", npz_decode, lst, out,
            wider_images, tmp_path / "p", get_profile("device-flow"), progress=False)
    assert not (tmp_path / "p").exists(), "nothing may be written while a file is bad"
    # --skip-bad writes the good two and lists the bad one
    s = npz_decode(lst, out, wider_images, tmp_path / "p", get_profile("device-flow"),
                   progress=False, skip_bad=True)
    assert (s.images, s.skipped) == (2, 1)
    assert len(read_prediction_dir(tmp_path / "p")) == 2


def test_nan_in_an_output_is_counted_and_named(small_flow, wider_images, tmp_path):
    lst, out = small_flow
    arrays = read_output_npz(out / "output_000001.npz")
    arrays[7][0, 0, :3, :2] = np.nan
    write_output_npz(out / "output_000001.npz", arrays, "fp32")
    msg = _expect(InputError, r"output_000001\.npz: NaN/Inf values: output_7 6 of", npz_decode,
                  lst, out, wider_images, tmp_path / "p", get_profile("device-flow"),
                  progress=False)
    assert "1 problem" in msg and not (tmp_path / "p").exists()


def test_repeated_datalist_line_is_refused(small_flow, wider_images):
    lst, out = small_flow
    entries = read_datalist(lst)
    lst.write_text("".join(f"{e}\n" for e in [entries[0], entries[1], entries[1]]))
    _expect(InputError, r"line 3 repeats line 2", check_device_outputs, lst, out, wider_images)


def test_repeated_and_missing_output_files_are_refused(small_flow, wider_images):
    lst, out = small_flow
    import shutil

    shutil.copy(out / "output_000001.npz", out / "output_1.npz")
    _expect(InputError, r"output_000001\.npz, output_1\.npz: repeated output files",
            check_device_outputs, lst, out, wider_images)
    (out / "output_1.npz").unlink()
    (out / "output_000001.npz").rename(out / "output_000003.npz")
    _expect(InputError, r"missing in the sequence: output_000001\.npz", check_device_outputs,
            lst, out, wider_images)


def test_byte_identical_outputs_are_refused(small_flow, wider_images):
    lst, out = small_flow
    (out / "output_000002.npz").write_bytes((out / "output_000001.npz").read_bytes())
    _expect(InputError, r"output_000002\.npz is byte-identical to output_000001\.npz",
            check_device_outputs, lst, out, wider_images)


def _rebatch(out: Path, sizes: list[int]) -> None:
    """Join the single-image files of ``out`` into files of the given batch sizes."""
    singles = [read_output_npz(f) for f in sorted(out.glob("output_*.npz"))]
    for f in out.glob("output_*.npz"):
        f.unlink()
    i = 0
    for k, b in enumerate(sizes):
        group = singles[i:i + b]
        write_output_npz(out / f"output_{k:06d}.npz",
                         [np.concatenate(arrs, axis=0) for arrs in zip(*group)], "fp32")
        i += b


def test_batched_files_are_decoded_image_by_image(small_flow, wider_images, tmp_path):
    lst, out = small_flow
    profile = get_profile("device-flow")
    npz_decode(lst, out, wider_images, tmp_path / "single", profile, progress=False)
    _rebatch(out, [2, 1])  # a batch of 2, then a short last batch
    checked = check_device_outputs(lst, out, wider_images)
    assert [(s.file.name, s.position) for s in checked.slots] == [
        ("output_000000.npz", 0), ("output_000000.npz", 1), ("output_000001.npz", 0)]
    npz_decode(lst, out, wider_images, tmp_path / "batched", profile, progress=False)
    a, b = read_prediction_dir(tmp_path / "single"), read_prediction_dir(tmp_path / "batched")
    assert a.keys() == b.keys() and len(a) == 3
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_batches_that_do_not_add_up_are_refused(small_flow, wider_images):
    lst, out = small_flow
    _rebatch(out, [2])  # 2 images for 3 lines: never a silent cut
    _expect(InputError, r"they hold 2 image\(s\) \(1 file\(s\) of batch 2\)",
            check_device_outputs, lst, out, wider_images)


def test_irregular_batches_are_refused(small_flow, wider_images):
    lst, out = small_flow
    _rebatch(out, [1, 2])
    _expect(InputError, r"the batch sizes vary before the last file", check_device_outputs,
            lst, out, wider_images)


def test_bad_original_not_found(small_flow, wider_images, tmp_path):
    lst, out = small_flow
    entries = read_datalist(lst)
    write_datalist(lst, [entries[0], entries[1].with_name("no_such_image.npz"), entries[2]])
    _expect(InputError, r"no_such_image\.jpg not found", check_device_outputs, lst, out,
            wider_images)


def test_bad_empty_datalist(tmp_path, wider_images):
    (tmp_path / "l.txt").write_text("\n\n")
    _expect(InputError, r"l\.txt: datalist is empty", read_datalist, tmp_path / "l.txt")


def test_bad_missing_output_folder(small_flow, wider_images, tmp_path):
    lst, _ = small_flow
    _expect(DataMissingError, "device output folder not found", check_device_outputs, lst,
            tmp_path / "nowhere", wider_images)


def test_bad_input_npz(tmp_path):
    np.savez(tmp_path / "a.npz", image=np.zeros((3, 4, 4), np.uint8))
    _expect(InputError, r"a\.npz: no 'input_0'", read_input_npz, tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", input_0=np.zeros((3, 4, 4), np.float32))
    _expect(InputError, r"b\.npz: input_0 must be uint8", read_input_npz, tmp_path / "b.npz")


def test_bad_dump_on_standard_model(flow, model_500m, tmp_path):
    _, datalist = flow
    lst = write_datalist(tmp_path / "l.txt", read_datalist(datalist)[:1])
    with get_backend("ort", model_500m) as backend:
        _expect(InputError, "export-device-layout", dump, backend, lst, tmp_path / "o",
                get_profile("device-flow"), progress=False)


def test_bad_model_files(tmp_path):
    (tmp_path / "text.onnx").write_text("not a model")
    _expect(ScrfdRefError, r"text\.onnx", get_backend, "ort", tmp_path / "text.onnx")
    _expect(DataMissingError, r"missing\.onnx", get_backend, "ort", tmp_path / "missing.onnx")


def test_bad_replay_folder(tmp_path):
    _expect(DataMissingError, "replay folder not found", get_backend, "replay", tmp_path / "x")
    (tmp_path / "empty").mkdir()
    _expect(InputError, "no output_", get_backend, "replay", tmp_path / "empty")


def test_corrupt_zip_member(small_flow, wider_images):
    lst, out = small_flow
    path = out / "output_000000.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("output_0.npy", b"\x93NUMPY garbage")
    _expect(InputError, r"output_000000\.npz", check_device_outputs, lst, out, wider_images)
