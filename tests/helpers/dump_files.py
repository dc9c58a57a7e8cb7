"""Device output folders for tests: an honest dump of one WIDER event, and npz files that
declare more than they hold (zip bombs) for the untrusted-file checks."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from scrfd_ref.cli import main

ROOT = Path(__file__).resolve().parents[2]
SUITE = ("conformance/test_heads.py", "conformance/test_detections.py",
         "conformance/test_ap.py")


def honest_dump(root: Path, data_root: Path, images_dir: Path, event: str | None) -> Path:
    """``root/out``: ``scrfd-ref dump`` of ``event``'s images (None: every image under
    ``images_dir``; 500m_bnkps fp32, device layout) over ``image2npz`` inputs, as a device
    team makes one; the datalist beside."""
    datalist = root / "datalist.txt"
    events = ["--events", event] if event is not None else []
    assert main(["--data-dir", str(data_root), "image2npz", "--dataset-path",
                 str(images_dir), "--target-path", str(root / "npz"), "--text-path",
                 str(datalist), *events, "-q"]) == 0
    assert main(["--data-dir", str(data_root), "dump", "-m", "500m_bnkps", "--dtype", "fp32",
                 "--datalist", str(datalist), "--out", str(root / "out"), "-q"]) == 0
    return root / "out"


def run_suite(folder: Path, data_root: Path, *extra: str) -> subprocess.CompletedProcess:
    """``pytest`` over the conformance heads / detections / AP files judging ``folder`` with
    ``--device-outputs``, in a fresh interpreter as a user runs it."""
    env = {**os.environ, "SCRFD_DATA": str(data_root)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", *SUITE, "--device-outputs", str(folder),
         "-p", "no:cacheprovider", "-q", "--no-header", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def write_npz_bomb(path: Path, arrays: Sequence[tuple[str, np.ndarray]], big: str,
                   shape: tuple[int, ...]) -> None:
    """An npz at ``path`` holding ``arrays`` (name, array), except ``big``, whose header
    declares ``shape`` float32 and whose body is deflated zeros (the file stays small)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, a in arrays:
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                if name != big:
                    np.lib.format.write_array(f, a)
                    continue
                np.lib.format.write_array_header_2_0(
                    f, {"descr": "<f4", "fortran_order": False, "shape": shape})
                chunk = bytes(1 << 24)
                for _ in range(int(np.prod(shape)) * 4 // len(chunk)):
                    f.write(chunk)


def as_written_by_the_run(folder: Path) -> None:
    """Make a test's edits to a run folder look like the run's own writing: its manifest
    (``scrfd_dump.json`` or ``scrfd_run.json``) lists every run file now present, with
    the sha256 of its bytes; as a device that wrote those bytes would have recorded them.
    Without this, the folder's consumers refuse the edited files as changed after the run
    (what ``test_cli_bad_input``'s ``*-changed-after-the-run`` rows check)."""
    import json

    from scrfd_ref.formats.dataset import prediction_files
    from scrfd_ref.formats.device_npz import scan_output_files
    from scrfd_ref.formats.files import file_digest

    folder = Path(folder)
    for name, files in (("scrfd_dump.json", lambda: scan_output_files(folder)[0]),
                        ("scrfd_run.json", lambda: prediction_files(folder))):
        path = folder / name
        if not path.is_file():
            continue
        doc = json.loads(path.read_text())
        present = {f.relative_to(folder).as_posix(): f for f in files()}
        doc["outputs"] = sorted(set(doc.get("outputs") or ()) & set(present) | set(present)
                                | ({"datalist.txt"} & set(doc.get("outputs") or ())))
        doc["sha256"] = {rel: file_digest(folder / rel) for rel in doc["outputs"]
                         if (folder / rel).is_file()}
        path.write_text(json.dumps(doc, indent=2))
