"""report.html: rendered from synthetic report documents (the report.json shape).

The default-tier tests parse the page with the standard library's HTML parser: the verdict
of every device, row and level (inconclusive in its own word), failures first, numbers
rounded to what their gate resolves, pictures inlined or shown as missing, hostile strings
escaped. The browser test (acceptance) opens the page in headless Chromium from a file://
URL: every device row, failed gates listed, pictures decoded, no console error, no script
run but the page's own, the lightbox opening; it saves screenshots into the report folder.
"""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import report_synth as rs

from scrfd_ref.report.document import ConformanceReport
from scrfd_ref.report.format import (
    combine,
    device_verdict,
    format_number,
    level_verdict,
    margin,
    row_verdict,
)
from scrfd_ref.report.html import render_report_html
from scrfd_ref.report.html_int8 import render_int8_ap_html, render_quantize_html
from scrfd_ref.report.inline import inline_picture


class Page(HTMLParser):
    """The elements of a page (tag, attributes) and its visible text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self._script = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._script = tag in ("script", "style")

    def handle_endtag(self, tag):
        self._script = False

    def handle_data(self, data):
        if not self._script:
            self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        """Elements ``tag`` whose attributes contain ``attrs`` (class: one of its words)."""
        out = []
        for t, a in self.elements:
            if t != tag:
                continue
            ok = all((v in (a.get("class") or "").split()) if k == "cls" else a.get(k) == v
                     for k, v in attrs.items())
            if ok:
                out.append(a)
        return out

    @property
    def words(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.text))


def render(doc: dict, folder: Path) -> Page:
    return Page(render_report_html(doc, folder))


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("value, gate, limit, text", [
    (31.10867674968943, "snr_db_min", 35.0, "31.1"),          # dB to 0.1
    (21.91818494508851, "fg_snr_db_min", 12.0, "21.9"),
    (1.00045795859268, "ratio_min", 0.95, "1.0005"),            # ratios to 4 decimals
    (0.99989, "ratio_min", 0.9999, "0.99989"),                 # never printed as its limit
    (-0.00042967105928282123, "abs_delta_max", 0.03, "-0.0004"),
    (-0.0000042, "abs_delta_max", 0.03, "0.0000"),               # a zero has no sign
    (-1e-7, "snr_db_min", 35.0, "0.0"),
    (0.9968153677408378, "cosine_min", 0.9995, "0.99682"),     # one decimal past the limit
    (0.9681051329904025, "mean_iou_min", 0.92, "0.968"),
    (1.0, "recall_min", 0.97, "1.000"),
    (1.0, "shape_ok_min", 1.0, "1"),                            # whole numbers whole
    (3.0, "nonfinite_max", 0.0, "3"),
    (0.14463883638381958, "max_score_delta_max", 0.35, "0.145"),  # else 3 significant digits
    (1.4e-05, "max_score_delta_max", 1e-3, "1.40e-5"),
    (20.73838638168362, "landmark_err_px_max", 2.0, "20.7"),
    ("nan", "recall_min", 0.97, "nan"),
    (None, "recall_min", 0.97, "\u2013"),
    ("not a number", "x", None, "not a number"),
])
def test_numbers_are_rounded_to_what_the_gate_resolves(value, gate, limit, text):
    assert format_number(value, gate, limit) == text


def test_margin_is_signed_in_units_of_the_gate_budget():
    m = margin(31.1, "snr_db_min", 35.0)        # 10 dB is the budget of an SNR
    assert m["text"] == "-3.9 dB" and m["fraction"] == pytest.approx(-0.39)
    m = margin(0.9, "recall_min", 0.95)         # a lower bound below 1 allows 1 - limit
    assert m["fraction"] == pytest.approx(-1.0) and m["text"] == "-0.050"
    assert margin(0.85, "recall_min", 0.95)["fraction"] == -1.0, "clipped at the bar's end"
    m = margin(0.2, "max_score_delta_max", 0.35)  # an upper bound allows its limit
    assert m["fraction"] == pytest.approx(0.15 / 0.35) and m["text"] == "+0.15"
    assert margin(0.0, "nonfinite_max", 0.0)["text"] == "at limit"
    assert margin(1e-4, "atol", 1e-4) is None and margin("nan", "recall_min", 0.9) is None


# ----------------------------------------------------------------------------- verdicts


def test_verdicts_come_from_the_evidence_keys_or_else_from_passed():
    assert row_verdict({"passed": True}) == "pass" and row_verdict({"passed": False}) == "fail"
    assert row_verdict({"passed": False, "verdict": "inconclusive"}) == "inconclusive"
    assert combine(["pass", "inconclusive", "pass"]) == "inconclusive"
    assert combine(["inconclusive", "fail"]) == "fail" and combine([]) == "none"
    assert level_verdict({"passed": True, "gates": [{"passed": True},
                                                    {"verdict": "inconclusive"}]}) == "inconclusive"
    assert level_verdict({"passed": False, "gates": []}) == "fail"
    assert level_verdict({"verdict": "pass", "gates": [{"passed": False}]}) == "pass"
    assert device_verdict({"passed": True, "levels": {}}) == "none", "nothing judged, no pass"


# ----------------------------------------------------------------------------- pages


def test_zero_devices(tmp_path):
    page = render(rs.report({}), tmp_path)
    assert page.find("div", id="overall")[0]["data-verdict"] == "none"
    assert "No device was checked" in page.words
    assert not page.find("tr", cls="device-row") and not page.find("tr", cls="gate")
    assert len(page.find("script")) == 1


def test_one_passing_device(tmp_path):
    doc = rs.report({"ort-fp16-500m_bnkps": rs.device("500m_bnkps", "ort", "fp16")})
    page = render(doc, tmp_path)
    assert page.find("div", id="overall")[0]["data-verdict"] == "pass"
    (row,) = page.find("tr", cls="device-row")
    assert row["data-device"] == "ort-fp16-500m_bnkps" and "pass" in row["class"]
    assert not page.find("tr", cls="gate", **{"data-verdict": "fail"})
    (section,) = page.find("details", cls="device")
    assert "open" not in section, "a passing device starts folded"
    assert "1 pass" in page.words and "fail" not in page.find("div", id="overall")[0]["class"]


def test_thirty_failed_gates_are_listed_first_and_rounded(tmp_path):
    dev = rs.device("500m_bnkps", "ort", "fp16", fail_heads=9, detections_fail=True)
    dev["levels"]["collapse"]["gates"][0].update(value=0.4123456789, passed=False)
    html = render_report_html(rs.report({"ort-fp16-500m_bnkps": dev}), tmp_path)
    page = Page(html)
    failed = page.find("tr", cls="gate", **{"data-verdict": "fail"})
    assert len(failed) == 9 * 3 + 2 + 1 == 30
    # per level, the rows of the first head group start with the failures
    verdicts = [a["data-verdict"] for t, a in page.elements if t == "tr" and "gate" in
                (a.get("class") or "").split()]
    assert verdicts[:3] == ["fail"] * 3
    assert "31.10867674968943" not in html and "31.1" in page.words
    assert not re.search(r"\d\.\d{7,}", page.words), "no 17-digit numbers on the page"
    assert page.find("div", id="overall")[0]["data-verdict"] == "fail"


def test_inconclusive_has_its_own_word_and_is_never_a_failure(tmp_path):
    dev = rs.device("1g", "ort", "int8")
    dev["levels"]["ap"] = rs.ap_level(0.004, {"easy": "pass", "medium": "pass",
                                              "hard": "inconclusive"}, intervals=True)
    dev["levels"]["ap"]["gates"][-1].update(interval=[0.9861, 1.0023], images_to_decide=420,
                                             lack="faces in the hard setting")
    page = render(rs.report({"ort-int8-1g": dev}), tmp_path)
    banner = page.find("div", id="overall")[0]
    assert banner["data-verdict"] == "inconclusive" and "fail" not in banner["class"]
    assert page.find("tr", cls="device-row")[0]["class"].split()[-1] == "inconclusive"
    rows = page.find("tr", cls="gate", **{"data-verdict": "inconclusive"})
    assert len(rows) == 2 and not page.find("tr", cls="gate", **{"data-verdict": "fail"})
    words = page.words
    assert "INCONCLUSIVE" in words.upper() and "[0.9861, 1.0023]" in words
    assert "about 420 images would decide" in words and "faces in the hard setting" in words
    assert "0 fail" not in words and " fail," not in words


def test_hostile_strings_are_shown_not_run(tmp_path):
    bad_id = f"{rs.HOSTILE}-dev"
    picture = rs.write_png(tmp_path / "pr.png")
    dev = rs.device("500m_bnkps", "ort", "fp16", fail_heads=1,
                    artifacts={"PR curves": str(picture),
                               f"{rs.HOSTILE_IMG}": f"/x/{rs.HOSTILE_IMG}.png"})
    dev["levels"]["heads"]["gates"][2]["why"] = rs.HOSTILE
    dev["levels"]["heads"]["gates"][2]["subject"] = f"{rs.HOSTILE_IMG} (worst image {rs.HOSTILE})"
    dev["spec"]["variant"] = rs.HOSTILE
    doc = rs.report({bad_id: dev}, likely_causes={"devices": {bad_id: [rs.HOSTILE]}},
                    evil={"markdown": rs.HOSTILE})
    doc["meta"]["gates"] = rs.HOSTILE_IMG
    html = render_report_html(doc, tmp_path)
    page = Page(html)
    assert len(page.find("script")) == 1, "the page's own script only"
    assert not [a for t, a in page.elements if any(k.startswith("on") for k in a)]
    assert all(a["src"].startswith("data:image/") for a in page.find("img", cls="zoom"))
    assert rs.HOSTILE not in html and rs.HOSTILE_IMG not in html
    assert html.count("&lt;script&gt;window.__pwned") >= 5, "shown as text wherever it came"
    assert rs.HOSTILE in page.words and rs.HOSTILE_IMG in page.words
    csp = page.find("meta", **{"http-equiv": "Content-Security-Policy"})[0]["content"]
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp


def test_pictures_are_inlined_or_shown_missing(tmp_path):
    rs.write_png(tmp_path / "pr_a.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (tmp_path / "notes.png").write_text("not a picture")
    arts = {"PR curves": str(tmp_path / "pr_a.png"), "worst image": "gone/worst_a.png",
            "corrupt": str(tmp_path / "broken.png"), "text": "notes.png",
            "outside": "/etc/passwd"}
    doc = rs.report({"a": rs.device("1g", "ort", "fp16", fail_heads=1, artifacts=arts)})
    page = render(doc, tmp_path)
    imgs = page.find("img", cls="zoom")       # a failing device: full pictures inlined
    assert len(imgs) == 1 and imgs[0]["src"].startswith("data:image/png;base64,iVBOR")
    words = page.words
    for name, why in (("worst_a.png", "file not found beside the report"),
                      ("broken.png", "does not decode"), ("notes.png", "not a PNG or JPEG"),
                      ("passwd", "file not found beside the report")):
        assert f"missing picture: {name}" in words and why in words


def test_a_passing_devices_pictures_are_thumbnails_linking_the_full_file(tmp_path):
    """120 devices stay a light page: a passing device's pictures are small JPEGs, each a
    link to the full PNG beside the report."""
    rs.write_png(tmp_path / "pr_a.png", 1024, 768)
    doc = rs.report({"a": rs.device("1g", "ort", "fp16",
                                    artifacts={"PR curves": str(tmp_path / "pr_a.png")})})
    page = render(doc, tmp_path)
    assert not page.find("img", cls="zoom")
    thumbs = page.find("img", cls="thumb")
    assert len(thumbs) == 1 and thumbs[0]["src"].startswith("data:image/jpeg;base64,")
    assert len(thumbs[0]["src"]) < 20_000
    assert [a for a in page.find("a") if a.get("href") == "pr_a.png"]


def test_large_pictures_are_inlined_as_jpeg(tmp_path):
    rs.write_png(tmp_path / "big.png", 1024, 768)
    small = inline_picture(tmp_path, "big.png", max_bytes=1000)
    assert small.uri.startswith("data:image/jpeg;base64,")
    assert inline_picture(tmp_path, "big.png").uri.startswith("data:image/png;base64,")


def test_ap_table_and_sections(tmp_path):
    doc = rs.matrix(tmp_path, 5, pictures=False)
    doc["sections"]["decomposition"] = {"variant": "500m_bnkps", "steps": [
        {"label": "published", "dtype": "fp32", "profile": {"name": "widerface-eval"},
         "easy": 0.9, "medium": 0.88, "hard": 0.7},
        {"label": "-> threshold 0.5", "dtype": "fp32", "profile": {"name": "device-flow"},
         "easy": 0.89, "medium": 0.85, "hard": 0.6}]}
    page = render(doc, tmp_path)
    assert len(page.find("tr", **{"data-device": "ort-fp16-500m_bnkps"})) == 2  # devices, AP
    words = page.words
    assert "AP decomposition" in words and "-0.1000" in words      # hard 0.7 -> 0.6
    assert "Likely causes" in words and "fp16 rounding on score heads" in words
    assert page.find("section", id="identities") and "2.4.6" in words


def test_matrix_cells_link_to_each_device(tmp_path):
    doc = rs.matrix(tmp_path, 20, pictures=False)
    page = render(doc, tmp_path)
    links = [a for a in page.find("a", cls="v") if a.get("href", "").startswith("#dev-")]
    assert len(links) == 20
    sections = {a["id"] for a in page.find("details", cls="device")}
    assert {a["href"][1:] for a in links} == sections
    assert len(page.find("tr", cls="device-row")) == 20


def test_write_puts_report_html_beside_the_json(tmp_path):
    from scrfd_ref.conformance.gates import GateResult

    rep = ConformanceReport(meta={"gates": "g.toml"})
    rep.record("ort-fp16-1g", "heads", [GateResult("heads", "snr_db_min", "score_8", 31.2,
                                                   35.0, False, "noise")], [],
               spec={"variant": "1g", "backend": "ort", "dtype": "fp16"})
    rep.add_artifact("ort-fp16-1g", "PR curves", rs.write_png(tmp_path / "pr_x.png"))
    js, md, html = rep.write(tmp_path)
    assert html == tmp_path / "report.html"
    page = Page(html.read_text())
    assert page.find("tr", cls="device-row")[0]["data-device"] == "ort-fp16-1g"
    assert json.loads(js.read_text())["devices"]["ort-fp16-1g"]["passed"] is False
    assert len(page.find("img", cls="zoom")) == 1


def test_int8_pages(tmp_path):
    rows = [{"model": "scrfd_1g.onnx", "recipe": "fp32", "ap": {"easy": 0.9, "medium": 0.88,
             "hard": 0.7}, "ratio": {"easy": 1.0, "medium": 1.0, "hard": 1.0}, "images": 294},
            {"model": "scrfd_1g.onnx", "recipe": "<b>minmax</b>", "ap": {
                "easy": 0.89, "medium": 0.87, "hard": 0.65}, "ratio": {
                "easy": 0.98888, "medium": 0.98864, "hard": 0.92857}, "int8_mac_share": 1.0,
             "float_nodes": [], "images": 294},
            {"model": "scrfd_1g.onnx", "recipe": "default", "ap": {
                "easy": 0.9, "medium": 0.879, "hard": 0.69}, "ratio": {
                "easy": 1.0, "medium": 0.99886, "hard": 0.98571}, "int8_mac_share": 0.93,
             "float_nodes": ["Conv_0"], "images": 294}]
    page = Page(render_int8_ap_html(rows))
    assert [a["data-recipe"] for a in page.find("tr") if "data-recipe" in a] == [
        "fp32", "<b>minmax</b>", "default"]
    assert "0.9857" in page.words and "93.0%" in page.words and "Conv_0" in page.words
    assert not page.find("b", cls="minmax") and "<b>minmax</b>" in page.words
    record = {"settings": {"calibrate_method": "Percentile", "percentile": 99.999,
                           "per_channel": True, "input_size": [640, 640]},
              "int8_mac_share": 0.93, "sensitivity": [
                  {"name": "Conv_0", "lost_db": 6.5, "out_sqnr_db": 30.1, "weight_sqnr_db": 40.0,
                   "macs_share": 0.05, "int8": False}],
              "search": {"float_nodes": ["Conv_0"], "target": 0.99, "met": True, "chosen": 1,
                         "steps": [{"float_nodes": [], "agreement": 0.97, "int8_mac_share": 1.0},
                                   {"float_nodes": ["Conv_0"], "agreement": 0.995,
                                    "int8_mac_share": 0.93}]}}
    page = Page(render_quantize_html(record, "scrfd_1g.onnx"))
    assert "Percentile 99.999" in page.words and "0.9950" in page.words
    assert len(page.find("tr", cls="chosen")) == 1 and "6.50" in page.words


# ----------------------------------------------------------------------------- browser


@pytest.mark.acceptance
@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_report_opens_in_headless_chromium(tmp_path, dark):
    import browser

    doc = rs.matrix(tmp_path, 20)
    bad = f"{rs.HOSTILE}{rs.HOSTILE_IMG}"
    dev = rs.device("500m_bnkps", "gpu", "int8", fail_heads=1,
                    artifacts={"PR curves": str(rs.write_png(tmp_path / "pr_evil.png")),
                               "worst image": f"{rs.HOSTILE_IMG}.png"})
    dev["levels"]["heads"]["gates"][2]["why"] = bad
    doc["devices"][bad] = dev
    page = tmp_path / "report.html"
    page.write_text(render_report_html(doc, tmp_path))
    with browser.chromium(dark=dark) as driver:
        info = browser.open_page(driver, page)
        shot = browser.screenshot(driver, tmp_path / f"report-{'dark' if dark else 'light'}.png")
        first = driver.find_element("css selector", "img.zoom")
        driver.execute_script("arguments[0].scrollIntoView()", first)
        first.click()
        lightbox = driver.execute_script(
            "const d = document.getElementById('lightbox');"
            "return [d.open, d.querySelector('img').naturalWidth];")
    assert info["console"] == [], info["console"]
    assert info["alert"] is None and info["pwned"] is None and info["scripts"] == 1
    assert sorted(info["device_rows"]) == sorted(doc["devices"])
    assert sorted(info["device_sections"]) == sorted(doc["devices"])
    failed = {f.split(" ")[-1] for f in info["failed_gates"]}
    assert {"cosine_min", "snr_db_min", "within_tol_min", "recall_min"} <= failed
    assert len(info["failed_gates"]) == 3 * 11 + 3
    assert len(info["images"]) == 41 and all(i["width"] > 0 and i["height"] > 0
                                             for i in info["images"])
    assert any(f"{rs.HOSTILE_IMG}.png" in m for m in info["missing"])
    assert info["width"] <= 1280, "usable at 1280 px: no horizontal scrolling"
    assert lightbox[0] is True and lightbox[1] > 0, "click to enlarge"
    assert shot.stat().st_size > 10_000


# ----------------------------------------------------------------------------- pytest-html


def test_pytest_html_summary_and_extras_escape_and_link(tmp_path):
    from scrfd_ref.pytest_plugin.html_extras import MAX_ROWS, level_extras_html, summary_html
    from scrfd_ref.report.format import device_anchor

    bad = f"{rs.HOSTILE}-dev"
    devices = {bad: rs.device("1g", "ort", "fp16", fail_heads=9),
               "ort-int8-1g": rs.device("1g", "ort", "int8")}
    html = summary_html(devices, "rep/report.html")
    page = Page(html)
    assert not page.find("script") and rs.HOSTILE in page.words
    links = [a["href"] for a in page.find("a")]
    assert f"rep/report.html#{device_anchor(bad)}" in links and "rep/report.html" in links
    assert "fail" in page.words and "pass" in page.words
    assert "Add --report DIR" in Page(summary_html(devices, None)).words
    assert summary_html({}, None) == ""
    test = devices[bad]["levels"]["heads"]["test"]
    extras = Page(level_extras_html(bad, devices[bad], test))
    assert f"{bad} heads : fail (18 of 45 gates passed)" in extras.words
    assert len(extras.find("li")) == MAX_ROWS + 1 and "15 more in report.html" in extras.words
    assert "31.1" in extras.words and not extras.find("script")


@pytest.mark.parametrize("html_active", [True, False])
def test_pytest_html_hooks_register_only_with_pytest_html(html_active):
    """Without pytest-html (absent or ``-p no:html``) its hooks would be unknown to pytest
    (a validation error): the plugin registers them only when it is active."""
    from types import SimpleNamespace

    from scrfd_ref.pytest_plugin import options as plugin

    registered = []
    manager = SimpleNamespace(
        hasplugin=lambda name: name == "html" and html_active,
        has_plugin=lambda name: False,
        register=lambda module, name: registered.append(name))
    hook = SimpleNamespace(pytest_html_results_summary=object()) if html_active else \
        SimpleNamespace()
    config = SimpleNamespace(pluginmanager=manager, hook=hook,
                             addinivalue_line=lambda *a: None)
    plugin.pytest_configure(config)
    assert ("scrfd_ref.pytest_plugin.html_extras" in registered) == html_active
    assert "scrfd_ref.pytest_plugin.session" in registered


def test_a_gate_that_does_not_apply_is_not_counted_as_a_pass():
    """The landmark gate of a model without landmark heads judged nothing: the level says
    "3 of 4 passed", and the row is shown as not judged."""
    from scrfd_ref.report.view import level_view

    rec = rs.device("1g", "ort", "fp16")
    lv = level_view("detections", rec["levels"]["detections"])
    rows = [r for g in lv["groups"] for r in g["rows"]]
    na = [r for r in rows if r["gate"] == "landmark_err_px_max"]
    assert na and na[0]["verdict"] == "none" and na[0]["note"].startswith("not applicable")
    assert lv["counts"]["pass"] == lv["rows"] - 1
