"""One verdict, said the same everywhere: the exit status, report.json, report.md,
report.html and JUnit XML agree, for a run that passes, one that fails, and one that judged
nothing (a mistyped ``--data-dir``: every test skipped), each run as a user runs the suite
(a fresh interpreter, ``pytest conformance/... --device-outputs DIR``).

The device is a 4-image honest dump of 19--Couple (fp32, made by ``scrfd-ref dump``); its
faulty twin has stride-16 boxes scaled x2 (the fault library). Only the head checks run
(seconds); the verdict's plumbing is the same for every level.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from dump_files import ROOT, honest_dump

from scrfd_ref.conformance.faults import Fault, inject

EVENT = "19--Couple"
DEVICE = "replay-fp32-500m_bnkps"

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def small_dump(tmp_path_factory, wider_images_dir, data_root, need):
    """An honest fp32 dump of the first 4 images of 19--Couple."""
    import shutil

    need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    root = tmp_path_factory.mktemp("agree")
    (root / "images" / EVENT).mkdir(parents=True)
    for p in sorted((wider_images_dir / EVENT).glob("*.jpg"))[:4]:
        shutil.copy(p, root / "images" / EVENT / p.name)
    return honest_dump(root, data_root, root / "images", None)


def _run(folder: Path, data_root: Path, out: Path, *extra: str) -> dict:
    """The suite's head checks on ``folder``: exit status and what each file says."""
    env = {k: v for k, v in os.environ.items() if k != "SCRFD_REQUIRE_DATA"}
    env["SCRFD_DATA"] = str(data_root)
    junit, report = out / "junit.xml", out / "rep"
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "conformance/test_heads.py", "--device-outputs",
         str(folder), "-p", "no:cacheprovider", "-q", "--no-header", "--accept-inconclusive",
         f"--junitxml={junit}", f"--report={report}", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    doc = json.loads((report / "report.json").read_text())
    md = (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    suite = ET.parse(junit).getroot().find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    row = next(tc for tc in suite.iter("testcase") if tc.get("name") == "session-verdict")
    return {"rc": res.returncode, "out": res.stdout + res.stderr,
            "json": doc["session"]["verdict"],
            "md": re.search(r"\*\*Verdict: ([A-Z ]+?)[,*]", md).group(1),
            "html": re.search(r'data-session="([A-Z ]+)"', html).group(1),
            "junit": props["scrfd_ref_session_verdict"],
            "junit_row_failed": row.find("failure") is not None, "doc": doc}


def _agree(r: dict, verdict: str) -> None:
    said = {k: r[k] for k in ("json", "md", "html", "junit")}
    assert said == dict.fromkeys(said, verdict), (said, r["out"][-3000:])
    assert (r["rc"] == 0) == (verdict == "PASS"), (r["rc"], r["out"][-3000:])
    assert r["junit_row_failed"] == (verdict != "PASS")


def test_a_passing_run_says_pass_everywhere(small_dump, data_root, tmp_path):
    r = _run(small_dump, data_root, tmp_path)
    _agree(r, "PASS")
    assert f"{DEVICE}" in r["doc"]["devices"]


def test_a_failing_run_says_fail_everywhere(small_dump, data_root, tmp_path):
    broken = inject(small_dump, tmp_path / "scaled",
                    Fault("scale_head", kind="bbox", stride=16, magnitude=2.0))
    r = _run(broken, data_root, tmp_path)
    _agree(r, "FAIL")
    assert r["rc"] == 1


def test_a_run_that_judged_nothing_is_not_a_pass(small_dump, data_root, tmp_path):
    """A mistyped --data-dir skips every test: exit 1, "NOTHING JUDGED" with the reason."""
    r = _run(small_dump, data_root, tmp_path, "--data-dir", str(tmp_path / "no-such-data"))
    _agree(r, "NOTHING JUDGED")
    assert r["rc"] == 1
    assert "no-such-data" in r["doc"]["session"]["reason"], r["doc"]["session"]


def test_loosened_gates_are_disclosed_beside_the_verdict(small_dump, data_root, tmp_path):
    """The faulty dump passes under a gates file that loosens the three head limits it
    fails: the verdict says PASS, and every file says beside it which limits were
    loosened (the issue's case: a scaled stride passing under custom gates, shown as a
    plain PASS)."""
    broken = inject(small_dump, tmp_path / "scaled",
                    Fault("scale_head", kind="bbox", stride=16, magnitude=2.0))
    gates = tmp_path / "loose.toml"
    gates.write_text("[fp32.heads]\n"
                     "snr_db_min = { value = -100, why = 'loosened' }\n"
                     "within_tol_min = { value = 0, why = 'loosened' }\n"
                     "fg_snr_db_min = { value = -100, why = 'loosened' }\n")
    r = _run(broken, data_root, tmp_path, "--gates", str(gates))
    _agree(r, "PASS")
    disclosure = r["doc"]["meta"]["gates_disclosure"]
    assert disclosure["banner"] == "custom gates: 3 limits looser than shipped"
    assert {c["gate"] for c in disclosure["changes"]} == {
        "fp32.heads.snr_db_min", "fp32.heads.within_tol_min", "fp32.heads.fg_snr_db_min"}
    assert r["doc"]["meta"]["run"]["verdict_options"]["--gates"] == str(gates)
    md = (tmp_path / "rep" / "report.md").read_text()
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "**custom gates: 3 limits looser than shipped**" in md
    assert "fp32.heads.snr_db_min: 60 -> -100 (looser)" in md
    assert re.search(r'id="gates-banner">custom gates: 3 limits looser than shipped<', html)
    prov = r["doc"]["devices"][DEVICE]["spec"]["provenance"]
    assert prov["fault"]["label"] == "scale_head(bbox@16 2)" and prov["made_by_scrfd_ref"]
    assert "not by hardware" in prov["label"] and "injected fault" in prov["label"]


@pytest.mark.parametrize("option, where, message", [
    ("--ref-cache", "inside", "--ref-cache .*cache: lies inside --device-outputs"),
    ("--report", "inside", "--report .*cache: lies inside --device-outputs"),
    ("--report", "file", "--report .*notes.txt: is a file; give a folder"),
])
def test_output_folders_are_refused_before_any_test_runs(small_dump, data_root, tmp_path,
                                                         option, where, message):
    """Issue 33 (class 3 and 5): a cache inside the dump wrote into the user's input, and
    --report naming a file failed after the whole run as a traceback."""
    before = sorted(p.name for p in small_dump.iterdir())
    target = small_dump / "cache" if where == "inside" else tmp_path / "notes.txt"
    if where == "file":
        target.write_text("x")
    env = {**os.environ, "SCRFD_DATA": str(data_root)}
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "conformance/test_heads.py", "--device-outputs",
         str(small_dump), "-p", "no:cacheprovider", "-q", option, str(target)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 4 and re.search(message, res.stderr), res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in small_dump.iterdir()) == before


@pytest.mark.parametrize("narrowing", [
    pytest.param(("--backend", "opencv", "--dtype", "int8"), marks=pytest.mark.acceptance),
    ("--variant", "10g")])
def test_a_matrix_that_left_every_device_out_is_not_a_pass(data_root, tmp_path, narrowing):
    """Issue 33's campaign: a combination the plan leaves out, or a variant without weights,
    skipped every test and exited 0 without a verdict (no --report, no --device-outputs)."""
    env = {k: v for k, v in os.environ.items() if k != "SCRFD_REQUIRE_DATA"}
    env["SCRFD_DATA"] = str(data_root)
    junit = tmp_path / "junit.xml"
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "conformance/test_heads.py", *narrowing,
         "-p", "no:cacheprovider", "-q", "--no-header", f"--junitxml={junit}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert re.search(r"session verdict: NOTHING JUDGED, 0 devices: no device to judge: the "
                     r"matrix left every one out", out), out[-3000:]
    suite = ET.parse(junit).getroot().find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["scrfd_ref_session_verdict"] == "NOTHING JUDGED"
