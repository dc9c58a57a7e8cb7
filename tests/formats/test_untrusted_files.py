"""Files from outside read safely: what a table row of ``test_cli_bad_input.py`` cannot show.

- ``--overwrite`` after an interrupted run removes exactly the files the run's manifest
  listed when it started, never an input, never a path outside the folder;
- an npz whose header declares gigabytes is refused before one byte is inflated (peak
  memory measured with tracemalloc, which numpy reports its buffers to);
- big-endian outputs are the same numbers as native ones;
- the build YAML loader refuses alias bombs and self-references but keeps ordinary
  anchors;
- an EXIF-rotated photo has one size everywhere: the header size equals what OpenCV
  decodes;
- a deeply nested detections JSON is bad input, not an internal error.
"""
from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
from dump_files import write_npz_bomb
from PIL import Image

from scrfd_ref.core.errors import InputError, UsageError
from scrfd_ref.formats.dataset import prediction_files
from scrfd_ref.formats.device_npz import read_output_npz, write_output_npz
from scrfd_ref.formats.images import image_size
from scrfd_ref.formats.manifest import RUN_MANIFEST, open_run


def _device_outputs(size: int = 64) -> list[np.ndarray]:
    return [np.random.default_rng(c).standard_normal((1, c, size // s, size // s)).astype(
        np.float32) for c in (2, 8, 20) for s in (8, 16, 32)]


# ----------------------------------------------------------------------------- --overwrite


def _start(folder: Path, identity: dict, outputs: list[str], **kw):
    return open_run(folder, RUN_MANIFEST, "npz-decode", identity, run_files=prediction_files,
                    outputs=outputs, **kw)


def test_overwrite_after_an_interrupted_run_removes_exactly_its_listed_files(tmp_path):
    out = tmp_path / "pred"
    with _start(out, {"profile": {"name": "device-flow"}, "n": 1},
                ["a/1.txt", "a/2.txt", "b/3.txt"]) as first:
        for rel in ("a/1.txt", "a/2.txt"):  # interrupted after two of the three files
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_text("x\n")
            first.record(out / rel)
    doc = json.loads((out / RUN_MANIFEST).read_text())
    assert doc["complete"] is False and doc["outputs"] == ["a/1.txt", "a/2.txt", "b/3.txt"]
    assert sorted(doc["sha256"]) == ["a/1.txt", "a/2.txt"]  # saved when the run stopped

    run = _start(out, {"profile": {"name": "device-flow"}, "n": 2}, ["c/4.txt"], overwrite=True)
    assert not (out / "a" / "1.txt").exists() and not (out / "a" / "2.txt").exists()
    assert run.doc["outputs"] == ["c/4.txt"]


def test_overwrite_deletes_no_file_whose_bytes_changed_since_the_run_recorded_them(tmp_path):
    out = tmp_path / "pred"
    with _start(out, {"n": 1}, ["a/1.txt", "a/2.txt"]) as run:
        for rel in ("a/1.txt", "a/2.txt"):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_text("x\n")
        run.finish()
    (out / "a" / "2.txt").write_text("my own notes\n")  # the user reused the name
    with pytest.raises(UsageError, match=r"1 file\(s\) the earlier run lists are not the "
                                         r"bytes it recorded \(a/2\.txt\)"):
        _start(out, {"n": 2}, ["a/1.txt"], overwrite=True)
    assert (out / "a" / "1.txt").exists() and (out / "a" / "2.txt").read_text() == "my own notes\n"


def test_two_runs_never_write_into_one_folder_at_once(tmp_path):
    out = tmp_path / "pred"
    with _start(out, {"n": 1}, ["a/1.txt"]):
        with pytest.raises(UsageError, match=r"--out .*pred: another scrfd-ref run is writing "
                                             r"into this folder now; wait for it"):
            _start(out, {"n": 1}, ["a/1.txt"])
    with _start(out, {"n": 1}, ["a/1.txt"]) as again:  # released when the first one ended
        assert again.resumed


def test_overwrite_refuses_files_no_manifest_lists_and_keeps_inputs(tmp_path):
    out = tmp_path / "proj"
    with _start(out, {"n": 1}, ["a/1.txt"]) as run:
        (out / "a").mkdir()
        (out / "a" / "1.txt").write_text("x\n")
        run.record(out / "a" / "1.txt")
    (out / "notes").mkdir()
    (out / "notes" / "meeting.txt").write_text("agenda\n")
    (out / "dump").mkdir()
    (out / "dump" / "datalist.txt").write_text("/x/1.npz\n")
    with pytest.raises(UsageError, match=r"holds 1 file\(s\) that no run manifest lists "
                                         r"\(notes/meeting\.txt\)"):
        _start(out, {"n": 2}, ["a/1.txt"], overwrite=True, inputs=[out / "dump"])
    assert (out / "a" / "1.txt").exists() and (out / "notes" / "meeting.txt").exists()

    (out / "notes" / "meeting.txt").unlink()
    _start(out, {"n": 2}, ["a/1.txt"], overwrite=True, inputs=[out / "dump"])
    assert (out / "dump" / "datalist.txt").read_text() == "/x/1.npz\n"  # an input: kept
    assert not (out / "a" / "1.txt").exists()


def test_overwrite_never_follows_a_manifest_outside_its_folder(tmp_path):
    out = tmp_path / "pred"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    _start(out, {"n": 1}, [])
    doc = json.loads((out / RUN_MANIFEST).read_text())
    doc["outputs"] = ["../victim.txt"]
    (out / RUN_MANIFEST).write_text(json.dumps(doc))
    _start(out, {"n": 2}, [], overwrite=True)
    assert victim.read_text() == "keep me\n"


# ----------------------------------------------------------------------------- npz files


def _bomb(path: Path, shape: tuple[int, ...]) -> None:
    """An output npz whose ``output_0`` declares ``shape`` float32 of zeros (deflated)."""
    arrays = [(f"output_{i}", a) for i, a in enumerate(_device_outputs())]
    write_npz_bomb(path, arrays, "output_0", shape)


def test_an_npz_declaring_more_than_heads_hold_is_refused_before_inflating(tmp_path):
    path = tmp_path / "output_000000.npz"
    _bomb(path, (1, 2, 8192, 4096))          # 256 MiB of zeros in a file of ~0.3 MiB
    assert path.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"output_0 declares \(1, 2, 8192, 4096\) float32 "
                                             r"\(256\.0 MiB\) in its header"):
            read_output_npz(path, input_size=(64, 64), max_batch=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB: the array was inflated"


def test_the_header_check_keeps_real_outputs(tmp_path):
    write_output_npz(tmp_path / "o.npz", _device_outputs(640), "fp16")
    assert [a.shape for a in read_output_npz(tmp_path / "o.npz", input_size=(640, 640),
                                             max_batch=1)][0] == (1, 2, 80, 80)


def test_big_endian_outputs_are_the_same_numbers(tmp_path):
    arrays = _device_outputs()
    np.savez(tmp_path / "be.npz", **{f"output_{i}": a.astype(">f4")
                                     for i, a in enumerate(arrays)})
    read = read_output_npz(tmp_path / "be.npz")
    assert all(r.dtype == np.float32 and r.dtype.isnative for r in read)
    assert all(np.array_equal(r, a) for r, a in zip(read, arrays))


# ----------------------------------------------------------------------------- build YAML


def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "y.yaml"
    p.write_text(text)
    return p


def test_ordinary_anchors_are_kept_and_alias_bombs_refused(tmp_path):
    from scrfd_ref.formats.build_yaml import read_build_yaml

    ok = read_build_yaml(_yaml(tmp_path, "norm: &n {mean: [127.5, 127.5, 127.5]}\n"
                                         "backend: {dtype: fp16}\nother: *n\n"))
    assert ok.dtype == "fp16" and not ok.problems
    lines = ["backend: {dtype: fp16}", "l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    with pytest.raises(UsageError, match="aliases expand to more than 100,000 nodes"):
        read_build_yaml(_yaml(tmp_path, "\n".join(lines) + "\n"))
    with pytest.raises(UsageError, match=r"alias \*a is used inside the node it names"):
        read_build_yaml(_yaml(tmp_path, "backend: {dtype: fp16}\na: &a {b: *a}\n"))


def test_a_quoted_boolean_is_a_problem_never_a_setting(tmp_path):
    from scrfd_ref.formats.build_yaml import read_build_yaml
    from scrfd_ref.quantize.convert import QuantRecipe

    recipe = read_build_yaml(_yaml(tmp_path, "backend: {dtype: int8, calibrate_mode: max, "
                                             "quantize_per_channel: 'false'}\n"))
    assert recipe.per_channel is None
    assert recipe.problems == ("quantize_per_channel: must be true or false, got 'false'",)
    with pytest.raises(UsageError, match="quantize_per_channel: must be true or false"):
        QuantRecipe.from_build_yaml(recipe)


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_the_header_size_is_the_decoded_size_of_a_rotated_photo(fmt, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(np.full((30, 50, 3), 100, np.uint8)).save(buf, fmt, exif=exif.tobytes())
    data = buf.getvalue()
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image_size(data) == (decoded.shape[1], decoded.shape[0])


def test_a_deeply_nested_detections_document_is_bad_input(tmp_path):
    from scrfd_ref.formats.detections_json import read_detections_json

    p = tmp_path / "d.json"
    p.write_text('{"images": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(InputError, match="nested too deeply"):
        read_detections_json(p)


def _big_png(path: Path, width: int, height: int) -> None:
    """A valid all-black PNG of ``width x height`` written row by row (a few MB on disk,
    never the whole picture in memory)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(
        ">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_an_image_above_the_pixel_limit_is_refused_before_its_pixels_are_decoded(tmp_path):
    """Issue 33, class 4: a 14000 x 14000 PNG (588 MB of pixels) was refused "from its
    header" only after reading its EXIF decoded it (944 MB peak). The refusal now costs
    what reading a header costs: peak memory of a fresh process well below the pixels."""
    import subprocess
    import sys

    png = tmp_path / "big.png"
    _big_png(png, 14000, 14000)
    code = ("import resource, sys\n"
            "from scrfd_ref.core.errors import InputError\n"
            "from scrfd_ref.formats.images import read_image\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
            "try:\n    read_image(sys.argv[1])\nexcept InputError as exc:\n    print(exc)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    res = subprocess.run([sys.executable, "-c", code, str(png)], capture_output=True,
                         text=True, timeout=300)
    before_kb, message, peak_kb = res.stdout.strip().splitlines()
    assert "image is 14000x14000 = 196,000,000 pixels, above the limit" in message
    grew = (int(peak_kb) - int(before_kb)) // 1024
    assert grew < 150, f"the refusal took {grew} MB more: the pixels were decoded (588 MB)"
