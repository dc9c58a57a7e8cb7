"""report.html of real conformance runs, opened in headless Chromium (acceptance tier).

A passing run (an fp32 dump of one WIDER event replayed) and a failing one (the same dump
with one head scaled by the fault-injection library) go through
``pytest conformance/ --device-outputs DIR --report REP --html REP/pytest.html`` in a
subprocess, as a user runs them. Each report.html is opened from its file:// URL in
headless Chromium: its device row and verdict, the failed gates (only on the scaled head),
the PR curve and the worst-image overlay decoded, no console error; a screenshot is saved
beside it as ``report.png``. pytest-html's page carries the device verdict and the link
to report.html. Skipped where no Chromium is installed, with the install line.
"""
from __future__ import annotations

import pytest
from dump_files import honest_dump, run_suite

from scrfd_ref.conformance.faults import Fault, inject

EVENT = "19--Couple"
DEVICE = "replay-fp32-500m_bnkps"

pytestmark = [pytest.mark.acceptance, pytest.mark.data]


@pytest.fixture(scope="module")
def dumps(tmp_path_factory, wider_images_dir, data_root, need):
    """``{"passing": honest fp32 dump, "failing": the same with bbox_16 scaled x1.5}``."""
    import browser

    browser.require_browser()
    need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    root = tmp_path_factory.mktemp("dump")
    honest = honest_dump(root, data_root, wider_images_dir, EVENT)
    broken = inject(honest, root / "scaled",
                    Fault("scale_head", kind="bbox", stride=16, magnitude=1.5))
    return {"passing": honest, "failing": broken}


@pytest.mark.parametrize("case", ["passing", "failing"])
def test_report_html_of_a_real_run_in_chromium(case, dumps, data_root, tmp_path_factory):
    import browser

    rep = tmp_path_factory.mktemp(f"report-{case}")
    res = run_suite(dumps[case], data_root, "--report", str(rep), "--html",
                    str(rep / "pytest.html"))
    assert (res.returncode == 0) == (case == "passing"), res.stdout[-3000:] + res.stderr[-2000:]
    page = rep / "report.html"
    assert f"scrfd-ref report: {page}" in res.stdout
    with browser.chromium() as driver:
        info = browser.open_page(driver, page)
        shot = browser.screenshot(driver, rep / "report.png")
    print(f"\n{case}: {page} ({page.stat().st_size} bytes), screenshot {shot}")
    assert info["console"] == [], info["console"]
    assert info["device_rows"] == [DEVICE] and info["device_sections"] == [DEVICE]
    assert info["overall"] == ("pass" if case == "passing" else "fail")
    # PR curves always; the worst-image overlay only where an image mismatches
    assert len(info["images"]) == (1 if case == "passing" else 2)
    assert all(i["width"] > 0 and i["height"] > 0 for i in info["images"])
    assert info["width"] <= 1280 and info["scripts"] == 1
    if case == "passing":
        assert info["failed_gates"] == []
    else:
        assert info["failed_gates"], "the scaled head fails its gates"
        assert all(g.startswith(f"{DEVICE} ") for g in info["failed_gates"])
    html = page.read_text()
    assert "bbox_16" in html
    listed = html[html.index('id="causes"'):] if case == "failing" else ""
    assert case == "passing" or "bbox_16 scaled x1.500" in listed
    extras = (rep / "pytest.html").read_text()
    assert "scrfd-ref conformance" in extras and "report.html" in extras and DEVICE in extras
