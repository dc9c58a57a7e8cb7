"""The slice level in report.json / report.md / report.html: the device x slice table, the
full table of a failing device, the verdict words, and the forest plot."""
from __future__ import annotations

import json

import numpy as np
import pytest

from scrfd_ref.conformance.gates import Gates
from scrfd_ref.conformance.slice_checks import check_slices
from scrfd_ref.formats.ground_truth import GroundTruth, make_image
from scrfd_ref.formats.ground_truth_types import ATTRIBUTES
from scrfd_ref.report.document import ConformanceReport, render_markdown
from scrfd_ref.report.html import render_report_html
from scrfd_ref.report.slices import plot_forest, slice_verdicts
from scrfd_ref.widerface.slice_eval import paired_slices


def _world(n_images: int = 60, seed: int = 0):
    """A ground truth whose images hold small, medium and large faces with every label, and
    perfect predictions for it."""
    rng = np.random.default_rng(seed)
    images, preds = [], {}
    for i in range(n_images):
        heights = np.array([20, 30, 80, 120, 320, 400], dtype=float)
        boxes = np.column_stack([np.arange(6) * 700.0 + 5, np.full(6, 5.0), heights * 0.8,
                                 heights])
        labels = {a: rng.integers(0, len(v), 6) for a, v in ATTRIBUTES.items()}
        labels["invalid"] = np.zeros(6, int)
        counted = {s: np.arange(6) for s in ("easy", "medium", "hard")}
        images.append(make_image("1--A", f"a_{i}", boxes, counted, labels))
        preds[("1--A", f"a_{i}")] = np.column_stack([boxes, np.full(6, 0.9)])
    return GroundTruth(events=("1--A",), images=tuple(images), source="synthetic"), preds


@pytest.fixture(scope="module")
def report_doc(tmp_path_factory):
    gt, ref = _world()
    lossy = {k: v[v[:, 3] < 300] for k, v in ref.items()}   # loses every large face
    gates = Gates.load()
    report = ConformanceReport(meta={"gates": gates.source})
    for device, preds in (("ort-int8-x", ref), ("faulty-int8-x", lossy)):
        paired = paired_slices(ref, preds, gt, resamples=200, min_faces=20)
        result = check_slices(paired, gates, "int8")
        report.device(device, spec={"backend": "ort", "dtype": "int8", "variant": "x"})
        report.record(device, "slices", result.rows, result.metrics)
    folder = tmp_path_factory.mktemp("report")
    report.write(folder)
    return json.loads((folder / "report.json").read_text()), folder


def test_the_failing_device_names_its_slice_in_every_file(report_doc):
    doc, folder = report_doc
    lv = doc["devices"]["faulty-int8-x"]["levels"]["slices"]
    assert lv["verdict"] == "fail"
    assert slice_verdicts(lv)["scale=large"] == "fail"
    assert slice_verdicts(doc["devices"]["ort-int8-x"]["levels"]["slices"]) == {
        name: "pass" for name in lv["metrics"]["slices"]["slices"]}
    md = (folder / "report.md").read_text()
    assert "## WIDER FACE per face attribute" in md
    assert "### `faulty-int8-x`: slices FAIL" in md
    assert "-1.000 / -1.000 **FAIL**" in md      # scale=large: recall and AP all lost
    assert "### `ort-int8-x`" not in md           # a passing device gets no full table
    html = (folder / "report.html").read_text()
    assert 'id="slices"' in html and 'href="#slices"' in html
    row = html.split('<tr data-device="faulty-int8-x">', 1)[1].split("</tr>", 1)[0]
    assert '<span class="v fail">-1.000</span>' in row


def test_a_report_without_attributes_says_why(tmp_path):
    gates = Gates.load()
    result = check_slices(None, gates, "fp16", missing="the ground truth has no attributes")
    assert result.verdict == "inconclusive"
    report = ConformanceReport()
    report.device("d", spec={"backend": "ort", "dtype": "fp16", "variant": "x"})
    report.record("d", "slices", result.rows, result.metrics)
    doc = json.loads(json.dumps(report.to_dict()))
    assert "the ground truth has no attributes" in render_markdown(doc)
    assert "the ground truth has no attributes" in render_report_html(doc, tmp_path)


def test_forest_plot_is_written(report_doc, tmp_path):
    doc, _ = report_doc
    slices = doc["devices"]["faulty-int8-x"]["levels"]["slices"]["metrics"]["slices"]
    png = plot_forest(slices, tmp_path / "forest.png", "faulty", {"ap": 0.05, "recall": 0.05})
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
