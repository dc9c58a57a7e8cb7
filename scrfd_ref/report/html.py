"""``report.html``: the conformance report as one self-contained web page.

Rendered from the ``report.json`` document alone (:func:`render_report_html`), so the page
and the JSON never disagree, with the Jinja2 templates shipped in
``scrfd_ref/report/templates/`` (every value autoescaped). Pictures the JSON names are
inlined as ``data:`` URIs (:func:`scrfd_ref.report.inline.inline_picture`: a missing one
is shown as missing). The page loads nothing: its Content-Security-Policy forbids every
request and every script but its own few lines (the picture lightbox), so a hostile string
in a device id, image name or reason is shown, never run.

Verdicts: a gate row, level or device carries ``"verdict"`` (``pass`` / ``fail`` /
``inconclusive``) once the evidence issue writes it; without it the verdict comes from the
boolean ``"passed"``. Numbers are rounded to what their gate resolves
(:func:`format_number`).
"""
from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from scrfd_ref import __version__
from scrfd_ref.report.format import format_number
from scrfd_ref.report.view import report_view

#: the page's only script: the picture lightbox and the expand / collapse buttons
SCRIPT = """
(function () {
  var box = document.getElementById('lightbox');
  document.addEventListener('click', function (e) {
    var img = e.target.closest && e.target.closest('img.zoom');
    if (img) {
      box.querySelector('img').src = img.src;
      box.querySelector('figcaption').textContent = img.alt;
      box.showModal();
      return;
    }
    if (e.target.closest && e.target.closest('#lightbox')) { box.close(); return; }
    var b = e.target.closest && e.target.closest('button[data-open]');
    if (b) {
      var open = b.getAttribute('data-open') === '1';
      document.querySelectorAll('details.fold').forEach(function (d) { d.open = open; });
    }
  });
  // printing shows every fold: a closed one would not print its gates
  window.addEventListener('beforeprint', function () {
    document.querySelectorAll('details').forEach(function (d) { d.open = true; });
  });
  // filter the devices by verdict, backend, dtype, variant and a search of their names
  var bar = document.getElementById('filters');
  if (!bar) return;
  var rows = Array.prototype.slice.call(document.querySelectorAll('tr.device-row'));
  function apply() {
    var q = document.getElementById('f-search').value.toLowerCase(), want = {}, shown = {}, n = 0;
    bar.querySelectorAll('select').forEach(function (s) { if (s.value) want[s.getAttribute('data-key')] = s.value; });
    rows.forEach(function (r) {
      var ok = r.getAttribute('data-device').toLowerCase().indexOf(q) >= 0;
      for (var k in want) { if (r.getAttribute('data-' + k) !== want[k]) ok = false; }
      r.hidden = !ok; shown[r.getAttribute('data-device')] = ok; if (ok) n++;
    });
    document.querySelectorAll('details.device, .devpic, table.ap tr[data-device], #causes h3').forEach(function (e) {
      var id = e.getAttribute('data-device');
      if (id !== null && id in shown) e.hidden = !shown[id];
    });
    document.getElementById('f-count').textContent = n + ' of ' + rows.length + ' devices';
  }
  bar.addEventListener('input', apply);
  bar.addEventListener('change', apply);
})();
"""


# ----------------------------------------------------------------------------- the page


@lru_cache(maxsize=1)
def environment():
    """The Jinja2 environment of the report templates (autoescape on, strict)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("scrfd_ref.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals.update(fmt=format_number, version=__version__)
    return env


def page_globals() -> dict[str, Any]:
    """What every page's base template needs: the script and its CSP hash."""
    from markupsafe import Markup

    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    return {"script": Markup(SCRIPT), "script_hash": f"sha256-{digest}"}


def render_template(name: str, **context: Any) -> str:
    """Render one of the shipped templates with the page globals."""
    return environment().get_template(name).render(**page_globals(), **context)


def render_report_html(doc: Mapping[str, Any], folder: str | Path) -> str:
    """``report.html`` for the ``report.json`` document ``doc`` whose pictures lie in
    ``folder``."""
    return render_template("report.html.j2", **report_view(doc, Path(folder)))
