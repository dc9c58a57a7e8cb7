"""Command line ``scrfd-ref``: argument parsing only; every command calls the package.

Exit statuses follow ``../shared/docs/conventions.md``: 0 done, 1 a problem found in the
data or a failed check, 2 usage (bad option value, wrong kind of path, missing file named
on the command line, an output that is one of the inputs). Every non-zero exit prints one
line on stderr naming the file or option and what to do (a list of problems prints one
line each under it); a Python traceback only with ``--debug`` (before or after the
command) or ``SCRFD_DEBUG=1``. Sub-commands defined in other modules register themselves
through a ``register(subparsers)`` function listed in :data:`COMMAND_MODULES`.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Sequence

from scrfd_ref import __version__
from scrfd_ref.cli.args import (
    Parser,
    common_options,
)
from scrfd_ref.core.errors import (
    ScrfdRefError,
    exit_code_of,
)
from scrfd_ref.formats.files import (
    display,
)

#: modules that add sub-commands with ``register(subparsers)``
COMMAND_MODULES: tuple[str, ...] = ("scrfd_ref.cli.detect", "scrfd_ref.cli.wider",
                                    "scrfd_ref.cli.device",
                                    "scrfd_ref.cli.config", "scrfd_ref.cli.int8",
                                    "scrfd_ref.cli.diagnose", "scrfd_ref.cli.perf",
                                    "scrfd_ref.cli.gates", "scrfd_ref.cli.report",
                                    "scrfd_ref.cli.localize")

DEBUG_ENV = "SCRFD_DEBUG"
#: values of $SCRFD_DEBUG that turn tracebacks on (``no``, ``0``, ``false`` do not)
DEBUG_ON = ("1", "true", "yes", "on")


def build_parser() -> argparse.ArgumentParser:
    """The ``scrfd-ref`` argument parser with every sub-command."""
    parser = Parser(
        prog="scrfd-ref", parents=[common_options(after_command=False)],
        description="Reference, conformance checks and benchmarks for SCRFD face detectors. "
                    "Data (models, WIDER FACE, images) is read from --data-dir / $SCRFD_DATA "
                    "(default ../shared/data). Exit status: 0 done, 1 a problem found in the "
                    "data or a failed check, 2 a usage error; --debug shows tracebacks.")
    parser.add_argument("--version", action="version", version=f"scrfd-ref {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=Parser)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _debug_wanted(argv: Sequence[str]) -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in DEBUG_ON or "--debug" in argv


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scrfd-ref`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # pragma: no cover - detached stream
                pass
    debug = _debug_wanted(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version (0) and usage errors (2)
        return int(exc.code or 0)
    command = getattr(args, "command", "?")
    if getattr(args, "max_pixels", None):
        from scrfd_ref.formats.images import set_max_pixels

        set_max_pixels(args.max_pixels)
    try:
        return int(args.func(args) or 0)
    except ScrfdRefError as exc:
        if debug:
            traceback.print_exc()
        print(f"scrfd-ref {command}: error: {exc}", file=sys.stderr)
        return exit_code_of(exc)
    except KeyboardInterrupt:
        print(f"scrfd-ref {command}: interrupted (files being written were removed; re-run to "
              "resume)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except MemoryError:
        if debug:
            traceback.print_exc()
        print(f"scrfd-ref {command}: error: out of memory (a smaller --batch, --input-size or "
              "image?)", file=sys.stderr)
        return 1
    except OSError as exc:
        if debug:
            traceback.print_exc()
        where = f"{display(exc.filename)}: " if exc.filename else ""
        print(f"scrfd-ref {command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: one line unless --debug
        if debug:
            traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        print(f"scrfd-ref {command}: internal error: {type(exc).__name__}: {first} (a bug in "
              "scrfd-ref: re-run with --debug and report the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
