"""Sub-command ``report``: ``report diff OLD NEW`` compares two conformance reports.

OLD and NEW are report folders (``pytest conformance/ --report DIR``) or their
``report.json``. The differences are printed (verdict changes, devices added or removed,
gates that moved beyond their interval, gates-file and option changes); ``--html FILE``
writes them as a page in the report's style. Exit 1 when a verdict got worse (a
regression), 0 otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys

from scrfd_ref.cli.args import add_command
from scrfd_ref.formats.files import display, input_file, output_file, write_text


def cmd_report_diff(args: argparse.Namespace) -> int:
    """Compare two conformance reports (exit 1 when a verdict got worse).

    List what changed between OLD and NEW: the session and device verdicts, devices added
    or removed, gate values that moved beyond their interval, the gates file and the
    verdict-changing options.
    """
    from pathlib import Path

    from scrfd_ref.report.diff import diff_reports, load_report, render_diff_html

    paths = []
    for path, name in ((args.old, "OLD"), (args.new, "NEW")):
        p = Path(path)
        paths.append(p if p.is_dir() else input_file(p, name, "report.json"))
    if args.html:
        output_file(args.html, "--html", inputs=paths)
    if args.json:
        output_file(args.json, "--json", inputs=paths)
    docs = [load_report(p, name) for p, name in zip(paths, ("OLD", "NEW"))]
    diff = diff_reports(*docs, old_name=display(paths[0]), new_name=display(paths[1]))
    print("\n".join(diff.lines()))
    if args.html:
        write_text(Path(args.html), render_diff_html(diff))
        print(f"HTML -> {display(args.html)}")
    if args.json:
        write_text(Path(args.json), json.dumps(diff.to_dict(), indent=1) + "\n")
        print(f"JSON -> {display(args.json)}")
    if diff.regressed:
        worse = sum(1 for c in diff.changes if c.worse)
        print(f"scrfd-ref report diff: regressed: {worse} change(s) for the worse from OLD to "
              "NEW (listed above)", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``report diff``."""
    p = add_command(sub, "report", help="Compare two conformance reports",
                    description="Conformance reports: 'report diff OLD NEW' lists what changed "
                                "between two runs (verdicts, devices, gates beyond their "
                                "interval, gates file, options); exit 1 when a verdict got "
                                "worse.")
    rsub = p.add_subparsers(dest="report_command", metavar="ACTION", required=True,
                            help="diff: compare two reports")
    d = add_command(rsub, "diff", cmd_report_diff)
    d.add_argument("old", metavar="OLD", help="the earlier report folder or its report.json")
    d.add_argument("new", metavar="NEW", help="the later report folder or its report.json")
    d.add_argument("--html", metavar="FILE", default=None, help="also write the diff as a page")
    d.add_argument("--json", metavar="FILE", default=None, help="also write the diff as JSON")
