"""report: the documents a run leaves: report.json / report.md and the conformance report
object (``document``), report.html and the int8 pages rendered from Jinja2 templates
(``html``, ``html_int8``, ``templates/``) over a view model built from the JSON alone
(``view``), value formatting and verdict colours (``format``) and pictures inlined as data
URIs (``inline``). May import every layer up to ``diagnose``; never the pytest plugin or CLI."""
