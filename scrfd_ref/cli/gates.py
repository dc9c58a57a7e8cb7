"""Sub-command ``gates``: validate a gates file, list the declared gates.

``scrfd-ref gates check FILE`` reads a gates TOML file against the declaration of every
gate in :mod:`scrfd_ref.conformance.gates` without running anything: every problem (unknown section
or gate with the closest valid name, a value of the wrong type or out of range, a missing
justification) is listed, exit 1; a file that leaves gates out is fine, and the gates
taken from the defaults are named. A valid file is compared with the shipped one: every limit
that differs is listed with the shipped and the used value, looser or tighter
(:mod:`scrfd_ref.conformance.gates_disclosure`). ``scrfd-ref gates list`` prints the declaration.
"""
from __future__ import annotations

import argparse
import sys

from scrfd_ref.cli.args import add_command
from scrfd_ref.formats.files import display, input_file


def cmd_gates_check(args: argparse.Namespace) -> int:
    """Validate a gates file (exit 1 on a problem).

    Validate a gates TOML file against the declaration; print every problem, or ok and
    the gates taken from the defaults.
    """
    from scrfd_ref.conformance.gates import DTYPES, Gates, declared
    from scrfd_ref.core.errors import InputError

    path = input_file(args.file, "FILE", "gates file")
    try:
        gates = Gates.load(path)
    except InputError as exc:
        print(f"scrfd-ref gates check: error: {exc}", file=sys.stderr)
        return 1
    from scrfd_ref.conformance.gates_disclosure import disclose

    bounds = sum(1 for g in declared() if g.kind != "param") * len(DTYPES)
    disclosure = disclose(gates)
    print(f"{display(path)}: valid ({bounds} bounds and their parameters for "
          f"{', '.join(DTYPES)}); sha256 {disclosure.sha256[:16]}; {disclosure.banner()}")
    for change in disclosure.changes:
        print(f"  {change.line()}")
    notice = gates.notice()
    if notice:
        print(f"notice: {notice}")
    return 0


def cmd_gates_list(args: argparse.Namespace) -> int:
    """Print every declared gate and its default values.

    Print the declaration of every gate: level, name, bound, default value per dtype and
    what it reads.
    """
    from scrfd_ref.conformance.gates import DTYPES, Gates, declared

    defaults = Gates.load()
    print(f"{'level':<10} {'gate':<22} {'kind':<5} " + " ".join(f"{d:>9}" for d in DTYPES)
          + "  reads")
    for g in declared():
        vals = " ".join(f"{defaults.value(d, g.level, g.name):>9g}" for d in DTYPES)
        print(f"{g.level:<10} {g.name:<22} {g.kind + ' ' + g.op if g.kind != 'param' else 'param':<5} "
              f"{vals}  {g.what}")
    print(f"defaults: {display(defaults.source)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``gates check`` and ``gates list``."""
    p = add_command(sub, "gates", help="Check a gates file, list the declared gates",
                    description="Acceptance gates: 'gates check FILE' validates a gates TOML "
                                "file against the declaration of every gate (unknown names "
                                "with the closest valid one, wrong types, missing "
                                "justifications; exit 1 on any problem) without running "
                                "anything; 'gates list' prints every gate with its defaults.")
    gsub = p.add_subparsers(dest="gates_command", metavar="ACTION", required=True,
                            help="check: validate a gates file; list: print the declaration")
    c = add_command(gsub, "check", cmd_gates_check)
    c.add_argument("file", metavar="FILE", help="gates TOML file to check")
    add_command(gsub, "list", cmd_gates_list)
