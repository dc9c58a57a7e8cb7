"""Every command against bad input, as a user would meet it: a table of cases.

Each row runs one ``scrfd-ref`` command line as a subprocess in a fresh copy of a small
synthetic workspace (:mod:`cli_workspace`), after making one thing wrong, and checks:

- the exit status (0 done, 1 a problem in the data or a failed check, 2 usage; the
  conventions page);
- no Python traceback and no "internal error" (a traceback only with ``--debug``);
- on failure, exactly one ``error:`` line on stderr, naming the file or option, matching
  the row's fragment;
- the files the row protects are byte-identical afterwards (a command never writes onto
  its inputs), and the paths it lists do not exist (nothing written while input is bad).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from cli_workspace import build_workspace
from dump_files import as_written_by_the_run, write_npz_bomb

#: the gates file the checkout ships (data/ is copied into the wheel as scrfd_ref/_data)
SHIPPED_GATES = Path(__file__).resolve().parents[2] / "data" / "gates.toml"

WS = "{ws}"


@dataclass(frozen=True)
class Case:
    """One bad-input row."""

    id: str
    argv: tuple                       # str or bytes; "{ws}" is replaced by the workspace
    rc: int
    message: str                      # regex searched in stderr (rc != 0) or stdout (rc 0)
    setup: Callable[[Path], None] | None = None
    keep: tuple[str, ...] = ()        # paths (files or folders) that must not change
    absent: tuple[str, ...] = ()      # paths that must not exist afterwards
    stderr: str | None = None         # extra regex expected in stderr (notices, warnings)
    check: Callable[[Path], None] | None = None
    traceback: bool = False           # --debug rows expect a traceback
    env: dict = field(default_factory=dict)
    one_line: bool = False            # stderr is that one line and nothing else (no
                                      # library warnings before it)
    stdout: str | None = None         # extra regex expected in stdout (check-config's list)


# ----------------------------------------------------------------------------- setups


def _write(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        p = ws / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return setup


def _mkdir(rel: str) -> Callable[[Path], None]:
    return lambda ws: (ws / rel).mkdir(parents=True, exist_ok=True)


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header says ``width x height`` (no pixel data follows)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _manifest(rel: str, **changes) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        p = ws / rel
        doc = json.loads(p.read_text())
        doc.update(changes)
        p.write_text(json.dumps(doc))
    return setup


def _datalist(transform: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        lines = (ws / "datalist.txt").read_text().splitlines()
        (ws / "datalist.txt").write_text("".join(f"{x}\n" for x in transform(lines)))
    return setup


def _edit_output(index: int, edit: Callable[[list[np.ndarray]], list[np.ndarray]]
                 ) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        p = ws / "dump" / f"output_{index:06d}.npz"
        with np.load(p) as z:
            arrays = [z[f"output_{i}"] for i in range(len(z.files))]
        arrays = edit(arrays)
        np.savez(p, **{f"output_{i}": a for i, a in enumerate(arrays)})
        as_written_by_the_run(ws / "dump")  # the device wrote these bytes
    return setup


def _rebatch(ws: Path) -> None:
    """Rewrite the 3 single-image dump files as a batch of 2 and a batch of 1."""
    files = sorted((ws / "dump").glob("output_*.npz"))
    singles = []
    for f in files:
        with np.load(f) as z:
            singles.append([z[f"output_{i}"] for i in range(len(z.files))])
        f.unlink()
    for k, group in enumerate((singles[:2], singles[2:])):
        np.savez(ws / "dump" / f"output_{k:06d}.npz",
                 **{f"output_{i}": np.concatenate(a, axis=0) for i, a in enumerate(zip(*group))})
    as_written_by_the_run(ws / "dump")


def _replace_output(index: int, by: int) -> Callable[[Path], None]:
    """Output ``index`` replaced by a copy of output ``by`` after the dump finished (its
    manifest untouched): a file whose bytes are not the ones the run recorded."""
    def setup(ws: Path) -> None:
        dump = ws / "dump"
        (dump / f"output_{index:06d}.npz").write_bytes(
            (dump / f"output_{by:06d}.npz").read_bytes()[:-1] + b"\0")
    return setup


def _encoded(ext: str) -> bytes:
    """A 300 x 200 noise picture encoded as ``ext`` (OpenCV's own encoder)."""
    import cv2

    pixels = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    return cv2.imencode(ext, pixels)[1].tobytes()


def _fp16_model(ws: Path) -> None:
    """``m16.onnx``: ``model.onnx`` converted to fp16 (as a device team's build would be)."""
    from scrfd_ref.quantize.convert import convert_model

    shutil.copy(convert_model(ws / "model.onnx", "fp16", cache_dir=ws / "cache"),
                ws / "m16.onnx")


def _both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        for s in setups:
            s(ws)
    return setup


def _copy(src: str, dst: str) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        (ws / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ws / src, ws / dst)
    return setup


def _odd_names(ws: Path) -> None:
    folder = ws / "odd"
    folder.mkdir()
    data = (ws / "images" / "1--A" / "1_a_1.jpg").read_bytes()
    (folder / os.fsdecode(b"caf\xe9.jpg")).write_bytes(data)
    (folder / "-dash.jpg").write_bytes(data)
    (folder / "with space.jpg").write_bytes(data)


def _same_stems(ws: Path) -> None:
    for sub in ("a", "b"):
        (ws / "same" / sub).mkdir(parents=True)
        shutil.copy(ws / "images" / "1--A" / "1_a_1.jpg", ws / "same" / sub / "x.jpg")


def _pred_file(rel: str, text: str) -> Callable[[Path], None]:
    """A prediction file as the run itself would have written it (recorded)."""
    return _both(_write(f"pred/{rel}", text), lambda ws: as_written_by_the_run(ws / "pred"))


def _pred_copy(drop: str | None = None, add: str | None = None) -> Callable[[Path], None]:
    """``pred2/``: a copy of ``pred/`` less the file ``drop``, plus an empty file ``add``."""
    def setup(ws: Path) -> None:
        shutil.copytree(ws / "pred", ws / "pred2")
        if drop:
            (ws / "pred2" / drop).unlink()
        if add:
            (ws / "pred2" / add).write_text(f"{add[:-4]}\n0\n")
        as_written_by_the_run(ws / "pred2")
    return setup


def _labelled_mats(**bad: tuple[str, int]) -> Callable[[Path], None]:
    """``mat/``: the workspace's text ground truth as the four official .mat files
    (scipy.io.savemat, the official layout) with the six face labels, all 0, except
    ``attribute=(image, value)``: that label of the image's first box."""
    import scipy.io

    def cell(items) -> np.ndarray:
        out = np.empty((len(items), 1), dtype=object)
        for i, x in enumerate(items):
            out[i, 0] = x
        return out

    def setup(ws: Path) -> None:
        lines = (ws / "gt" / "wider_face_val_bbx_gt.txt").read_text().split("\n")
        images: dict[str, dict[str, np.ndarray]] = {}
        i = 0
        while i + 1 < len(lines) and lines[i]:
            event, name = lines[i][:-4].split("/")
            n = int(lines[i + 1])
            images.setdefault(event, {})[name] = np.array(
                [[float(v) for v in row.split()[:4]] for row in lines[i + 2:i + 2 + n]])
            i += 2 + n
        events = list(images)
        ev = cell([np.array([e]) for e in events])
        fl = cell([cell([np.array([n]) for n in images[e]]) for e in events])
        face = {"event_list": ev, "file_list": fl,
                "face_bbx_list": cell([cell(list(images[e].values())) for e in events])}
        for a in ("blur", "expression", "illumination", "invalid", "occlusion", "pose"):
            per_event = []
            for e in events:
                per = []
                for n, b in images[e].items():
                    lab = np.zeros((len(b), 1), np.uint8)
                    if a in bad and bad[a][0] == f"{e}/{n}":
                        lab[0, 0] = bad[a][1]
                    per.append(lab)
                per_event.append(cell(per))
            face[f"{a}_label_list"] = cell(per_event)
        (ws / "mat").mkdir(exist_ok=True)
        scipy.io.savemat(ws / "mat" / "wider_face_val.mat", face)
        gl = cell([cell([np.arange(1, len(b) + 1, dtype=np.uint16).reshape(-1, 1)
                         for b in images[e].values()]) for e in events])
        for s in ("easy", "medium", "hard"):
            scipy.io.savemat(ws / "mat" / f"wider_{s}_val.mat",
                             {"gt_list": gl, "event_list": ev, "file_list": fl})
    return setup


def _check_pictures(*names: str) -> Callable[[Path], None]:
    def check(ws: Path) -> None:
        for n in names:
            assert (ws / "o" / n).is_file(), f"missing picture {n}"
    return check


def _mode_follows_umask(ws: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    mode = (ws / "o.json").stat().st_mode & 0o777
    assert mode == 0o666 & ~umask, (oct(mode), oct(umask))


def _removed_old_predictions(ws: Path) -> None:
    doc = json.loads((ws / "pred" / "scrfd_run.json").read_text())
    assert doc["complete"] and doc["identity"]["model"] == "model_b.onnx"


def _thresholds_recorded(ws: Path) -> None:
    doc = json.loads((ws / "p" / "scrfd_run.json").read_text())
    assert doc["identity"]["profile"]["score_thr"] == 0.3
    assert doc["identity"]["profile"]["letterbox"] == "centered"


# ---- setups of the third hardening pass (issue 28)


def _identity(rel: str, edit: Callable[[dict], None]) -> Callable[[Path], None]:
    """Edit the ``identity`` of a manifest in place."""
    def setup(ws: Path) -> None:
        p = ws / rel
        doc = json.loads(p.read_text())
        edit(doc["identity"])
        p.write_text(json.dumps(doc))
    return setup


def _relative_datalist_in_npz(ws: Path) -> None:
    """``npz/datalist.txt`` listing the inputs relative to the workspace (the cwd)."""
    (ws / "npz" / "datalist.txt").write_text(
        "".join(f"npz/{p.name}\n" for p in sorted((ws / "npz").glob("*.npz"))))


def _regenerate_input(ws: Path) -> None:
    """``npz/1_a_2.npz`` rewritten under the same name with other pixels."""
    from scrfd_ref.formats.device_npz import read_input_npz, write_input_npz

    p = ws / "npz" / "1_a_2.npz"
    write_input_npz(p, 255 - read_input_npz(p))


def _regenerate_input_keeping_size_and_time(ws: Path) -> None:
    """``npz/1_a_2.npz`` rewritten with other pixels of the same size, its modification
    time set back (what a size-and-time shortcut cannot tell apart)."""
    p = ws / "npz" / "1_a_2.npz"
    st = p.stat()
    _regenerate_input(ws)
    assert p.stat().st_size == st.st_size
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def _cut_dump(keep: int) -> Callable[[Path], None]:
    """Keep the first ``keep`` output files and datalist lines (manifest untouched)."""
    def setup(ws: Path) -> None:
        for f in sorted((ws / "dump").glob("output_*.npz"))[keep:]:
            f.unlink()
        for dl in (ws / "datalist.txt", ws / "dump" / "datalist.txt"):
            dl.write_text("".join(f"{x}\n" for x in dl.read_text().splitlines()[:keep]))
    return setup


def _npz_bomb(ws: Path) -> None:
    """``dump/output_000000.npz`` whose ``output_0`` header declares 256 MiB of float32
    (deflated zeros: the file stays small)."""
    p = ws / "dump" / "output_000000.npz"
    with np.load(p) as z:
        arrays = [(k, z[k]) for k in z.files]
    write_npz_bomb(p, arrays, "output_0", (1, 2, 8192, 4096))


def _exif_rotated_original(ws: Path) -> None:
    """``1_a_1.jpg`` stored 96x128 with EXIF orientation 6 (shown 128x96), its input npz
    made as image2npz makes it, and the dump made again from the inputs."""
    import io

    from PIL import Image

    from scrfd_ref.formats.device_npz import write_input_npz
    from scrfd_ref.formats.images import read_image

    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(np.full((128, 96, 3), 90, np.uint8)).save(buf, "JPEG", exif=exif.tobytes())
    from scrfd_ref.cli.app import main

    original = ws / "images" / "1--A" / "1_a_1.jpg"
    original.write_bytes(buf.getvalue())
    write_input_npz(ws / "npz" / "1_a_1.npz", read_image(original))
    # the device runs the new input (npz-decode refuses outputs made from other inputs)
    assert main([a.format(ws=ws) for a in DUMP] + ["--out", str(ws / "dump"),
                                                   "--overwrite"]) == 0


def _png(ws: Path) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.full((40, 50, 3), 7, np.uint8))
    return buf.tobytes()


def _truncated_png(ws: Path) -> None:
    data = _png(ws)
    (ws / "t.png").write_bytes(data[:len(data) // 2])


def _png_crc_error(ws: Path) -> None:
    data = bytearray(_png(ws))
    data[29] ^= 0xFF  # IHDR's CRC
    (ws / "t.png").write_bytes(bytes(data))


def _fake_openvino(capabilities: tuple[str, ...] | None) -> Callable[[Path], None]:
    """An ``openvino`` package under ``{ws}/fakeov`` (put on PYTHONPATH by the row): one
    whose import fails like a missing install (``None``), or whose CPU plugin reports
    ``capabilities``; no real OpenVINO needed, so the rows run in either tier."""
    if capabilities is None:
        body = "raise ImportError(\"No module named 'openvino' (simulated)\")\n"
    else:
        body = ("__version__ = '0.0-fake'\n\n\nclass Core:\n"
                "    def get_property(self, device, name):\n"
                f"        return {{'OPTIMIZATION_CAPABILITIES': {list(capabilities)!r}, "
                "'FULL_DEVICE_NAME': 'Fake CPU'}[name]\n")
    return _write("fakeov/openvino/__init__.py", body)


FAKE_OV = {"PYTHONPATH": f"{WS}/fakeov"}


def _vdsp(**config) -> Callable[[Path], None]:
    """``v.json``: the 640 vdsp file with some OpConfig values replaced (NaN allowed)."""
    doc = json.loads(open(V640).read())
    doc["OpConfig"].update(config)
    return _write("v.json", json.dumps(doc))


def _laughs(levels: int) -> str:
    """A "billion laughs" YAML: each level lists the previous one 9 times."""
    lines = ["backend: {dtype: fp16}", 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", '
                                       '"lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


M = f"{WS}/model.onnx"
IMG = f"{WS}/images/1--A/1_a_1.jpg"
GT = f"{WS}/gt/wider_face_val_bbx_gt.txt"
DECODE = ("npz-decode", "--datalist", f"{WS}/datalist.txt", "--outputs", f"{WS}/dump",
          "--images", f"{WS}/images", "-q")
DUMP = ("dump", "-q", "-m", M, "--datalist", f"{WS}/datalist.txt")
WRUN = ("wider-run", "-q", "-m", M, "--images", f"{WS}/images", "--score-thr", "0.3")
EVAL = ("eval", "--pred", f"{WS}/pred", "--gt", GT)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
V640 = str(CONFIGS / "vdsp" / "scrfd_500m.json")
V256 = str(CONFIGS / "vdsp" / "scrfd_1g.json")
ZOO_YAML = str(CONFIGS / "yaml" / "official_scrfd.yaml")

CASES = [
    # ------------------------------------------------------------------ global
    Case("unknown-command", ("frobnicate",), 2, r"invalid choice: 'frobnicate'"),
    Case("unknown-option", ("detect", "--frob"), 2,
         r"scrfd-ref: error: unrecognized arguments: --frob"),
    Case("debug-shows-traceback", ("detect", f"{WS}/none.jpg", "--debug"), 2,
         r"none\.jpg: image not found", traceback=True),
    Case("debug-env", ("detect", f"{WS}/none.jpg"), 2, r"image not found", traceback=True,
         env={"SCRFD_DEBUG": "1"}),
    # issue 33, class 5: SCRFD_DEBUG=no turned debugging on; --backend '' ran ort
    Case("debug-env-no", ("detect", f"{WS}/none.jpg"), 2, r"image not found",
         env={"SCRFD_DEBUG": "no"}),
    Case("detect-backend-empty", ("detect", "-m", M, "--backend", "", IMG), 2,
         r"argument --backend/-B: expected a backend \(.*ort.*\), got ''"),
    Case("dump-backend-misspelt", ("dump", "-m", M, "--backend", "ortt", "--datalist",
                                   f"{WS}/l.txt", "--out", f"{WS}/o"), 2,
         r"argument --backend/-B: expected a backend .*, got 'ortt'; did you mean ort\?"),
    # ------------------------------------------------------------------ detect
    Case("detect-missing-image", ("detect", "-m", M, f"{WS}/none.jpg"), 2,
         r"none\.jpg: image not found"),
    Case("detect-image-is-folder", ("detect", "-m", M, f"{WS}/images"), 2,
         r"images: is a folder, not an image"),
    Case("detect-out-is-input-folder", ("detect", "-m", M, IMG, "--out", f"{WS}/images/1--A"),
         2, r"--out .*1--A: holds the input image", keep=("images",)),
    Case("detect-out-is-a-file", ("detect", "-m", M, IMG, "--out", GT), 2,
         r"--out .*\.txt: is a file; give a folder", keep=("gt",)),
    Case("detect-out-under-a-file", ("detect", "-m", M, IMG, "--out", f"{GT}/sub"), 2,
         r"is a file, not a folder", keep=("gt",)),
    Case("detect-json-is-folder", ("detect", "-m", M, IMG, "--json", f"{WS}/images"), 2,
         r"--json .*images: is a folder; give a file name"),
    Case("detect-json-onto-input", ("detect", "-m", M, IMG, "--json", IMG), 2,
         r"--json .*1_a_1\.jpg: is one of the command's inputs", keep=("images",)),
    Case("detect-json-follows-umask", ("detect", "-m", M, IMG, "--json", f"{WS}/o.json"), 0,
         r"1_a_1\.jpg: \d+ face", check=_mode_follows_umask),
    Case("detect-input-size-huge", ("detect", "-m", M, IMG, "--input-size", "64000,64000"), 2,
         r"argument --input-size: '64000,64000': each side must be a multiple of 32"),
    Case("detect-input-size-odd", ("detect", "-m", M, IMG, "--input-size", "100,100"), 2,
         r"argument --input-size: .*multiple of 32"),
    Case("detect-input-size-garbage", ("detect", "-m", M, IMG, "--input-size", "big"), 2,
         r"argument --input-size: expected W,H"),
    Case("detect-fixed-model-other-size", ("detect", "-m", f"{WS}/fixed.onnx", IMG,
                                           "--input-size", "320,320"), 2,
         r"--input-size 320,320: the model input is fixed at 640x640"),
    Case("detect-score-thr-2", ("detect", "-m", M, IMG, "--score-thr", "2"), 2,
         r"argument --score-thr: expected a number from 0 to 1, got '2'"),
    Case("detect-score-thr-nan", ("detect", "-m", M, IMG, "--score-thr", "nan"), 2,
         r"argument --score-thr: expected a number from 0 to 1"),
    Case("detect-max-num-negative", ("detect", "-m", M, IMG, "--max-num", "-1"), 2,
         r"argument --max-num: expected an integer >= 0"),
    Case("detect-huge-png", ("detect", "-m", M, f"{WS}/huge.png"), 1,
         r"huge\.png: image is 40000x40000 = 1,600,000,000 pixels, above the limit",
         setup=_write("huge.png", _png_header(40000, 40000))),
    Case("detect-max-pixels", ("detect", "-m", M, IMG, "--max-pixels", "100"), 1,
         r"1_a_1\.jpg: image is 128x96 .* above the limit of 100"),
    Case("detect-max-pixels-zero", ("detect", "-m", M, IMG, "--max-pixels", "0"), 2,
         r"argument --max-pixels: expected a pixel count"),
    Case("detect-corrupt-image", ("detect", "-m", M, f"{WS}/bad.jpg"), 1,
         r"bad\.jpg: file does not decode as an image", setup=_write("bad.jpg", b"\xff\xd8junk" * 9)),
    Case("detect-empty-image", ("detect", "-m", M, f"{WS}/empty.jpg"), 1,
         r"empty\.jpg: image file is empty", setup=_write("empty.jpg", b"")),
    Case("detect-missing-model", ("detect", "-m", f"{WS}/none.onnx", IMG), 2,
         r"--model .*none\.onnx: model not found"),
    Case("detect-model-not-onnx", ("detect", "-m", GT, IMG), 1,
         r"ONNX Runtime cannot load the model"),
    Case("detect-model-is-folder", ("detect", "-m", f"{WS}/images", IMG), 2,
         r"--model .*images: is a folder, not an ONNX model file"),
    Case("detect-variant-without-weights", ("detect", "-m", "34g", IMG), 2,
         r"no weights for SCRFD 34g: put scrfd_34g\.onnx"),
    Case("detect-same-stems-kept-apart", ("detect", "-m", M, f"{WS}/same/a/x.jpg",
                                          f"{WS}/same/b/x.jpg", "--out", f"{WS}/o"), 0,
         r"x-2\.jpg", setup=_same_stems, check=_check_pictures("x.jpg", "x-2.jpg"),
         keep=("same",)),
    Case("detect-non-utf8-name", ("detect", "-m", M, os.fsencode(WS) + b"/odd/caf\xe9.jpg",
                                  "--out", f"{WS}/o"), 0, r"caf\\xe9\.jpg: \d+ face",
         setup=_odd_names, check=_check_pictures(os.fsdecode(b"caf\xe9.jpg")), keep=("odd",)),
    Case("detect-dash-and-space-names", ("detect", "-m", M, "--out", f"{WS}/o", "--",
                                         f"{WS}/odd/-dash.jpg", f"{WS}/odd/with space.jpg"), 0,
         r"with space\.jpg: \d+ face", setup=_odd_names,
         check=_check_pictures("-dash.jpg", "with space.jpg"), keep=("odd",)),
    # ------------------------------------------------------------------ wider-run
    Case("wider-run-out-is-file", (*WRUN, "--out", GT), 2, r"--out .*: is a file; give a folder",
         keep=("gt",)),
    Case("wider-run-json-is-folder", (*WRUN, "--out", f"{WS}/p", "--json", f"{WS}/images"),
         2, r"--json .*images: is a folder; give a file name", absent=("p",)),
    Case("wider-run-json-onto-image", (*WRUN, "--out", f"{WS}/p", "--json",
                                       f"{WS}/images/1--A/1_a_1.jpg"), 2,
         r"--json .*1_a_1\.jpg: lies inside the input folder", keep=("images",),
         absent=("p",)),
    Case("wider-run-workers-negative", (*WRUN, "--out", f"{WS}/p", "--workers", "-1"), 2,
         r"argument --workers: expected an integer from 0 to \d+ \(4 per usable core\), "
         r"got '-1'", absent=("p",)),
    Case("wider-run-workers-not-int", (*WRUN, "--out", f"{WS}/p", "--workers", "two"), 2,
         r"argument --workers: expected an integer from 0 to \d+ \(4 per usable core\), "
         r"got 'two'", absent=("p",)),
    Case("wider-run-out-is-images", (*WRUN, "--out", f"{WS}/images"), 2,
         r"--out .*images: is one of the command's inputs", keep=("images",)),
    Case("wider-run-images-missing", ("wider-run", "-m", M, "--images", f"{WS}/none",
                                      "--out", f"{WS}/p"), 2, r"--images .*none: image folder not found",
         absent=("p",)),
    Case("wider-run-unknown-event", (*WRUN, "--out", f"{WS}/p", "--events", "9--Z"), 2,
         r"no event folder\(s\) 9--Z", absent=("p",)),
    Case("wider-run-repeated-event", (*WRUN, "--out", f"{WS}/p", "--events", "1--A", "1--A"),
         0, r"wider-run: 2 images", stderr=r"--events names 1--A more than once"),
    Case("wider-run-other-model", ("wider-run", "-q", "-m", f"{WS}/model_b.onnx", "--images",
                                   f"{WS}/images", "--score-thr", "0.3", "--out", f"{WS}/pred"),
         2, r"--out .*pred: holds a different wider-run run: model \(recorded model\.onnx, now "
            r"model_b\.onnx\), model_sha256", keep=("pred",)),
    Case("wider-run-other-profile", (*WRUN[:-2], "--out", f"{WS}/pred"), 2,
         r"holds a different wider-run run: profile\.score_thr \(recorded 0\.3, now 0\.02\)",
         keep=("pred",)),
    Case("wider-run-overwrite", ("wider-run", "-q", "-m", f"{WS}/model_b.onnx", "--images",
                                 f"{WS}/images", "--score-thr", "0.3", "--out", f"{WS}/pred",
                                 "--overwrite"), 0, r"3 written", check=_removed_old_predictions),
    Case("wider-run-same-run-resumes", (*WRUN, "--out", f"{WS}/pred"), 0,
         r"all 3 images were done already", keep=("pred/1--A", "pred/2--B")),
    Case("wider-run-unknown-run-files", (*WRUN, "--out", f"{WS}/pred"), 2,
         r"holds 3 file\(s\) of an unknown run \(no scrfd_run\.json\)",
         setup=lambda ws: (ws / "pred" / "scrfd_run.json").unlink(), keep=("pred",)),
    Case("wider-run-corrupt-manifest", (*WRUN, "--out", f"{WS}/pred"), 1,
         r"scrfd_run\.json: not a readable manifest", setup=_write("pred/scrfd_run.json", "{bad"),
         keep=("pred",)),
    Case("wider-run-unreadable-image", (*WRUN, "--out", f"{WS}/p"), 1,
         r"images: 1 problem\(s\):\n  .*1_a_9\.jpg: not a readable image",
         setup=_write("images/1--A/1_a_9.jpg", b"not a jpeg"), absent=("p",)),
    # ------------------------------------------------------------------ eval
    Case("eval-pred-missing", ("eval", "--pred", f"{WS}/none", "--gt", GT), 2,
         r"--pred .*none: prediction folder not found"),
    Case("eval-pred-is-file", ("eval", "--pred", GT, "--gt", GT), 2,
         r"--pred .*: is a file, not a prediction folder"),
    Case("eval-gt-missing", ("eval", "--pred", f"{WS}/pred", "--gt", f"{WS}/none"), 2,
         r"--gt .*none: ground truth not found"),
    Case("eval-json-is-folder", (*EVAL, "--json", f"{WS}/images"), 2,
         r"--json .*images: is a folder; give a file name"),
    Case("eval-plot-onto-prediction", (*EVAL, "--plot", f"{WS}/pred/1--A/1_a_1.txt"), 2,
         r"--plot .*1_a_1\.txt: lies inside the input folder", keep=("pred",)),
    Case("eval-bad-files-all-listed", EVAL, 1,
         r"prediction folder .*pred: 2 problem\(s\):\n  .*1_a_1\.txt:2: count line says 5 "
         r"detections but 1 lines follow\n  .*2_b_1\.txt:3: expected 5 numbers",
         setup=_both(_pred_file("1--A/1_a_1.txt", "1--A/1_a_1\n5\n1 2 3 4 0.5\n"),
                     _pred_file("2--B/2_b_1.txt", "2--B/2_b_1\n1\n1 2 3 0.5\n"))),
    Case("eval-same-image-twice", EVAL, 1, r"a second prediction file for image '1_a_1'",
         setup=_pred_file("1--A/1_a_1.jpg.txt", "1--A/1_a_1\n0\n")),
    Case("eval-negative-width-warns", EVAL, 0, r"All    Val AP:",
         setup=_pred_file("1--A/1_a_1.txt", "1--A/1_a_1\n2\n10 10 -3 5 0.9\n10 10 20 20 0.8\n"),
         stderr=r"warning: 1 prediction\(s\) have a negative width or height"),
    Case("eval-txt-gt-reports-all-faces", EVAL, 0, r"All    Val AP: [0-9.]+\n",
         stderr=r"reporting the 'all faces' setting only"),
    Case("eval-repeated-event", (*EVAL, "--events", "1--A", "1--A"), 0, r"images 2,",
         stderr=r"--events names 1--A more than once"),
    Case("eval-unknown-event", (*EVAL, "--events", "9--Z"), 2,
         r"--events 9--Z: not in the ground truth"),
    Case("eval-corrupt-mat", ("eval", "--pred", f"{WS}/pred", "--gt", f"{WS}/mat"), 1,
         r"wider_face_val\.mat: not a readable MATLAB \.mat file",
         setup=_write("mat/wider_face_val.mat", b"MATLAB 5.0 MAT-file junk" * 4)),
    Case("eval-compare-missing", (*EVAL, "--compare", f"{WS}/none"), 2,
         r"--compare .*none: prediction folder not found"),
    Case("eval-compare-is-file", (*EVAL, "--compare", GT), 2,
         r"--compare .*: is a file, not a prediction folder"),
    Case("eval-compare-other-images", (*EVAL, "--compare", f"{WS}/pred2"), 1,
         r"--compare .*pred2: not the images of --pred .*pred: 1 image\(s\) only in --pred "
         r"\(2--B/2_b_1\); 1 image\(s\) only in --compare \(1--A/1_a_9\)",
         setup=_pred_copy(drop="2--B/2_b_1.txt", add="1--A/1_a_9.txt"), keep=("pred", "pred2")),
    Case("eval-compare-with-pred-is-a-self-check", (*EVAL, "--compare", f"{WS}/pred",
                                                   "--resamples", "200"), 0,
         r"\nall +0\.000% +0\.000% +\+0\.00000 \[\+0\.00000, \+0\.00000\] +nan \[nan, nan\] +no\n"
         r".*\nratio nan: the --pred AP is 0",  # the workspace's synthetic model finds no face
         stderr=r"notice: --compare is the --pred folder: the delta is 0"),
    Case("eval-resamples-without-compare", (*EVAL, "--resamples", "10"), 2,
         r"--resamples: only with --compare DIR"),
    Case("eval-resamples-zero", (*EVAL, "--compare", f"{WS}/pred", "--resamples", "0"), 2,
         r"argument --resamples: expected an integer from 1 to 100000, got '0'"),
    # the issue's case: one resample gave a zero-width "95% interval" excluding its estimate
    Case("eval-resamples-below-the-floor", (*EVAL, "--compare", f"{WS}/pred", "--resamples",
                                            "1"), 2,
         r"--resamples 1: too few for a 95% interval; give at least 200"),
    Case("eval-resamples-floor-follows-the-confidence",
         (*EVAL, "--compare", f"{WS}/pred", "--resamples", "300", "--confidence", "0.99"), 2,
         r"--resamples 300: too few for a 99% interval; give at least 1000"),
    Case("eval-confidence-one", (*EVAL, "--compare", f"{WS}/pred", "--confidence", "1"), 2,
         r"--confidence 1\.0: give a level strictly between 0 and 1"),
    # per-slice evaluation (--by attribute) needs the .mat face labels; its options need it
    Case("eval-by-attribute-gt-without-labels", (*EVAL, "--by", "attribute"), 2,
         r"error: .*gt/wider_face_val_bbx_gt\.txt: has no face attributes \(blur, expression, "
         r"illumination, occlusion, pose\); slices need the official wider_face_val\.mat",
         # refused before any prediction file is read (this one is malformed)
         setup=_pred_file("1--A/1_a_1.txt", "1--A/1_a_1\n5\n1 2 3 4 0.5\n")),
    Case("eval-operating-score-without-by", (*EVAL, "--operating-score", "0.6"), 2,
         r"error: --operating-score: only with --by attribute"),
    Case("eval-forest-without-compare", (*EVAL, "--by", "attribute", "--forest",
                                         f"{WS}/forest.png"), 2,
         r"error: --forest: only with --compare DIR", absent=("forest.png",)),
    Case("eval-forest-onto-the-prediction-folder-file",
         (*EVAL, "--by", "attribute", "--compare", f"{WS}/pred", "--forest",
          f"{WS}/pred/1--A/1_a_1.txt"), 2,
         r"error: --forest .*pred/1--A/1_a_1\.txt: lies inside the input folder .*pred; write "
         r"the output somewhere else", keep=("pred",)),
    Case("eval-by-attribute-labelled-mat", ("eval", "--pred", f"{WS}/pred", "--gt",
                                            f"{WS}/mat", "--by", "attribute"), 0,
         r"per slice .*\n.*\nblur=clear +3 ", setup=_labelled_mats()),
    Case("eval-by-attribute-label-out-of-range",
         ("eval", "--pred", f"{WS}/pred", "--gt", f"{WS}/mat", "--by", "attribute"), 1,
         r"error: .*mat/wider_face_val\.mat: 2--B/2_b_1: occlusion_label_list holds 7; "
         r"occlusion labels are 0\.\.2 \(none / partial / heavy\)",
         setup=_labelled_mats(occlusion=("2--B/2_b_1", 7)), keep=("mat",)),
    Case("eval-forest-is-also-the-json",
         (*EVAL[:-1], f"{WS}/mat", "--by", "attribute", "--compare", f"{WS}/pred", "--forest",
          f"{WS}/out.png", "--json", f"{WS}/out.png"), 2,
         r"error: --forest .*out\.png: is also --json; give each output its own file",
         setup=_labelled_mats(), absent=("out.png",)),
    Case("eval-plot-is-also-the-json", (*EVAL, "--plot", f"{WS}/out.png", "--json",
                                        f"{WS}/out.png"), 2,
         r"error: --plot .*out\.png: is also --json; give each output its own file",
         absent=("out.png",)),
    # ------------------------------------------------------------------ image2npz
    Case("image2npz-dataset-missing", ("image2npz", "--dataset-path", f"{WS}/none",
                                       "--target-path", f"{WS}/n2", "--text-path", f"{WS}/l.txt"),
         2, r"--dataset-path .*none: image folder not found", absent=("n2", "l.txt")),
    Case("image2npz-target-is-file", ("image2npz", "--dataset-path", f"{WS}/images",
                                      "--target-path", GT, "--text-path", f"{WS}/l.txt"), 2,
         r"--target-path .*: is a file; give a folder", keep=("gt",)),
    Case("image2npz-target-inside-dataset", ("image2npz", "--dataset-path", f"{WS}/images",
                                             "--target-path", f"{WS}/images/npz",
                                             "--text-path", f"{WS}/l.txt"), 2,
         r"--target-path .*: lies inside --dataset-path", keep=("images",)),
    Case("image2npz-text-is-folder", ("image2npz", "--dataset-path", f"{WS}/images",
                                      "--target-path", f"{WS}/n2", "--text-path", f"{WS}/npz"),
         2, r"--text-path .*npz: is a folder; give a file name"),
    Case("image2npz-text-onto-image", ("image2npz", "--dataset-path", f"{WS}/images",
                                       "--target-path", f"{WS}/n2", "--text-path", IMG), 2,
         r"--text-path .*1_a_1\.jpg: lies inside the input folder", keep=("images",)),
    Case("image2npz-names-repeat", ("image2npz", "-q", "--dataset-path", f"{WS}/images",
                                    "--target-path", f"{WS}/n2", "--text-path", f"{WS}/l.txt"),
         1, r"image names repeat across events \(1_a_1 \(1--A, 2--B\)\)",
         setup=_copy("images/1--A/1_a_1.jpg", "images/2--B/1_a_1.jpg"), absent=("n2", "l.txt")),
    # ------------------------------------------------------------------ dump
    Case("dump-datalist-missing", (*DUMP[:4], "--datalist", f"{WS}/none.txt", "--out",
                                   f"{WS}/d2"), 2, r"--datalist .*none\.txt: datalist not found"),
    Case("dump-datalist-is-folder", (*DUMP[:4], "--datalist", f"{WS}/npz", "--out", f"{WS}/d2"),
         2, r"--datalist .*npz: is a folder, not a datalist"),
    Case("dump-repeated-line", (*DUMP, "--out", f"{WS}/d2"), 1,
         r"line 4 repeats line 1 .*1_a_1\.npz", setup=_datalist(lambda x: x + x[:1]),
         absent=("d2",)),
    Case("dump-missing-input", (*DUMP, "--out", f"{WS}/d2"), 1,
         r"datalist .*: 1 problem\(s\):\n  .*2_b_1\.npz: input npz not found",
         setup=lambda ws: (ws / "npz" / "2_b_1.npz").unlink(), absent=("d2",)),
    Case("dump-other-run", (*DUMP, "--dtype", "fp16", "--out", f"{WS}/dump"), 2,
         r"--out .*dump: holds a different dump run: device_model_sha256 .*dtype \(recorded "
         r"fp32, now fp16\)", keep=("dump",)),
    Case("dump-unknown-files", (*DUMP, "--out", f"{WS}/dump"), 2,
         r"holds 4 file\(s\) of an unknown run \(no scrfd_dump\.json\)",
         setup=lambda ws: (ws / "dump" / "scrfd_dump.json").unlink(), keep=("dump",)),
    Case("dump-corrupt-manifest", (*DUMP, "--out", f"{WS}/dump"), 1,
         r"scrfd_dump\.json: not a readable manifest", setup=_write("dump/scrfd_dump.json", "[1"),
         keep=("dump",)),
    Case("dump-same-run-resumes", (*DUMP, "--out", f"{WS}/dump"), 0,
         r"every output of this run was in .* already", keep=("dump/output_000000.npz",)),
    Case("dump-input-size-bad", (*DUMP, "--out", f"{WS}/d2", "--input-size", "0,0"), 2,
         r"argument --input-size: .*multiple of 32"),
    # ------------------------------------------------------------------ npz-decode
    Case("decode-outputs-missing", ("npz-decode", "--datalist", f"{WS}/datalist.txt",
                                    "--outputs", f"{WS}/none", "--out", f"{WS}/p"), 2,
         r"--outputs .*none: device output folder not found"),
    Case("decode-incomplete-dump", (*DECODE, "--out", f"{WS}/p"), 1,
         r"--outputs .*dump: the run that wrote it did not finish .* --allow-incomplete",
         setup=_manifest("dump/scrfd_dump.json", complete=False), absent=("p",)),
    Case("decode-allow-incomplete", (*DECODE, "--out", f"{WS}/p", "--allow-incomplete"), 0,
         r"npz-decode: 3 images", setup=_manifest("dump/scrfd_dump.json", complete=False),
         stderr=r"incomplete run accepted"),
    Case("decode-other-geometry", (*DECODE, "--out", f"{WS}/p", "--profile", "widerface-eval"),
         2, r"--profile widerface-eval: the dump was letterboxed with letterbox centered, pad "
            r"114, input 640x640 \(profile device-flow\)", absent=("p",)),
    Case("decode-force-profile", (*DECODE, "--out", f"{WS}/p", "--profile", "widerface-eval",
                                  "--force-profile"), 0, r"npz-decode: 3 images",
         stderr=r"--force-profile: decoding with letterbox wider"),
    Case("decode-thresholds-may-differ", (*DECODE, "--out", f"{WS}/p", "--score-thr", "0.3"), 0,
         r"score >= 0\.3", check=_thresholds_recorded),
    Case("decode-repeated-line", (*DECODE[:-1], "--out", f"{WS}/p"), 1, r"line 3 repeats line 2",
         setup=_both(_datalist(lambda x: [x[0], x[1], x[1]]),
                     _copy("datalist.txt", "dump/datalist.txt")), absent=("p",)),
    Case("decode-batched-files", (*DECODE, "--out", f"{WS}/p"), 0, r"npz-decode: 3 images",
         setup=_rebatch),
    Case("decode-batch-cut", (*DECODE, "--out", f"{WS}/p"), 1,
         r"the datalist has 4 line\(s\) but the 2 output file\(s\) do not pair with them: they "
         r"hold 3 image\(s\) \(1 file\(s\) of batch 2, 1 file\(s\) of batch 1\)",
         setup=_both(_rebatch, _datalist(lambda x: x + [x[0].replace("1_a_1", "1_a_3")])),
         absent=("p",)),
    Case("decode-wrong-head-shape", (*DECODE, "--out", f"{WS}/p"), 1,
         r"output_000001\.npz: heads missing or duplicated",
         setup=_edit_output(1, lambda a: a[:4] + [a[4][:, :, :20, :20]] + a[5:]), absent=("p",)),
    Case("decode-nan", (*DECODE, "--out", f"{WS}/p"), 1,
         r"output_000002\.npz: NaN/Inf values: output_0 1 of 12800",
         setup=_edit_output(2, lambda a: [np.where(np.arange(a[0].size).reshape(a[0].shape) == 7,
                                                   np.nan, a[0]).astype(a[0].dtype)] + a[1:]),
         absent=("p",)),
    Case("decode-int8-outputs", (*DECODE, "--out", f"{WS}/p"), 1,
         r"output_000000\.npz: output_0 has dtype int8",
         setup=_edit_output(0, lambda a: [a[0].astype(np.int8)] + a[1:]), absent=("p",)),
    Case("decode-skip-bad", (*DECODE, "--out", f"{WS}/p", "--skip-bad"), 1,
         r"1 bad entry skipped", setup=_edit_output(1, lambda a: a[:4] + [a[4][:, :, :20, :20]]
                                                   + a[5:]),
         check=lambda ws: len(list((ws / "p").glob("*/*.txt"))) == 2 or pytest.fail("2 files")),
    Case("decode-original-unreadable", (*DECODE, "--out", f"{WS}/p"), 1,
         r"original image of line 3: .*2_b_1\.jpg: not a readable image",
         setup=_write("images/2--B/2_b_1.jpg", b"garbage"), absent=("p",)),
    Case("decode-out-is-outputs", (*DECODE, "--out", f"{WS}/dump"), 2,
         r"--out .*dump: is one of the command's inputs", keep=("dump",)),
    Case("decode-truncated-file", (*DECODE, "--out", f"{WS}/p"), 1,
         r"output_000001\.npz: not a readable npz file",
         setup=lambda ws: (ws / "dump/output_000001.npz").write_bytes(
             (ws / "dump/output_000001.npz").read_bytes()[:300]), absent=("p",)),
    Case("decode-corrupt-manifest", (*DECODE, "--out", f"{WS}/p"), 1,
         r"scrfd_dump\.json: not a scrfd-ref manifest", setup=_write("dump/scrfd_dump.json", "{}"),
         absent=("p",)),
    Case("decode-no-manifest-notice", (*DECODE, "--out", f"{WS}/p"), 0, r"npz-decode: 3 images",
         setup=lambda ws: (ws / "dump" / "scrfd_dump.json").unlink(),
         stderr=r"no scrfd_dump\.json: unknown provenance"),
    # ------------------------------------------------------------------ export
    Case("export-onto-input", ("export-device-layout", M, M), 2,
         r"OUT\.onnx .*model\.onnx: is one of the command's inputs", keep=("model.onnx",)),
    Case("export-input-missing", ("export-device-layout", f"{WS}/none.onnx", f"{WS}/o.onnx"), 2,
         r"IN\.onnx .*none\.onnx: ONNX model not found", absent=("o.onnx",)),
    Case("export-output-is-folder", ("export-device-layout", M, f"{WS}/images"), 2,
         r"OUT\.onnx .*images: is a folder; give a file name"),
    Case("export-input-not-onnx", ("export-device-layout", GT, f"{WS}/o.onnx"), 1,
         r"not a readable ONNX model", absent=("o.onnx",)),
    # ------------------------------------------------------------------ perf
    Case("perf-one-channel", ("perf", "-m", M, "-s", "1,640,640"), 2,
         r"argument -s/--shape: '1,640,640': SCRFD takes 3 channels"),
    Case("perf-infinite-duration", ("perf", "-m", M, "-t", "inf"), 2,
         r"argument -t/--duration: expected a number of seconds"),
    Case("perf-huge-batch", ("perf", "-m", M, "-b", "100000"), 2,
         r"argument -b/--batch: expected an integer from 1 to 1024"),
    Case("perf-blob-too-large", ("perf", "-m", M, "-b", "1024", "-s", "3,2048,2048"), 2,
         r"one call's input would take 48\.0 GiB"),
    Case("perf-zero-instances", ("perf", "-m", M, "-i", "0"), 2,
         r"argument -i/--instances: expected an integer from 1 to 256"),
    Case("perf-json-is-folder", ("perf", "-m", M, "--json", f"{WS}/images"), 2,
         r"--json .*images: is a folder"),
    # issue 36: the verdicts of a timed run
    Case("perf-rounds-without-compare", ("perf", "-m", M, "--rounds", "8"), 2,
         r"--rounds applies to --compare only", one_line=True),
    Case("perf-compliance-pipeline", ("perf", "-m", M, "--compliance", "--pipeline"), 2,
         r"--compliance judges the backend\.run loop; drop --pipeline", one_line=True),
    Case("perf-compare-bare", ("perf", "-m", M, "--compare", M, "--bare"), 2,
         r"--compare judges the backend\.run loop; drop --bare", one_line=True),
    Case("perf-compliance-and-compare", ("perf", "-m", M, "--compare", M, "--compliance"), 2,
         r"run them as two commands", one_line=True),
    Case("perf-compare-few-rounds", ("perf", "-m", M, "--compare", M, "--rounds", "3"), 2,
         r"--rounds 3: at least 6", one_line=True),
    Case("perf-threshold-out-of-range", ("perf", "-m", M, "--compare", M, "--threshold",
                                         "150"), 2,
         r"argument --threshold: expected a percentage from 0 to 100", one_line=True),
    Case("perf-compare-missing-model", ("perf", "-m", M, "--compare", f"{WS}/nope.onnx",
                                        "-n", "2"), 2, r"--compare .*nope\.onnx: model not found",
         one_line=True),
    Case("perf-compare-is-folder", ("perf", "-m", M, "--compare", f"{WS}/images", "-n", "2"),
         2, r"--compare .*images: is a folder", one_line=True),
    Case("perf-rounds-not-a-number", ("perf", "-m", M, "--compare", M, "--rounds", "abc"), 2,
         r"argument --rounds: expected an integer from 1 to 1000, got 'abc'", one_line=True),
    Case("perf-unknown-statistic", ("perf", "-m", M, "--compare", M, "--statistic", "p99"), 2,
         r"argument --statistic: invalid choice: 'p99'", one_line=True),
    Case("perf-compliance-replay", ("perf", "-m", f"{WS}/images", "--backend", "replay",
                                    "--compliance"), 2,
         r"--compliance: a replay backend computes nothing while timed", one_line=True),
    # ------------------------------------------------------------------ openvino (extra)
    Case("detect-openvino-not-installed", ("detect", "-m", M, "--backend", "openvino",
                                           f"{WS}/images/1--A/1_a_1.jpg"), 2,
         r"openvino: the OpenVINO runtime is not installed .*pip install -e '\.\[openvino\]'",
         setup=_fake_openvino(None), env=FAKE_OV, one_line=True),
    Case("dump-openvino-not-installed", (*DUMP, "--backend", "openvino", "--out", f"{WS}/o"),
         2, r"pip install -e '\.\[openvino\]'", setup=_fake_openvino(None), env=FAKE_OV,
         absent=("o",)),
    Case("wider-run-openvino-bf16-no-native", ("wider-run", "-m", M, "--images",
                                               f"{WS}/images", "--out", f"{WS}/p",
                                               "--backend", "openvino", "--dtype", "bf16"), 2,
         r"openvino bf16: this CPU \(Fake CPU\) has no native bf16 \(AVX512_BF16 or "
         r"AMX-BF16; .*--backend ort --dtype bf16", setup=_fake_openvino(("FP32", "INT8")),
         env=FAKE_OV, absent=("p",), one_line=True),
    Case("perf-openvino-bf16-no-native", ("perf", "-m", M, "--backend", "openvino", "--dtype",
                                          "bf16", "--iterations", "2"), 2,
         r"openvino bf16: .*has no native bf16", setup=_fake_openvino(("FP32", "INT8")),
         env=FAKE_OV),
    Case("detect-backend-misspelt", ("detect", "-m", M, "--backend", "openvin",
                                     f"{WS}/images/1--A/1_a_1.jpg"), 2,
         r"argument --backend/-B: expected a backend .*got 'openvin'; did you mean openvino\?"),
    Case("detect-providers-on-openvino", ("detect", "-m", M, "--backend", "openvino",
                                          "--providers", "cuda", f"{WS}/images/1--A/1_a_1.jpg"),
         2, r"--providers: ONNX Runtime providers do not apply to --backend openvino"),
    Case("quantize-nncf-no-calibration-images", ("quantize", "-m", M, "--method", "nncf",
                                                 "--calib-images", f"{WS}/empty"), 1,
         r"--calib-images .*empty: no .* images in it", setup=_mkdir("empty")),
    Case("quantize-nncf-missing-calibration-folder", ("quantize", "-m", M, "--method", "nncf",
                                                      "--calib-images", f"{WS}/none"), 2,
         r"--calib-images .*none: calibration image folder not found"),
    Case("quantize-nncf-default-images-missing", ("quantize", "-m", M, "--method", "nncf"), 2,
         r"calibration image .* not found .*set SCRFD_DATA or pass"),
    Case("quantize-nncf-out-not-xml", ("quantize", "-m", M, "--method", "nncf", "--out",
                                       f"{WS}/q.onnx"), 2,
         r"--out .*q\.onnx: NNCF writes an OpenVINO IR; name it \*\.xml", absent=("q.onnx",)),
    Case("quantize-nncf-with-percentile", ("quantize", "-m", M, "--method", "nncf",
                                           "--percentile", "99.9"), 2,
         r"--percentile: does not apply to --method nncf"),
    Case("quantize-nncf-fp16", ("quantize", "-m", M, "--method", "nncf", "--dtype", "fp16"), 2,
         r"--dtype fp16: --method nncf quantizes to int8"),
    Case("int8-ap-nncf-not-installed", ("int8-ap", "-m", M, "--recipes", "nncf"), 2,
         r"--recipes nncf: NNCF runs on OpenVINO, an optional extra: pip install",
         setup=_fake_openvino(None), env=FAKE_OV),
    # ------------------------------------------------------------------ device config files
    Case("check-config-nothing-to-check", ("check-config", "-m", M), 2,
         r"give --vdsp-params FILE and/or --build-yaml FILE"),
    Case("check-config-vdsp-missing", ("check-config", "--vdsp-params", f"{WS}/none.json"), 2,
         r"--vdsp-params .*none\.json: vdsp params file not found"),
    Case("check-config-vdsp-not-json", ("check-config", "--vdsp-params", f"{WS}/v.json"), 2,
         r"--vdsp-params .*v\.json: not a readable JSON file", setup=_write("v.json", "{Op")),
    Case("check-config-vdsp-is-folder", ("check-config", "--vdsp-params", f"{WS}/images"), 2,
         r"--vdsp-params .*images: is a folder"),
    # fourth pass (issue 33, class 2): one strict reader for every structured file
    Case("check-config-vdsp-duplicate-key", ("check-config", "--vdsp-params", f"{WS}/v.json"),
         2, r"--vdsp-params .*v\.json: not a readable JSON file \(duplicate key 'Mean'",
         setup=_write("v.json", open(V640).read().replace(
             '"Mean"', '"Mean": [0, 0, 0], "Mean"', 1))),
    Case("check-config-yaml-duplicate-key", ("check-config", "--build-yaml", f"{WS}/y.yaml"),
         2, r"--build-yaml .*y\.yaml: not a readable YAML file \(duplicate key 'dtype'",
         setup=_write("y.yaml", "backend:\n  dtype: fp16\n  dtype: int8\n")),
    Case("gates-duplicate-key", ("gates", "check", f"{WS}/g.toml"), 1,
         r"g\.toml: not valid TOML: Cannot overwrite a value",
         setup=_write("g.toml", "[int8.ap]\nratio_min = { value = 0.99, why = 'x' }\n"
                      "ratio_min = { value = 0.5, why = 'y' }\n")),
    Case("check-config-yaml-python-tag", ("check-config", "--build-yaml", f"{WS}/y.yaml"), 2,
         r"--build-yaml .*y\.yaml: not a readable YAML file",
         setup=_write("y.yaml", "name: !!python/object/apply:os.system ['touch pwned']\n"),
         absent=("pwned",)),
    Case("check-config-yaml-no-dtype", ("check-config", "--build-yaml", f"{WS}/y.yaml"), 2,
         r"the backend dtype must be fp16 or int8, got None",
         setup=_write("y.yaml", "name: x\nbackend: {type: tvm_vacc}\n")),
    Case("check-config-256-vs-fixed-640", ("check-config", "-m", f"{WS}/fixed.onnx",
                                           "--vdsp-params", V256), 1,
         r"1 configuration error\(s\) \(listed above\)"),
    Case("check-config-640-passes", ("check-config", "-m", f"{WS}/fixed.onnx", "--vdsp-params",
                                     V640, "--build-yaml", ZOO_YAML), 0,
         r"0 error\(s\), 0 warning\(s\)"),
    Case("check-config-typo-key", ("check-config", "--vdsp-params", f"{WS}/v.json"), 1,
         r"configuration error",
         setup=_write("v.json", open(V640).read().replace("NormaType", "NormType"))),
    Case("detect-vdsp-256-fixed-640", ("detect", "-m", f"{WS}/fixed.onnx", "--vdsp-params", V256,
                                       IMG), 2,
         r"the device output is 256x256 but fixed\.onnx is fixed at 640x640"),
    Case("detect-vdsp-refused-op", ("detect", "-m", M, "--vdsp-params", f"{WS}/v.json", IMG), 2,
         r"OpType FUSION_OP_RGB_CVTCOLOR_NORM_TENSOR is not supported: it does not resize",
         setup=_write("v.json", open(V640).read().replace("_LETTERBOX_CVTCOLOR", "_CVTCOLOR"))),
    Case("detect-vdsp-bad-value", ("detect", "-m", M, "--vdsp-params", f"{WS}/v.json", IMG), 2,
         r"OpConfig\.ResizeType: unknown value 'BILINEAR_CVV'; did you mean BILINEAR_CV\?",
         setup=_write("v.json", open(V640).read().replace("BILINEAR_CV", "BILINEAR_CVV"))),
    Case("detect-vdsp-and-input-size", ("detect", "-m", M, "--vdsp-params", V256,
                                        "--input-size", "640,640", IMG), 2,
         r"--input-size 640,640: the vdsp params file .* sets 256x256; drop one of them"),
    Case("wider-run-vdsp-missing", (*WRUN, "--out", f"{WS}/o", "--vdsp-params",
                                    f"{WS}/none.json"), 2, r"file not found", absent=("o",)),
    Case("dump-other-vdsp-into-a-dump", (*DUMP, "--out", f"{WS}/dump", "--vdsp-params", V256), 2,
         r"holds a different dump run", keep=("dump",)),
    Case("npz-decode-vdsp-other-norm", (*DECODE, "--out", f"{WS}/o", "--vdsp-params",
                                        f"{WS}/v.json"), 2,
         r"norm.*--force-profile", absent=("o",),
         setup=_write("v.json", open(V640).read().replace('"MINUSMEAN_DIVSTD"', '"DIV255"'))),
    Case("perf-vdsp-vs-shape", ("perf", "-m", M, "--vdsp-params", V256, "-s", "3,640,640"), 2,
         r"-s 3,640,640: the vdsp params file .* sets 256x256"),
    Case("profiles-json-onto-vdsp", ("profiles", "--vdsp-params", f"{WS}/v.json", "--json",
                                     f"{WS}/v.json"), 2, r"--json .*v\.json",
         setup=_write("v.json", open(V640).read()), keep=("v.json",)),
    Case("quantize-percentile-range", ("quantize", "-m", M, "--percentile", "101"), 2,
         r"argument --percentile: expected a percentile in \(0, 100\]"),
    Case("quantize-out-is-model", ("quantize", "-m", M, "--dtype", "fp16", "--out", M), 2,
         r"--out .*model\.onnx", keep=("model.onnx",)),
    Case("quantize-empty-calib-folder", ("quantize", "-m", M, "--calib-images", f"{WS}/empty",
                                         "--out", f"{WS}/q.onnx"), 1,
         r"--calib-images .*empty: no \.jpg/\.jpeg/\.png/\.bmp images in it",
         setup=_mkdir("empty"), absent=("q.onnx",)),
    Case("quantize-yaml-calib-resize-wrong", ("quantize", "-m", f"{WS}/fixed.onnx",
                                              "--build-yaml", f"{WS}/y.yaml", "--out",
                                              f"{WS}/q.onnx"), 1,
         r"--build-yaml .*y\.yaml .*: 1 problem\(s\):\n  yaml calib Resize: long side to 320",
         absent=("q.onnx",),
         setup=_write("y.yaml", open(ZOO_YAML).read().replace("[640, -1]", "[320, -1]"))),
    Case("quantize-report-is-a-file", ("quantize", "-m", M, "--report", f"{WS}/r.txt"), 2,
         r"--report .*r\.txt: is a file; give a folder", setup=_write("r.txt", "x"),
         keep=("r.txt",)),
    Case("int8-ap-unknown-recipe", ("int8-ap", "-m", M, "--recipes", "minmax,kl"), 2,
         r"--recipes: kl is not a recipe; choose from minmax, entropy, percentile, default"),
    Case("int8-ap-missing-model", ("int8-ap", "-m", f"{WS}/none.onnx"), 2,
         r"--model .*none\.onnx: model not found"),
    Case("int8-ap-out-is-a-file", ("int8-ap", "-m", M, "--out", f"{WS}/t.md"), 2,
         r"--out .*t\.md: is a file; give a folder", setup=_write("t.md", "x"),
         keep=("t.md",)),
    Case("diagnose-missing-folder", ("diagnose", "--device-outputs", f"{WS}/none"), 2,
         r"--device-outputs .*none: device output folder not found"),
    Case("diagnose-count-zero", ("diagnose", "--device-outputs", f"{WS}/empty", "--count", "0"),
         2, r"argument --count: expected an integer from 1 to 10000, got '0'",
         setup=_mkdir("empty")),
    Case("diagnose-no-variant", ("diagnose", "--device-outputs", f"{WS}/empty"), 2,
         r"the dump does not record its variant; give --model", setup=_mkdir("empty")),
    Case("diagnose-predictions-missing", ("diagnose", "--predictions", f"{WS}/none"), 2,
         r"--predictions .*none: prediction folder not found"),
    Case("localize-cut-into-the-inputs", ("localize", "cut", "-m", M, "--datalist",
                                           f"{WS}/datalist.txt", "--out", f"{WS}/npz/cuts"), 2,
         r"--out .*npz/cuts: lies inside the input folder .*npz; write outputs somewhere else",
         absent=("npz/cuts",)),
    Case("localize-judge-not-a-cut-folder", ("localize", "judge", "--cuts", f"{WS}/dump",
                                             "--outputs", f"{WS}/dump"), 1,
         r"--cuts .*dump: no localize_cuts\.json; give the folder `scrfd-ref localize cut` "
         r"wrote"),
    Case("localize-judge-missing-cuts", ("localize", "judge", "--cuts", f"{WS}/none",
                                         "--outputs", f"{WS}/dump"), 2,
         r"--cuts .*none: cut folder not found"),
    Case("localize-run-unknown-device", ("localize", "run", "--cuts", f"{WS}/dump", "--device",
                                         "tpu/int4", "--out", f"{WS}/o"), 2,
         r"argument --device: invalid choice: 'tpu/int4'", absent=("o",)),
    Case("diagnose-two-sources", ("diagnose", "--predictions", f"{WS}/pred",
                                  "--device-outputs", f"{WS}/pred"), 2,
         r"argument --device-outputs: not allowed with argument --predictions"),
    Case("diagnose-predictions-no-image", ("diagnose", "--predictions", f"{WS}/pz", "-m", M,
                                           "--images", f"{WS}/images"), 1,
         r"--predictions .*pz: none of its 1 prediction files names an image of --images",
         setup=_write("pz/9--Z/9_z_1.txt", "9--Z/9_z_1\n1\n1 2 3 4 0.5\n"),
         keep=("pz/9--Z/9_z_1.txt",)),
    Case("quantize-fp16-ok", ("quantize", "-m", M, "--dtype", "fp16", "--out", f"{WS}/q.onnx"),
         0, r"weighted nodes in float16", keep=("model.onnx",)),
    # ------------------------------------------------------------------ gates
    Case("gates-misspelt", ("gates", "check", f"{WS}/g.toml"), 1,
         r"\[fp32\.heads\] cosin_min: unknown gate; did you mean cosine_min\?",
         setup=_write("g.toml", "[fp32.heads]\ncosin_min = { value = 0.9, why = 'x' }\n")),
    Case("gates-wrong-type", ("gates", "check", f"{WS}/g.toml"), 1,
         r"\[int8\.ap\] ratio_min: value must be a number, got str",
         setup=_write("g.toml", "[int8.ap]\nratio_min = { value = '99%', why = 'x' }\n")),
    Case("gates-missing-file", ("gates", "check", f"{WS}/none.toml"), 2,
         r"FILE .*none\.toml: gates file not found"),
    Case("gates-partial-ok", ("gates", "check", f"{WS}/g.toml"), 0, r"leaves out \d+ gate",
         setup=_write("g.toml", "[int8.ap]\nratio_min = { value = 0.99, why = 'x' }\n")),
    # a valid file that loosens limits is valid, and says which limits it loosens
    Case("gates-looser-listed", ("gates", "check", f"{WS}/g.toml"), 0,
         r"custom gates: 2 limits looser than shipped, 1 tighter(.|\n)*"
         r"fp16\.heads\.snr_db_min: 35 -> 10 \(looser\)(.|\n)*"
         r"fp16\.detections\.recall_min: [0-9.]+ -> 1 \(tighter\)(.|\n)*"
         r"fp16\.detections\.mean_iou_min: 0\.99 -> 0\.7 \(looser\)",
         setup=_write("g.toml", "[fp16.heads]\nsnr_db_min = { value = 10, why = 'x' }\n"
                      "[fp16.detections]\nmean_iou_min = { value = 0.7, why = 'x' }\n"
                      "recall_min = { value = 1.0, why = 'x' }\n")),
    Case("gates-shipped-file", ("gates", "check", str(SHIPPED_GATES)), 0,
         r"gates\.toml: valid .*; shipped gates"),
    # ------------------------------------------------------------------ third pass (issue 28)
    # 1. --overwrite removes only the files a run's manifest lists, never an input
    Case("decode-overwrite-keeps-others-files", (*DECODE, "--out", WS, "--overwrite"), 2,
         r"--out .*: holds 2 file\(s\) that no run manifest lists \(gt/wider_face_val_bbx_gt"
         r"\.txt, notes/meeting\.txt\)", setup=_write("notes/meeting.txt", "agenda\n"),
         keep=("notes", "gt", "dump", "datalist.txt")),
    Case("wider-run-overwrite-keeps-others-files",
         ("wider-run", "-q", "-m", f"{WS}/model_b.onnx", "--images", f"{WS}/images",
          "--score-thr", "0.3", "--out", f"{WS}/pred", "--overwrite"), 2,
         r"--out .*pred: holds 2 file\(s\) that no run manifest lists \(docs/README\.txt, "
         r"src/requirements\.txt\)",
         setup=_both(_write("pred/docs/README.txt", "read me\n"),
                     _write("pred/src/requirements.txt", "numpy\n")), keep=("pred",)),
    # issue 33, class 3: a run never writes inside an input folder (this row wrote its
    # outputs among the input npz files before)
    Case("dump-out-is-the-input-npz-folder",
         (*DUMP[:4], "--datalist", f"{WS}/npz/datalist.txt", "--out", f"{WS}/npz",
          "--overwrite"), 2, r"--out .*npz: is one of the command's inputs \(.*npz\); write "
                             r"the output somewhere else", setup=_relative_datalist_in_npz,
         keep=("npz",)),
    Case("dump-out-inside-the-input-npz-folder", (*DUMP, "--out", f"{WS}/npz/out"), 2,
         r"--out .*npz/out: lies inside the --datalist's input folder", absent=("npz/out",)),
    Case("eval-plot-inside-the-predictions", (*EVAL, "--plot", f"{WS}/pred/1--A/pr.png"), 2,
         r"--plot .*pr\.png: lies inside the input folder .*pred; write the output somewhere",
         absent=("pred/1--A/pr.png",)),
    # 2. outputs paired with the images they were computed from, or refused
    Case("decode-datalist-shuffled", (*DECODE, "--out", f"{WS}/p"), 1,
         r"datalist .*datalist\.txt: line 1 \(1_a_2\.npz\) differs from the image list the "
         r"dump recorded in .*scrfd_dump\.json \(line 1: 1_a_1\.npz\)",
         setup=_datalist(lambda x: [x[1], x[2], x[0]]), absent=("p",)),
    Case("decode-datalist-two-lines-swapped", (*DECODE, "--out", f"{WS}/p"), 1,
         r"line 2 \(2_b_1\.npz\) differs from the image list the dump recorded .*\(line 2: "
         r"1_a_2\.npz\)", setup=_datalist(lambda x: [x[0], x[2], x[1]]), absent=("p",)),
    Case("dump-inputs-regenerated", (*DUMP, "--out", f"{WS}/dump"), 2,
         r"--out .*dump: holds a different dump run: inputs_sha256", setup=_regenerate_input,
         keep=("dump",)),
    # issue 33, class 1: npz-decode compares the inputs with the dump's record
    Case("decode-inputs-regenerated", (*DECODE, "--out", f"{WS}/p"), 1,
         r"--datalist .*datalist\.txt: 1 input npz file\(s\) differ from the ones the dump "
         r".*dump was made from \(1_a_2\.npz\)", setup=_regenerate_input, absent=("p",)),
    Case("decode-dump-cut", (*DECODE, "--out", f"{WS}/p"), 1,
         r"scrfd_dump\.json records a complete dump of 3 image\(s\) but the folder holds 2 "
         r"output file\(s\)", setup=_cut_dump(2), absent=("p",)),
    Case("diagnose-dtype-against-manifest", ("diagnose", "--device-outputs", f"{WS}/dump",
                                             "-m", M, "--images", f"{WS}/images", "--dtype",
                                             "int8"), 2,
         r"--dtype int8: the dump's manifest .*scrfd_dump\.json records dtype fp32; drop "
         r"--dtype, or pass --force-dtype"),
    # 3. one validator per config file kind: types and ranges
    Case("check-config-yaml-quoted-false", ("check-config", "--build-yaml", f"{WS}/y.yaml"), 1,
         r"1 configuration error\(s\) \(listed above\)",
         stdout=r"error: yaml quantize_per_channel: must be true or false, got 'false'",
         setup=_write("y.yaml", open(ZOO_YAML).read().replace(
             "quantize_per_channel: true", 'quantize_per_channel: "false"'))),
    Case("check-config-yaml-yes-please", ("check-config", "--build-yaml", f"{WS}/y.yaml"), 1,
         r"1 configuration error\(s\) \(listed above\)",
         stdout=r"error: yaml quantize_per_channel: must be true or false, got 'yes please'",
         setup=_write("y.yaml", open(ZOO_YAML).read().replace(
             "quantize_per_channel: true", "quantize_per_channel: yes please"))),
    Case("check-config-yaml-percentile-nan", ("check-config", "--build-yaml", f"{WS}/y.yaml"),
         1, r"1 configuration error\(s\) \(listed above\)",
         stdout=r"error: yaml percentile: must be a number in \(0, 100\], got nan",
         setup=_write("y.yaml", open(ZOO_YAML).read().replace(
             "calibrate_mode: max", "calibrate_mode: percentile\n    percentile: .nan"))),
    Case("check-config-yaml-percentile-250", ("check-config", "--build-yaml", f"{WS}/y.yaml"),
         1, r"1 configuration error\(s\) \(listed above\)",
         stdout=r"error: yaml percentile: must be a number in \(0, 100\], got 250",
         setup=_write("y.yaml", open(ZOO_YAML).read().replace(
             "calibrate_mode: max", "calibrate_mode: percentile\n    percentile: 250"))),
    Case("quantize-yaml-quoted-false", ("quantize", "-m", M, "--build-yaml", f"{WS}/y.yaml",
                                        "--out", f"{WS}/q.onnx"), 1,
         r"--build-yaml .*y\.yaml .*\n  yaml quantize_per_channel: must be true or false",
         setup=_write("y.yaml", open(ZOO_YAML).read().replace(
             "quantize_per_channel: true", 'quantize_per_channel: "false"')),
         absent=("q.onnx",)),
    Case("check-config-vdsp-padding-300", ("check-config", "--vdsp-params", f"{WS}/v.json"), 1,
         r"1 configuration error\(s\) \(listed above\)",
         stdout=r"error: vdsp OpConfig\.Padding: must be 3 numbers from 0 to 255, got "
                r"\[300, 300, 300\]",
         setup=_vdsp(Padding=[300, 300, 300])),
    Case("detect-vdsp-padding-negative", ("detect", "-m", M, "--vdsp-params", f"{WS}/v.json",
                                          IMG), 2,
         r"--vdsp-params .*v\.json: OpConfig\.Padding: must be 3 numbers from 0 to 255",
         setup=_vdsp(Padding=[-5, -5, -5])),
    Case("profiles-vdsp-padding-300", ("profiles", "--vdsp-params", f"{WS}/v.json"), 2,
         r"--vdsp-params .*v\.json: OpConfig\.Padding: must be 3 numbers from 0 to 255",
         setup=_vdsp(Padding=[300, 300, 300])),
    # 4. resource limits
    Case("decode-npz-bomb", (*DECODE, "--out", f"{WS}/p"), 1,
         r"output_000000\.npz: output_0 declares \(1, 2, 8192, 4096\) float32 \(256\.0 MiB\) "
         r"in its header", setup=_npz_bomb, absent=("p",)),
    Case("check-config-yaml-billion-laughs", ("check-config", "--build-yaml", f"{WS}/y.yaml"),
         2, r"--build-yaml .*y\.yaml: not a readable YAML file \(its aliases expand to more "
            r"than 100,000 nodes", setup=_write("y.yaml", _laughs(6))),
    Case("wider-run-workers-above-machine", (*WRUN, "--out", f"{WS}/p", "--workers", "100000"),
         2, r"argument --workers: expected an integer from 0 to \d+ \(4 per usable core\), got "
            r"'100000'", absent=("p",)),
    Case("perf-sessions-above-machine", ("perf", "-m", M, "-p", "64", "-i", "64"), 2,
         r"-p 64 -i 64: 4096 sessions, more than the \d+ this machine allows \(4 per usable "
         r"core"),
    # 6. hostile nesting is bad input, not an internal error
    Case("decode-manifest-nested-deeply", (*DECODE, "--out", f"{WS}/p"), 1,
         r"dump/scrfd_dump\.json: not a readable manifest \(nested too deeply",
         setup=_write("dump/scrfd_dump.json",
                      '{"identity": ' + "[" * 100000 + "]" * 100000 + ', "complete": true}'),
         absent=("p",)),
    Case("wider-run-manifest-nested-deeply", (*WRUN, "--out", f"{WS}/pred"), 1,
         r"pred/scrfd_run\.json: not a readable manifest \(nested too deeply",
         setup=_write("pred/scrfd_run.json", '{"identity": {"a": ' + "[" * 100000 + "]" * 100000
                      + '}, "complete": true}'), keep=("pred",)),
    Case("check-config-vdsp-nested-deeply", ("check-config", "--vdsp-params", f"{WS}/v.json"),
         2, r"--vdsp-params .*v\.json: not a readable JSON file \(nested too deeply",
         setup=_write("v.json", '{"OpConfig": ' + "[" * 100000 + "]" * 100000 + "}")),
    Case("check-config-yaml-nested-deeply", ("check-config", "--build-yaml", f"{WS}/y.yaml"),
         2, r"--build-yaml .*y\.yaml: not a readable YAML file \(nested more than \d+ levels",
         setup=_write("y.yaml", "backend: {dtype: fp16}\na: " + "[" * 5000 + "]" * 5000 + "\n")),
    Case("check-config-yaml-self-alias", ("check-config", "--build-yaml", f"{WS}/y.yaml"), 2,
         r"--build-yaml .*y\.yaml: not a readable YAML file \(alias \*a is used inside the "
         r"node it names", setup=_write("y.yaml", "backend: {dtype: fp16}\na: &a [1, *a]\n")),
    Case("gates-nested-deeply", ("gates", "check", f"{WS}/g.toml"), 1,
         r"g\.toml: not valid TOML: nested too deeply",
         setup=_write("g.toml", "a = " + "[" * 5000 + "]" * 5000 + "\n")),
    Case("decode-manifest-profile-is-a-list", (*DECODE, "--out", f"{WS}/p"), 1,
         r"dump/scrfd_dump\.json: identity\.profile must be a JSON object, got a list",
         setup=_identity("dump/scrfd_dump.json", lambda i: i.update(profile=[1, 2])),
         absent=("p",)),
    # 7. messages and flags that say what happened
    Case("decode-big-endian-outputs", (*DECODE, "--out", f"{WS}/p"), 0, r"npz-decode: 3 images",
         setup=_edit_output(0, lambda a: [x.astype(x.dtype.newbyteorder(">")) for x in a])),
    Case("decode-exif-rotated-original", (*DECODE, "--out", f"{WS}/p"), 0,
         r"npz-decode: 3 images", setup=_exif_rotated_original),
    Case("decode-allow-incomplete-pairs-what-exists",
         (*DECODE, "--out", f"{WS}/p", "--allow-incomplete"), 0, r"npz-decode: 2 images",
         setup=_both(_manifest("dump/scrfd_dump.json", complete=False),
                     lambda ws: (ws / "dump" / "output_000001.npz").unlink()),
         stderr=r"1 of the 3 datalist line\(s\) have no output yet \(line 2\)",
         check=lambda ws: sorted(p.name for p in (ws / "p").glob("*/*.txt")) == [
             "1_a_1.txt", "2_b_1.txt"] or pytest.fail("expected 1_a_1 and 2_b_1 only")),
    Case("gates-utf8-bom", ("gates", "check", f"{WS}/g.toml"), 0, r"g\.toml: valid",
         setup=_write("g.toml", "\ufeff[int8.ap]\nratio_min = { value = 0.99, why = 'x' }\n")),
    # NaN is no JSON a producer writes: the one strict reader refuses it (formats.strict)
    Case("detect-vdsp-mean-nan", ("detect", "-m", M, "--vdsp-params", f"{WS}/v.json", IMG), 2,
         r"--vdsp-params .*v\.json: not a readable JSON file \(NaN is not JSON",
         setup=_vdsp(Mean=[float("nan"), 127.5, 127.5])),
    Case("detect-vdsp-std-zero", ("detect", "-m", M, "--vdsp-params", f"{WS}/v.json", IMG), 2,
         r"--vdsp-params .*v\.json: OpConfig\.Std: must be 3 finite numbers above 0, got \[0, "
         r"128\.0, 128\.0\]", setup=_vdsp(Std=[0, 128.0, 128.0])),
    Case("decode-manifest-bad-profile-value", (*DECODE, "--out", f"{WS}/p"), 1,
         r"dump/scrfd_dump\.json: identity\.profile: recorded profile 'device-flow': pad_value "
         r"must be a number, got 'x'",
         setup=_identity("dump/scrfd_dump.json", lambda i: i["profile"].update(pad_value="x")),
         absent=("p",)),
    Case("detect-truncated-png", ("detect", "-m", M, f"{WS}/t.png"), 1,
         r"t\.png: file does not decode as an image \(PNG: ", setup=_truncated_png,
         one_line=True),
    Case("detect-png-crc-error", ("detect", "-m", M, f"{WS}/t.png"), 1,
         r"t\.png: file does not decode as an image \(PNG: ", setup=_png_crc_error,
         one_line=True),
    # issue 33, class 1 / 3: a file is what its bytes are (recorded sha256 in the manifest)
    Case("decode-output-changed-after-the-run", (*DECODE, "--out", f"{WS}/p"), 1,
         r"dump: 1 file\(s\) differ from the sha256 scrfd_dump\.json recorded when the run "
         r"wrote them \(output_000001\.npz\)", setup=_replace_output(1, 0), absent=("p",)),
    Case("decode-output-the-run-did-not-write", (*DECODE, "--out", f"{WS}/p"), 1,
         r"dump: 1 file\(s\) that the finished run in scrfd_dump\.json did not write "
         r"\(output_000003\.npz\)",
         setup=_both(_copy("dump/output_000000.npz", "dump/output_000003.npz"),
                     _datalist(lambda x: x + [x[0].replace("1_a_1", "1_a_3")])),
         absent=("p",)),
    Case("eval-prediction-edited-after-the-run", EVAL, 1,
         r"pred: 1 file\(s\) differ from the sha256 scrfd_run\.json recorded when the run "
         r"wrote them \(1--A/1_a_1\.txt\)",
         setup=_write("pred/1--A/1_a_1.txt", "1--A/1_a_1\n1\n1 2 30 40 0.99\n")),
    Case("dump-resume-recomputes-a-truncated-output", (*DUMP, "--out", f"{WS}/dump"), 0,
         r"dump: 1 output files \(fp32, device layout\)",
         stderr=r"1 file\(s\) of the interrupted run do not match the sha256 scrfd_dump\.json "
                r"recorded .*computing them again \(output_000001\.npz\)",
         setup=_both(_manifest("dump/scrfd_dump.json", complete=False),
                     lambda ws: (ws / "dump/output_000001.npz").write_bytes(
                         (ws / "dump/output_000001.npz").read_bytes()[:100]))),
    # issue 33, class 4: a JPEG cut short is refused by its missing end marker, not decoded
    # with grey rows (libjpeg only warns; OpenCV 4 returns the image)
    Case("detect-truncated-jpeg", ("detect", "-m", M, f"{WS}/t.jpg"), 1,
         r"t\.jpg: file does not decode as an image \(JPEG: truncated: the file ends before "
         r"its end-of-image marker\)", one_line=True,
         setup=lambda ws: (ws / "t.jpg").write_bytes(
             (ws / "images/1--A/1_a_1.jpg").read_bytes()[:-40])),
    Case("detect-truncated-webp", ("detect", "-m", M, f"{WS}/t.webp"), 1,
         r"t\.webp: file does not decode as an image", one_line=True,
         setup=lambda ws: (ws / "t.webp").write_bytes(_encoded(".webp")[:-300])),
    Case("detect-truncated-bmp", ("detect", "-m", M, f"{WS}/t.bmp"), 1,
         r"t\.bmp: file does not decode as an image", one_line=True,
         setup=lambda ws: (ws / "t.bmp").write_bytes(_encoded(".bmp")[:5000])),
    # issue 33, class 5: paths of the wrong kind said only "File exists"
    Case("detect-scrfd-cache-is-a-file", ("detect", "-m", M, "--dtype", "fp16", IMG), 2,
         r"SCRFD_CACHE .*cf: .*cf is a file, not a folder; move it away, or choose another",
         setup=_write("cf", "x"), env={"SCRFD_CACHE": f"{WS}/cf"}, one_line=True),
    Case("wider-run-out-dangling-link", (*WRUN, "--out", f"{WS}/link"), 2,
         r"--out .*link: a symbolic link to .*missing/dir, which does not exist; create that "
         r"folder", setup=lambda ws: (ws / "link").symlink_to(ws / "missing" / "dir")),
    Case("wider-run-event-folder-is-a-file", (*WRUN, "--out", f"{WS}/p"), 2,
         r"--out .*p: 1--A must be folder\(s\) for this run's files but exist as files",
         setup=_write("p/1--A", "not a folder"), keep=("p/1--A",)),
    # issue 33, class 2: a manifest's values checked against what this version writes
    Case("decode-manifest-version-infinite", (*DECODE, "--out", f"{WS}/p"), 1,
         r"dump/scrfd_dump\.json: not a readable manifest \(the number 1e999 is out of range",
         setup=lambda ws: (ws / "dump/scrfd_dump.json").write_text(
             (ws / "dump/scrfd_dump.json").read_text().replace('"manifest": 1', '"manifest": 1e999')),
         absent=("p",)),
    Case("decode-manifest-version-newer", (*DECODE, "--out", f"{WS}/p"), 1,
         r"scrfd_dump\.json: manifest version 99, but this scrfd-ref reads 0\.\.1 .*; re-run the "
         r"command that wrote the folder", setup=_manifest("dump/scrfd_dump.json", manifest=99),
         absent=("p",)),
    Case("decode-manifest-dtype-unknown", (*DECODE, "--out", f"{WS}/p"), 1,
         r"scrfd_dump\.json: identity\.dtype must be one of fp32, fp16, bf16, int8, got 'int4'",
         setup=_identity("dump/scrfd_dump.json", lambda i: i.update(dtype="int4")),
         absent=("p",)),
    Case("decode-manifest-image-list-edited", (*DECODE, "--out", f"{WS}/p"), 1,
         r"scrfd_dump\.json: image_list does not match identity\.image_list_sha256",
         setup=lambda ws: _manifest("dump/scrfd_dump.json", image_list=list(reversed(
             json.loads((ws / "dump/scrfd_dump.json").read_text())["image_list"])))(ws),
         absent=("p",)),
    Case("check-config-vdsp-5000-digit-number", ("check-config", "--vdsp-params",
                                                 f"{WS}/v.json"), 2,
         r"--vdsp-params .*v\.json: not a readable JSON file \(an integer of 5000 digits",
         setup=_write("v.json", '{"OpType": "x", "OpConfig": {"Padding": [' + "9" * 5000
                      + ", 1, 1]}}")),
    Case("check-config-yaml-5000-digit-number", ("check-config", "--build-yaml",
                                                 f"{WS}/y.yaml"), 2,
         r"--build-yaml .*y\.yaml: not a readable YAML file \(an integer of 5000 digits",
         setup=_write("y.yaml", "backend: {dtype: fp16}\nbatch: " + "9" * 5000 + "\n")),
    Case("decode-inputs-regenerated-same-size-and-time", (*DECODE, "--out", f"{WS}/p"), 1,
         r"--datalist .*datalist\.txt: 1 input npz file\(s\) differ from the ones the dump "
         r".*dump was made from \(1_a_2\.npz\)",
         setup=_regenerate_input_keeping_size_and_time, absent=("p",)),
    Case("decode-datalist-with-a-bom", (*DECODE, "--out", f"{WS}/p"), 0, r"npz-decode: 3 images",
         setup=lambda ws: (ws / "datalist.txt").write_bytes(
             b"\xef\xbb\xbf" + (ws / "datalist.txt").read_bytes())),
    Case("eval-gt-is-a-device", ("eval", "--pred", f"{WS}/pred", "--gt", "/dev/zero"), 2,
         r"/dev/zero: not a regular file \(a FIFO or a device\); give the ground-truth file"),
    Case("eval-prediction-name-is-a-folder", (*EVAL, "--allow-missing"), 1,
         r"1_a_3\.txt: not a regular file \(a folder, FIFO or device under a prediction "
         r"file's name\)", setup=_mkdir("pred/1--A/1_a_3.txt")),
    Case("detect-providers-unknown", ("detect", "-m", M, "--providers", "foo", IMG), 2,
         r"--providers foo: ONNX Runtime provider\(s\) foo not available", one_line=True),
    Case("decode-incomplete-dump-recorded-as-such",
         (*DECODE, "--out", f"{WS}/p", "--allow-incomplete"), 0, r"npz-decode: 2 images",
         setup=_both(_manifest("dump/scrfd_dump.json", complete=False),
                     lambda ws: (ws / "dump" / "output_000001.npz").unlink()),
         check=lambda ws: (json.loads((ws / "p/scrfd_run.json").read_text())[
             "unfinished_lines"] == [2] and not json.loads((ws / "p/scrfd_run.json").read_text())[
             "source_complete"]) or pytest.fail("the run does not record the missing line")),
    Case("decode-outputs-mix-dtypes", (*DECODE, "--out", f"{WS}/p"), 1,
         r"dump: the outputs mix dtypes \(2 float32, 1 float16\): output_000001\.npz float16 "
         r"among the others", absent=("p",),
         setup=_edit_output(1, lambda a: [x.astype(np.float16) for x in a])),
    # issue 33, class 3: a named output replaces only a file of the kind it writes
    Case("detect-json-onto-a-user-file", ("detect", "-m", M, IMG, "--json", f"{WS}/notes.json"),
         2, r"--json .*notes\.json: exists and is not a detections JSON \(a file of yours\?\); "
            r"it is not replaced", setup=_write("notes.json", '{"todo": 1}'), keep=("notes.json",)),
    Case("image2npz-text-path-onto-a-user-file",
         ("image2npz", "--dataset-path", f"{WS}/images", "--target-path", f"{WS}/n2",
          "--text-path", f"{WS}/notes.txt"), 2,
         r"--text-path .*notes\.txt: exists and is not a datalist", setup=_write(
             "notes.txt", "meeting at 10\n"), keep=("notes.txt",), absent=("n2",)),
    Case("image2npz-target-holds-a-user-npz",
         ("image2npz", "--dataset-path", f"{WS}/images", "--target-path", f"{WS}/n2",
          "--text-path", f"{WS}/n2.txt"), 2,
         r"--target-path .*n2: 1 file\(s\) under the names image2npz writes are not input npz "
         r"files \(1_a_1\.npz\)", setup=lambda ws: (ws / "n2").mkdir() or np.savez(
             ws / "n2" / "1_a_1.npz", weights=np.ones(3)), keep=("n2/1_a_1.npz",)),
    # issue 33, class 1: a pre-built model runs as what it computes in, never as fp32
    Case("detect-fp16-file-runs-as-fp16", ("detect", "-m", f"{WS}/m16.onnx", IMG, "--json", "-"),
         0, r'"dtype": "fp16"', setup=_fp16_model,
         stderr=r"notice: .*m16\.onnx is an fp16 model \(\d+ of \d+ float weights stored as "
                r"float16\): run and labelled as fp16"),
    Case("detect-fp16-file-with-dtype-int8", ("detect", "-m", f"{WS}/m16.onnx", "--dtype",
                                              "int8", IMG), 2,
         r"--dtype int8: .*m16\.onnx is an fp16 model already \(.*\); drop --dtype to run it "
         r"as fp16", setup=_fp16_model),
    Case("quantize-a-converted-file", ("quantize", "-m", f"{WS}/m16.onnx", "--out",
                                       f"{WS}/q.onnx"), 2,
         r"--model .*m16\.onnx: an fp16 model already .*quantize converts the fp32 model",
         setup=_fp16_model, absent=("q.onnx",)),
    Case("dump-overwrite-keeps-a-file-changed-since", (*DUMP, "--out", f"{WS}/dump",
                                                      "--overwrite", "--dtype", "fp16"), 2,
         r"--out .*dump: 1 file\(s\) the earlier run lists are not the bytes it recorded "
         r"\(output_000002\.npz\)", setup=_replace_output(2, 0), keep=("dump",)),
]


# ----------------------------------------------------------------------------- runner


@pytest.fixture(scope="module")
def base_workspace(tmp_path_factory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("ws") / "ws")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(path.rglob("*")):
            h.update(os.fsencode(f.relative_to(path)))
            if f.is_file():
                h.update(f.read_bytes())
    elif path.exists():
        h.update(path.read_bytes())
    return h.hexdigest()


def _argv(case: Case, ws: Path) -> list:
    out = []
    for a in case.argv:
        if isinstance(a, bytes):
            out.append(a.replace(os.fsencode(WS), os.fsencode(ws)))
        else:
            out.append(a.replace(WS, str(ws)))
    return out


def test_the_table_is_large_enough():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, base_workspace: Path, tmp_path: Path):
    """Every row, run as ``main(argv)`` in this process (a row with its own environment,
    such as a faked package on PYTHONPATH, in a fresh one): the default tier."""
    run_case(case, base_workspace, tmp_path, in_process=not case.env)


@pytest.mark.acceptance
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_in_a_fresh_process(case: Case, base_workspace: Path, tmp_path: Path):
    """Every row as the console script runs it, ``python -m scrfd_ref.cli`` in a fresh
    process: what reaches the real stderr (C libraries' own warnings, logging handlers)
    and the real exit status."""
    run_case(case, base_workspace, tmp_path)


def _in_process(argv: list, ws: Path, env: dict) -> tuple[int, str, str]:
    """``main(argv)`` in this process as the console script would run it: the working
    folder, the environment and the image pixel limit set for the call and restored
    after; stdout / stderr captured (text and bytes)."""
    import contextlib
    import io

    from scrfd_ref.cli.app import main
    from scrfd_ref.formats import images

    saved_env, saved_cwd, saved_px = dict(os.environ), os.getcwd(), images.max_pixels()
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    try:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(ws)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([os.fsdecode(a) for a in argv])
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        images.set_max_pixels(saved_px)
    texts = []
    for stream in (out, err):
        stream.flush()
        texts.append(stream.buffer.getvalue().decode("utf-8", "replace"))
    return rc, texts[0], texts[1]


def run_case(case: Case, base_workspace: Path, tmp_path: Path, in_process: bool = False) -> None:
    """Run one row in a fresh copy of the workspace and check every promise of the
    module docstring (also used by the rows of other test modules); ``in_process``: as
    ``main(argv)`` here instead of a fresh process (a second faster, the same checks on
    what Python writes)."""
    ws = tmp_path / "ws"
    shutil.copytree(base_workspace, ws, symlinks=True)
    for datalist in (ws / "datalist.txt", ws / "dump" / "datalist.txt"):  # point at the copy
        datalist.write_text(datalist.read_text().replace(str(base_workspace), str(ws)))
    as_written_by_the_run(ws / "dump")  # as if the dump had been made in the copy
    if case.setup:
        case.setup(ws)
    before = {k: _digest(ws / k) for k in case.keep}
    env = {k: v for k, v in os.environ.items() if k != "SCRFD_DEBUG"}
    env.update(SCRFD_CACHE=str(ws / "cache"), SCRFD_DATA=str(ws / "nodata"), MPLBACKEND="Agg")
    env.update({k: v.replace(WS, str(ws)) for k, v in case.env.items()})
    if in_process:
        returncode, out, err = _in_process(_argv(case, ws), ws, env)
    else:
        res = subprocess.run([sys.executable, "-m", "scrfd_ref.cli", *_argv(case, ws)],
                             cwd=ws, env=env, capture_output=True, timeout=300)
        returncode = res.returncode
        out = res.stdout.decode("utf-8", "replace")
        err = res.stderr.decode("utf-8", "replace")
    where = f"\nstdout:\n{out[-2000:]}\nstderr:\n{err[-3000:]}"
    assert returncode == case.rc, f"exit {returncode}, expected {case.rc}{where}"
    assert "internal error" not in err, where
    if case.traceback:
        assert "Traceback" in err, where
    else:
        assert "Traceback" not in err, where
    if case.rc != 0:
        errors = [line for line in err.splitlines() if ": error: " in line]
        assert len(errors) == 1, f"expected one error line{where}"
        assert errors[0].startswith("scrfd-ref"), where
        assert re.search(case.message, err), f"{case.message!r} not in stderr{where}"
        if case.one_line:
            assert len(err.strip().splitlines()) == 1, f"stderr is not one line{where}"
    else:
        assert re.search(case.message, out), f"{case.message!r} not in stdout{where}"
    if case.stderr:
        assert re.search(case.stderr, err), f"{case.stderr!r} not in stderr{where}"
    if case.stdout:
        assert re.search(case.stdout, out), f"{case.stdout!r} not in stdout{where}"
    for k, digest in before.items():
        assert _digest(ws / k) == digest, f"{k} was changed{where}"
    for k in case.absent:
        assert not (ws / k).exists(), f"{k} was written{where}"
    if case.check:
        case.check(ws)


# ----------------------------------------------------------------------------- the suite

ROOT = Path(__file__).resolve().parents[2]
PYTEST_CASES = [
    ("gates-misspelt", ["--gates", "{ws}/g.toml"],
     _write("g.toml", "[fp32.heads]\ncosin_min = { value = 0.9, why = 'x' }\n"),
     r"cosin_min: unknown gate; did you mean cosine_min\?"),
    ("gates-wrong-type", ["--gates", "{ws}/g.toml"],
     _write("g.toml", "[fp16.ap]\nratio_min = { value = true, why = 'x' }\n"),
     r"ratio_min: value must be a number, got bool"),
    ("device-outputs-missing", ["--device-outputs", "{ws}/none"], None,
     r"--device-outputs .*none: no such folder"),
    ("device-outputs-incomplete", ["--device-outputs", "{ws}/dump"],
     _manifest("dump/scrfd_dump.json", complete=False),
     r"--device-outputs .*dump: the run that wrote it did not finish"),
    ("device-outputs-corrupt-manifest", ["--device-outputs", "{ws}/dump"],
     _write("dump/scrfd_dump.json", "{oops"), r"scrfd_dump\.json: not a readable manifest"),
    ("vdsp-params-missing", ["--vdsp-params", "{ws}/none.json"], None,
     r"--vdsp-params .*none\.json: vdsp params file not found"),
    ("vdsp-params-refused-op", ["--vdsp-params", "{ws}/v.json"],
     _write("v.json", open(V640).read().replace("_LETTERBOX_", "_RESIZE_").replace(
         "RESIZE_CVTCOLOR", "RESIZE_CVTCOLORX")), r"OpType: unknown op"),
    ("build-yaml-unreadable", ["--build-yaml", "{ws}/y.yaml"], _write("y.yaml", "a: [\n"),
     r"--build-yaml .*y\.yaml: not a readable YAML file"),
    # third pass (issue 28): every option checked when the session starts (class 5), the
    # dump's manifest wins over the options and the folder (class 2), config values
    # validated (class 3), hostile manifests (class 6), --head-images (class 7)
    ("dtype-misspelt", ["--dtype", "int08"], None,
     r"--dtype int08: not a dtype; did you mean int8\?"),
    ("variant-misspelt", ["--variant", "500m_bnkp"], None,
     r"--variant 500m_bnkp: not a variant; did you mean 500m_bnkps\?"),
    ("backend-misspelt", ["--backend", "ortt"], None,
     r"--backend ortt: not an available backend; did you mean ort\?"),
    ("profile-misspelt", ["--profile", "device_flow"], None,
     r"--profile device_flow: not a profile; did you mean device-flow\?"),
    ("device-outputs-unknown-provenance", ["--device-outputs", "{ws}/dump"],
     lambda ws: (ws / "dump" / "scrfd_dump.json").unlink(),
     r"--device-outputs .*dump: no scrfd_dump\.json saying the variant and dtype; pass "
     r"--variant and --dtype"),
    ("device-outputs-dtype-against-manifest", ["--device-outputs", "{ws}/dump", "--variant",
                                               "500m_bnkps", "--dtype", "int8"], None,
     r"--dtype int8: the dump's manifest .*scrfd_dump\.json records dtype fp32; drop "
     r"--dtype, or pass --force-dtype"),
    ("device-outputs-cut", ["--device-outputs", "{ws}/dump", "--variant", "500m_bnkps"],
     _cut_dump(2),
     r"scrfd_dump\.json records a complete dump of 3 image\(s\) but the folder holds 2 "
     r"output file\(s\)"),
    ("build-yaml-quoted-false", ["--build-yaml", "{ws}/y.yaml"],
     _write("y.yaml", open(ZOO_YAML).read().replace("quantize_per_channel: true",
                                                    'quantize_per_channel: "false"')),
     r"--build-yaml .*y\.yaml: quantize_per_channel: must be true or false, got 'false'"),
    ("device-outputs-profile-is-a-list", ["--device-outputs", "{ws}/dump"],
     _identity("dump/scrfd_dump.json", lambda i: i.update(profile=[1, 2])),
     r"scrfd_dump\.json: identity\.profile must be a JSON object, got a list"),
    ("head-images-zero", ["--head-images", "0"], None,
     r"--head-images 0: expected an integer >= 1"),
    ("head-images-negative", ["--head-images", "-1"], None,
     r"--head-images -1: expected an integer >= 1"),
]


@pytest.mark.parametrize("name, args, setup, message", PYTEST_CASES,
                         ids=[c[0] for c in PYTEST_CASES])
def test_bad_suite_options_stop_the_session_with_one_message(name, args, setup, message,
                                                             base_workspace, tmp_path):
    """``pytest conformance/`` with a bad option refuses to start (pytest's usage exit 4)
    with the message, and never reports a pass."""
    ws = tmp_path / "ws"
    shutil.copytree(base_workspace, ws, symlinks=True)
    if setup:
        setup(ws)
    env = {**os.environ, "SCRFD_DATA": str(ws / "nodata"), "SCRFD_CACHE": str(ws / "cache")}
    res = subprocess.run([sys.executable, "-m", "pytest", "conformance/test_heads.py",
                          "-p", "no:cacheprovider", "-q",
                          *[a.replace("{ws}", str(ws)) for a in args]],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    text = res.stdout + res.stderr
    assert res.returncode == 4, f"exit {res.returncode}\n{text[-3000:]}"
    assert re.search(message, text), text[-3000:]
    assert "Traceback" not in text and "passed" not in text
    assert "errors during collection" not in text, text[-3000:]


@pytest.mark.parametrize("damage", [pytest.param("truncated", marks=pytest.mark.acceptance),
                                    "another-model",
                                    pytest.param("no-record", marks=pytest.mark.acceptance)])
def test_a_damaged_model_cache_entry_is_rebuilt_with_a_notice(base_workspace, tmp_path, damage):
    """Issue 33, class 1: a cache entry is used only when its bytes are the ones recorded
    when it was written; another loadable model under its name was used before."""
    ws = tmp_path / "ws"
    shutil.copytree(base_workspace, ws, symlinks=True)
    (cached,) = (ws / "cache").glob("model.device-*.onnx")
    if damage == "truncated":
        cached.write_bytes(cached.read_bytes()[:100])
    elif damage == "another-model":  # loads fine, standard layout: dump would refuse it
        cached.write_bytes((ws / "model.onnx").read_bytes())
    else:
        cached.with_name(cached.name + ".sha256.json").unlink()
    env = {**os.environ, "SCRFD_DATA": str(ws / "nodata"), "SCRFD_CACHE": str(ws / "cache")}
    for datalist in (ws / "datalist.txt",):
        datalist.write_text(datalist.read_text().replace(str(base_workspace), str(ws)))
    res = subprocess.run([sys.executable, "-m", "scrfd_ref.cli", "dump", "-q", "-m",
                          str(ws / "model.onnx"), "--datalist", str(ws / "datalist.txt"),
                          "--out", str(ws / "d2")], cwd=ws, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    why = {"truncated": "its bytes differ from the sha256 recorded",
           "another-model": "its bytes differ from the sha256 recorded",
           "no-record": "no record of what was written"}[damage]
    assert re.search(rf"notice: cached model .*model\.device-.*: {why}.*; building it again",
                     res.stderr), res.stderr
    assert len(list((ws / "d2").glob("output_*.npz"))) == 3


def test_a_damaged_reference_cache_entry_is_rebuilt_with_a_notice(tmp_path, capsys):
    from scrfd_ref.conformance.runs import Run, cached_run
    from scrfd_ref.core.detections import Detections

    def compute():
        return Run("ref", {}, {}, {"e/a": Detections.empty(False)})

    cached_run(tmp_path, "k", compute)
    (tmp_path / "run-k" / "run.npz").write_bytes(b"garbage")
    again = cached_run(tmp_path, "k", compute)
    assert list(again.detections) == ["e/a"]
    assert "reference cache entry" in capsys.readouterr().err
    assert Run.load(tmp_path / "run-k").device == "ref"

    # issue 33: a valid run.npz of another run under this entry's name was loaded before
    def other():
        return Run("ref", {}, {}, {"e/b": Detections.empty(False)})

    cached_run(tmp_path, "other", other)
    shutil.copy(tmp_path / "run-other" / "run.npz", tmp_path / "run-k" / "run.npz")
    again = cached_run(tmp_path, "k", compute)
    assert list(again.detections) == ["e/a"]
    assert re.search(r"reference cache entry .*run-k is damaged .*run\.npz is not the file "
                     r"saved with run\.json \(sha256 differs\)", capsys.readouterr().err)


def test_a_reference_cache_entry_whose_run_json_was_edited_is_rebuilt(tmp_path, capsys):
    """Issue 33's campaign: run.json's profile edited, or a duplicate key in it, was read
    as it was (the arrays' sha256 alone was recorded)."""
    from scrfd_ref.conformance.runs import Run, cached_run
    from scrfd_ref.core.detections import Detections

    def compute():
        return Run("ref", {}, {"pad_value": 114.0}, {"e/a": Detections.empty(False)})

    cached_run(tmp_path, "k", compute)
    meta = tmp_path / "run-k" / "run.json"
    for edit in (lambda t: t.replace("114.0", "0.0"),
                 lambda t: t.replace('{\n "device": "ref"', '{\n "device": "x", "device": "ref"')):
        text = meta.read_text()
        meta.write_text(edit(text))
        assert meta.read_text() != text
        again = cached_run(tmp_path, "k", compute)
        assert again.profile == {"pad_value": 114.0}
        assert re.search(r"reference cache entry .*run-k is damaged", capsys.readouterr().err)
