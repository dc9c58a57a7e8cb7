"""``scrfd-ref report diff OLD NEW``: two reports side by side. Verdict changes (and which
are regressions), devices added or removed, gate values that moved beyond their interval,
gates-file and option changes, as text, JSON and an HTML page; exit 1 on a regression."""
from __future__ import annotations

import copy
import json

import report_synth as rs

from scrfd_ref.cli.app import main
from scrfd_ref.report.diff import diff_reports


def _doc(**session):
    doc = rs.report({"ort-fp16-1g": rs.device("1g", "ort", "fp16"),
                     "ort-int8-1g": rs.device("1g", "ort", "int8")})
    doc["session"] = {"verdict": "PASS", **session}
    doc["meta"]["gates_disclosure"] = {"sha256": "a" * 64, "changes": []}
    doc["meta"]["run"] = {"verdict_options": {}}
    return doc


def test_identical_reports_have_no_difference():
    d = diff_reports(_doc(), _doc())
    assert d.changes == () and not d.regressed
    assert d.lines()[-1] == "no difference in verdicts, devices, gates or options"


def test_every_kind_of_change_is_listed_and_a_worse_verdict_is_a_regression():
    old, new = _doc(), _doc(verdict="FAIL")
    new["devices"]["ort-int8-1g"] = rs.device("1g", "ort", "int8", fail_heads=2)
    del new["devices"]["ort-fp16-1g"]
    new["devices"]["openvino-int8-1g"] = rs.device("1g", "openvino", "int8")
    new["meta"]["gates_disclosure"] = {"sha256": "b" * 64, "changes": [
        {"gate": "int8.heads.snr_db_min", "shipped": 8.0, "used": 2.0, "direction": "looser"}]}
    new["meta"]["run"]["verdict_options"] = {"--accept-inconclusive": True}
    d = diff_reports(old, new)
    kinds = [c.kind for c in d.changes]
    assert {"session", "device", "removed", "added", "gate", "gates-file", "option"} <= set(kinds)
    assert d.regressed
    worse = {c.subject for c in d.changes if c.worse}
    assert "verdict" in worse and "ort-int8-1g" in worse
    assert any(c.subject == "int8.heads.snr_db_min" and (c.old, c.new) == ("shipped", "2.0")
               for c in d.changes)


def test_an_ap_value_outside_the_old_interval_is_listed_though_both_pass():
    old = _doc()
    rec = old["devices"]["ort-fp16-1g"]["levels"]["ap"]["gates"][0]
    rec["interval"] = [0.998, 1.001]
    rec["value"] = 0.9995
    new = copy.deepcopy(old)
    new["devices"]["ort-fp16-1g"]["levels"]["ap"]["gates"][0]["value"] = 1.004
    d = diff_reports(old, new)
    gate = [c for c in d.changes if c.kind == "gate"]
    assert len(gate) == 1 and "beyond its interval" in gate[0].subject and not gate[0].worse


def test_the_command_writes_text_json_and_html_and_exits_1_on_a_regression(tmp_path, capsys):
    for name, doc in (("old", _doc()), ("new", _doc(verdict="ERROR"))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(doc))
    rc = main(["report", "diff", str(tmp_path / "old"), str(tmp_path / "new" / "report.json"),
               "--html", str(tmp_path / "d.html"), "--json", str(tmp_path / "d.json")])
    out = capsys.readouterr().out
    assert rc == 1 and "! session: verdict: PASS -> ERROR" in out
    assert json.loads((tmp_path / "d.json").read_text())["regressed"] is True
    html = (tmp_path / "d.html").read_text()
    assert "REGRESSED" in html and 'data-kind="session"' in html
    assert main(["report", "diff", str(tmp_path / "old"), str(tmp_path / "old")]) == 0


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notjson.json").write_text("{")
    (tmp_path / "other.json").write_text("[]")
    for argv, rc, msg in (
            ([str(tmp_path / "none"), str(tmp_path / "none")], 2, "OLD .*none: report.json not found"),
            ([str(tmp_path / "empty"), str(tmp_path / "empty")], 2, "OLD .*empty: no report.json there"),
            ([str(tmp_path / "notjson.json"), str(tmp_path / "notjson.json")], 1,
             "not a readable report.json"),
            ([str(tmp_path / "other.json"), str(tmp_path / "other.json")], 1,
             "not a scrfd-ref report.json"),
            # never writes onto its own input
            ([str(tmp_path / "other.json"), str(tmp_path / "notjson.json"), "--html",
              str(tmp_path / "other.json")], 2, "--html .*other.json: is one of the command's "
             "inputs")):
        assert main(["report", "diff", *argv]) == rc, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and __import__("re").search(msg, err[0]), err


def test_unmeasured_gates_as_report_json_writes_them_compare_without_error(tmp_path, capsys):
    """Issue 33's campaign: report.json stores an unmeasured value as the string "nan";
    every real report with one crashed ``report diff`` (a float compared with a str)."""
    old = _doc()
    gate = old["devices"]["ort-fp16-1g"]["levels"]["ap"]["gates"][0]
    gate["value"], gate["interval"] = 0.999, ["nan", "nan"]   # a value without an interval
    other = old["devices"]["ort-int8-1g"]["levels"]["ap"]["gates"][0]
    other["value"], other["interval"] = "nan", ["nan", "nan"]  # nothing measured at all
    new = copy.deepcopy(old)
    new["devices"]["ort-fp16-1g"]["levels"]["ap"]["gates"][0]["interval"] = [0.99, 1.01]
    assert diff_reports(old, old).changes == () and not diff_reports(old, new).regressed
    (tmp_path / "a.json").write_text(json.dumps(old))
    assert main(["report", "diff", str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0
    assert capsys.readouterr().err == ""


def test_a_regression_says_so_on_stderr_and_the_page_stays_out_of_the_inputs(tmp_path, capsys):
    for name, doc in (("old", _doc()), ("new", _doc(verdict="ERROR"))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(doc))
    assert main(["report", "diff", str(tmp_path / "old"), str(tmp_path / "new")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["scrfd-ref report diff: regressed: 1 change(s) for the worse from OLD to NEW "
                   "(listed above)"]
    assert main(["report", "diff", str(tmp_path / "old"), str(tmp_path / "new"), "--html",
                 str(tmp_path / "old" / "diff.html")]) == 2
    assert "--html" in capsys.readouterr().err and not (tmp_path / "old" / "diff.html").exists()


def test_reports_that_cannot_be_compared_are_refused_naming_why(tmp_path, capsys):
    import re

    no_session = _doc()
    del no_session["session"]
    newer = _doc()
    newer["meta"]["report_format"] = 999
    lying = _doc()   # says PASS, but one of its devices failed
    lying["devices"]["ort-int8-1g"] = rs.device("1g", "ort", "int8", fail_heads=2)
    lying_session = _doc(devices=[{"device": "ort-int8-1g", "state": "fail"}])
    for doc, msg in ((no_session, r"no session verdict"),
                     (lying_session, r"says PASS but device ort-int8-1g is fail"),
                     (newer, r"report format 999, but this scrfd-ref reads 1\.\.1"),
                     (lying, r"says PASS but device ort-int8-1g is fail: the verdict "
                             r"contradicts the file's own devices")):
        (tmp_path / "r.json").write_text(json.dumps(doc))
        (tmp_path / "ok.json").write_text(json.dumps(_doc()))
        assert main(["report", "diff", str(tmp_path / "ok.json"), str(tmp_path / "r.json")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.search(r"NEW .*r\.json: " + msg, err[0]), err
