"""pytest-html integration: ``pytest conformance/ --html=x.html`` carries the verdicts.

Registered by :func:`scrfd_ref.pytest_plugin.options.pytest_configure` only when pytest-html
is installed and active (a convenience, never a dependency). It adds:

- a "verdict" column: the verdict of the level(s) each conformance test judged;
- per test, in its extras: that level's verdict with its failed and inconclusive gate rows,
  and a link to the device's section of ``report.html`` (with ``--report DIR``);
- in the summary: every device's verdict, and a link to ``report.html``.

The verdict words and colours are those of report.html
(:mod:`scrfd_ref.report.html`): inconclusive is never called a failure.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import pytest
from markupsafe import escape

from scrfd_ref.pytest_plugin.keys import REPORT_KEY
from scrfd_ref.report.format import (
    device_anchor,
    device_verdict,
    format_limit,
    format_number,
    level_verdict,
    row_verdict,
)

_COLOUR = {"pass": "#1a7f37", "fail": "#cf222e", "inconclusive": "#9a6700", "none": "#59636e"}
_WORD = {"pass": "pass", "fail": "fail", "inconclusive": "inconclusive", "none": "not judged"}
#: gate rows listed per test in its extras (the rest are in report.html)
MAX_ROWS = 12


def badge(verdict: str) -> str:
    """The verdict as a small coloured word (HTML)."""
    return (f'<b style="color:{_COLOUR.get(verdict, "#59636e")}">'
            f'{escape(_WORD.get(verdict, verdict))}</b>')


def report_link(config: pytest.Config) -> str | None:
    """``report.html`` relative to the ``--html`` file (None without ``--report``)."""
    folder, html = config.getoption("--report"), config.getoption("htmlpath", None)
    if not folder or not html:
        return None
    target = Path(folder).resolve() / "report.html"
    return Path(os.path.relpath(target, Path(html).resolve().parent)).as_posix()


def _value(row: Mapping[str, Any]) -> str:
    return row.get("note") or format_number(row.get("value"), row.get("gate", ""),
                                            row.get("limit"))


def level_extras_html(device_id: str, record: Mapping[str, Any], nodeid: str) -> str:
    """The levels of ``record`` judged by test ``nodeid``: verdict and the rows that did
    not pass (HTML, escaped)."""
    parts = []
    for name, level in (record.get("levels") or {}).items():
        if level.get("test") not in (None, nodeid):
            continue
        v = level_verdict(level)
        rows = [r for r in level.get("gates") or [] if row_verdict(r) != "pass"]
        parts.append(f"<p>{escape(device_id)} <b>{escape(name)}</b>: {badge(v)} "
                     f"({len(level.get('gates') or []) - len(rows)} of "
                     f"{len(level.get('gates') or [])} gates passed)</p>")
        if rows:
            items = "".join(
                f"<li>{badge(row_verdict(r))} {escape(r.get('gate', '?'))} on "
                f"{escape(r.get('subject', ''))}: {escape(_value(r))}"
                f" (limit {escape(format_limit(r.get('limit')))})</li>"
                for r in rows[:MAX_ROWS])
            more = (f"<li>{len(rows) - MAX_ROWS} more in report.html</li>"
                    if len(rows) > MAX_ROWS else "")
            parts.append(f"<ul>{items}{more}</ul>")
    return "".join(parts)


def summary_html(devices: Mapping[str, Mapping[str, Any]], link: str | None) -> str:
    """Every device's verdict, each linking to its section of report.html (HTML)."""
    if not devices:
        return ""
    rows = []
    for device_id, rec in sorted(devices.items()):
        v = device_verdict(rec)
        name = escape(device_id)
        if link:
            name = f'<a href="{escape(link)}#{escape(device_anchor(device_id))}">{name}</a>'
        rows.append(f"<tr><td>{name}</td><td>{badge(v)}</td></tr>")
    where = (f'<p>Full conformance report: <a href="{escape(link)}">{escape(link)}</a> '
             "(gates by level and head, AP, pictures, likely causes)</p>" if link else
             "<p>Add <code>--report DIR</code> for the full report.html.</p>")
    return (f"<h2>scrfd-ref conformance</h2>{where}<table><thead><tr><th>device</th>"
            f"<th>verdict</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _device_id(item: pytest.Item) -> str | None:
    spec = getattr(getattr(item, "callspec", None), "params", {}).get("device_spec")
    return getattr(spec, "id", None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attach the judged level's verdict (and a link to report.html) to the test."""
    outcome = yield
    rep = outcome.get_result()
    device_id = _device_id(item)
    report = item.config.stash.get(REPORT_KEY, None)
    if rep.when != "call" or device_id is None or report is None:
        return
    record = report.devices.get(device_id)
    if not record:
        return
    from pytest_html import extras

    judged = {k: lv for k, lv in record.get("levels", {}).items() if lv.get("test") == item.nodeid}
    if judged:
        rep.user_properties += [("scrfd_verdict", device_verdict({"levels": judged})),
                                ("scrfd_levels", ", ".join(judged))]
    rep.user_properties.append(("scrfd_device", device_id))
    added = [extras.html(level_extras_html(device_id, {"levels": judged}, item.nodeid))]
    link = report_link(item.config)
    if link:
        added.append(extras.url(f"{link}#{device_anchor(device_id)}",
                                name=f"report.html: {device_id}"))
    rep.extras = [*getattr(rep, "extras", []), *added]


def pytest_html_results_table_header(cells: list[str]) -> None:
    """A "verdict" column after the test id: the conformance level a test judged."""
    cells.insert(2, '<th class="sortable" data-column-type="scrfd-verdict">verdict</th>')


def pytest_html_results_table_row(report: Any, cells: list[str]) -> None:
    """The verdict of the level(s) this test judged for its device."""
    props = dict(getattr(report, "user_properties", ()) or ())
    verdict, levels = props.get("scrfd_verdict"), props.get("scrfd_levels")
    text = f"{badge(verdict)} {escape(levels)}" if verdict and levels else ""
    cells.insert(2, f'<td class="col-scrfd-verdict">{text}</td>')


def pytest_html_results_summary(prefix: list[str], summary: list[str], postfix: list[str],
                                session: pytest.Session) -> None:
    """Every device's verdict and the link to report.html, above the results."""
    report = session.config.stash.get(REPORT_KEY, None)
    if report is None:
        return
    if report.session:       # the session verdict, the same words as every other report
        s = report.session
        colour = _COLOUR["pass"] if s.get("verdict") == "PASS" else _COLOUR["fail"]
        prefix.append(f'<p id="scrfd-session-verdict" data-verdict="{escape(s.get("verdict"))}">'
                      f'<b style="color:{colour}">{escape(s.get("headline", ""))}</b>: '
                      f'{escape(s.get("reason", ""))}</p>')
    html = summary_html(report.to_dict()["devices"], report_link(session.config))
    if html:
        prefix.append(html)
