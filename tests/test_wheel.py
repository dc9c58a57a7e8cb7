"""The wheel carries the conformance suite: installed elsewhere, it runs from any folder.

Builds the wheel of this checkout, installs it (without dependencies, which this
environment already has) into a fresh folder, and from a third folder runs
``pytest --pyargs scrfd_ref.conformance --device-outputs DIR --data-dir DATA`` on an fp32
dump of one WIDER event: the suite, its plugin (the ``pytest11`` entry point) and the
default gates file all come from the installed wheel, not the checkout.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scrfd_ref.cli import main

ROOT = Path(__file__).resolve().parent.parent
EVENT = "19--Couple"

pytestmark = [pytest.mark.acceptance, pytest.mark.data, pytest.mark.slow]


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kwargs)


def test_installed_wheel_runs_the_suite_from_another_folder(tmp_path, data_root, need,
                                                            wider_images_dir):
    need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    res = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                "-q", "-w", str(tmp_path / "dist"), str(ROOT)])
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("scrfd_ref-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "scrfd_ref/_data/gates.toml" in names, "the default gates ship in the wheel"
    assert "scrfd_ref/conformance/suite/test_heads.py" in names
    assert {"scrfd_ref/report/templates/_base.html.j2",
            "scrfd_ref/report/templates/report.html.j2"} <= set(names), \
        "the report.html templates ship in the wheel"
    site = tmp_path / "site"
    res = _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                str(site), str(wheel)])
    assert res.returncode == 0, res.stderr[-3000:]

    dump = tmp_path / "dump"
    assert main(["--data-dir", str(data_root), "image2npz", "--dataset-path",
                 str(wider_images_dir), "--target-path", str(tmp_path / "npz"), "--text-path",
                 str(tmp_path / "datalist.txt"), "--events", EVENT, "-q"]) == 0
    assert main(["--data-dir", str(data_root), "dump", "-m", "500m_bnkps", "--datalist",
                 str(tmp_path / "datalist.txt"), "--out", str(dump), "-q"]) == 0

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("SCRFD_DATA", None)
    probe = _run([sys.executable, "-c", "import scrfd_ref, scrfd_ref.conformance.gates as g; "
                  "print(scrfd_ref.__file__); print(g.DEFAULT_GATES)"], cwd=elsewhere, env=env)
    assert probe.returncode == 0, probe.stderr
    assert all(line.startswith(str(site)) for line in probe.stdout.split()), probe.stdout
    # one event (31 images) cannot decide the face-attribute slices (too few faces in
    # several): a smoke run accepts that, and the verdict says it did
    res = _run([sys.executable, "-m", "pytest", "--pyargs", "scrfd_ref.conformance",
                "--device-outputs", str(dump), "--data-dir", str(data_root),
                "--accept-inconclusive", "-p", "no:cacheprovider", "-q"], cwd=elsewhere,
               env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "8 passed" in out and "failed" not in out   # 7 + the session verdict row
    assert "PASS, 1 device" in out and "inconclusive accepted by --accept-inconclusive" in out
    assert "slices" in out and "only 7 face(s) of occlusion=heavy" in out
