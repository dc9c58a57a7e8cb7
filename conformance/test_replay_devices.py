"""Replayed hardware dumps: a good dump passes, deliberately broken ones fail the right gate.

A dump made by ``scrfd-ref dump`` (fp32, device layout) of one WIDER event stands in for a
device's output folder. Broken copies are made with the fault-injection library
(:mod:`scrfd_ref.conformance.faults`): one head scaled, two images' outputs swapped, a file truncated.
Each is run through ``pytest conformance/ --device-outputs DIR`` in a subprocess, exactly
as a user would, and must exit non-zero with a message naming the head or the image (or
the file).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from dump_files import honest_dump, run_suite

from scrfd_ref.conformance.faults import Fault, inject

EVENT = "19--Couple"

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def good_dump(tmp_path_factory, wider_images_dir, data_root, need):
    need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    return honest_dump(tmp_path_factory.mktemp("dump"), data_root, wider_images_dir, EVENT)


@pytest.fixture(scope="module")
def ref_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("refcache")


def _suite(folder: Path, ref_cache: Path, data_root: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_suite(folder, data_root, f"--ref-cache={ref_cache}", *extra)


@pytest.mark.acceptance  # runs the suite in a subprocess (minutes)
def test_dump_folder_passes(good_dump, ref_cache, data_root, tmp_path):
    res = _suite(good_dump, ref_cache, data_root, "--report", str(tmp_path / "rep"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "7 passed" in res.stdout   # 6 device tests + the session verdict row
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "replay-fp32-500m_bnkps" in md and "**FAIL**" not in md


@pytest.mark.acceptance  # runs the suite in a subprocess (minutes)
def test_scaled_head_fails_the_head_gate(good_dump, ref_cache, data_root, tmp_path):
    broken = inject(good_dump, tmp_path / "scaled", Fault("scale_head", kind="bbox", stride=16,
                                                          magnitude=1.5))
    res = _suite(broken, ref_cache, data_root, "--report", str(tmp_path / "rep"))
    assert res.returncode != 0
    md = (tmp_path / "rep" / "report.md").read_text()
    likely = md[md.index("## Likely causes"):]
    assert "bbox_16 scaled x1.500" in likely.splitlines()[5], likely[:1500]
    assert "FAILED conformance/test_heads.py" in res.stdout
    fails = {line.strip() for line in res.stdout.splitlines() if "FAIL heads/" in line}
    assert fails, res.stdout[-3000:]
    assert all("on bbox_16" in line for line in fails), "only the scaled head may fail:\n" + \
        "\n".join(sorted(fails))


@pytest.mark.acceptance
def test_swapped_images_fail_the_detection_gate_naming_an_image(good_dump, ref_cache, data_root,
                                                                tmp_path):
    broken = inject(good_dump, tmp_path / "swapped", Fault("swap_images", pair=(0, 1)))
    res = _suite(broken, ref_cache, data_root)
    assert res.returncode != 0
    assert "FAILED conformance/test_detections.py::test_detections_match_reference" in res.stdout
    assert f"worst: {EVENT}/" in res.stdout


@pytest.mark.acceptance
def test_truncated_file_is_named(good_dump, ref_cache, data_root, tmp_path):
    broken = inject(good_dump, tmp_path / "truncated", Fault("truncate", pair=(3, 0),
                                                             magnitude=200))
    res = _suite(broken, ref_cache, data_root)
    assert res.returncode != 0
    assert "output_000003.npz" in res.stdout and "truncated or corrupt" in res.stdout


@pytest.mark.acceptance
def test_scale_out_under_xdist_merges_one_report(good_dump, ref_cache, data_root, tmp_path):
    """Two xdist workers share the fp32 reference through --ref-cache; the controller
    merges the workers' partial reports into one report.md / report.json."""
    res = _suite(good_dump, ref_cache, data_root, "-n", "2", "--report", str(tmp_path / "rep"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    doc = (tmp_path / "rep" / "report.json").read_text()
    assert '"replay-fp32-500m_bnkps"' in doc
    assert not list((tmp_path / "rep").glob(".partial-*.json"))
    levels = __import__("json").loads(doc)["devices"]["replay-fp32-500m_bnkps"]["levels"]
    assert {"heads", "detections", "collapse", "ap"} <= set(levels)


@pytest.fixture(scope="module")
def four_image_dump(tmp_path_factory, wider_images_dir, data_root):
    """An honest fp32 dump of 4 held-out images of 19--Couple: faces, but none large
    enough for stride 32 (a device team's smoke dump)."""
    import shutil

    from scrfd_ref.quantize.calibration import calibration_keys

    root = tmp_path_factory.mktemp("four")
    held_out = set(calibration_keys())
    images = [p for p in sorted((wider_images_dir / EVENT).glob("*.jpg"))
              if f"{EVENT}/{p.stem}" not in held_out][:4]
    (root / "images" / EVENT).mkdir(parents=True)
    for p in images:
        shutil.copy(p, root / "images" / EVENT / p.name)
    return honest_dump(root, data_root, root / "images", None)


@pytest.mark.acceptance
def test_four_images_cannot_decide_and_say_what_they_lack(four_image_dump, ref_cache, data_root,
                                                         tmp_path):
    """Not a device failure and not a pass: inconclusive, its own word in the summary line
    and in the JUnit failure message, exit non-zero, the stride named with what to add."""
    junit = tmp_path / "junit.xml"
    res = _suite(four_image_dump, ref_cache, data_root, "--junitxml", str(junit),
                 "--report", str(tmp_path / "rep"))
    summary = res.stdout.strip().splitlines()[-1]
    assert res.returncode == 1, res.stdout[-3000:]
    assert "inconclusive" in summary and "failed" not in summary, summary
    assert "stride 32 not measured; add images with large faces" in res.stdout
    assert "FAIL " not in res.stdout, "an honest device must never read as failing"
    xml = junit.read_text()
    assert 'message="INCONCLUSIVE replay-fp32-500m_bnkps: anchors: the images cannot decide' in xml
    doc = __import__("json").loads((tmp_path / "rep" / "report.json").read_text())
    assert doc["devices"]["replay-fp32-500m_bnkps"]["verdict"] == "inconclusive"
    assert "*inconclusive*" in (tmp_path / "rep" / "report.md").read_text()


@pytest.mark.acceptance
def test_accept_inconclusive_lets_a_smoke_run_pass_and_says_so(four_image_dump, ref_cache,
                                                               data_root):
    res = _suite(four_image_dump, ref_cache, data_root, "--accept-inconclusive")
    assert res.returncode == 0, res.stdout[-3000:]
    assert "ACCEPTED by --accept-inconclusive, not evidence of conformance" in res.stdout
    assert "stride 32 not measured" in res.stdout


@pytest.mark.acceptance
def test_allow_incomplete_judges_the_lines_an_interrupted_dump_finished(four_image_dump,
                                                                        ref_cache, data_root,
                                                                        tmp_path):
    """An interrupted dump (one output missing, the manifest saying complete: false) is
    refused, and with --allow-incomplete judged on the 3 images it has (the flag does
    what it says)."""
    import json
    import shutil

    folder = tmp_path / "interrupted"
    shutil.copytree(four_image_dump, folder)
    (folder / "output_000002.npz").unlink()
    doc = json.loads((folder / "scrfd_dump.json").read_text())
    doc["complete"] = False
    (folder / "scrfd_dump.json").write_text(json.dumps(doc))
    refused = _suite(folder, ref_cache, data_root)
    assert refused.returncode == 4 and "pass --allow-incomplete" in refused.stderr
    res = _suite(folder, ref_cache, data_root, "--allow-incomplete", "--accept-inconclusive")
    assert res.returncode == 0, res.stdout[-3000:]
    assert "among these 3 images" in res.stdout
