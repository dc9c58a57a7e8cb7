"""Exceptions raised by scrfd-ref, and the exit status each one means.

Every error a user can cause with bad input derives from :class:`ScrfdRefError`, so the
CLI can print one clean line instead of a traceback. Messages name the file (or the
option, or the array) and say what was wrong and what to do.

Exit statuses (``../shared/docs/conventions.md``), carried by each class as
``exit_code``:

- **1**: the command ran and found a problem in the data or a failed check
  (:class:`InputError`, :class:`LayoutError`, :class:`ManifestError`).
- **2**: usage: the command could not start as asked (:class:`UsageError`: a bad option
  value, a path of the wrong kind, an output that is one of the inputs;
  :class:`DataMissingError`: a file that is not there; :class:`BackendUnavailable`).
"""
from __future__ import annotations

from typing import Sequence

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2


class ScrfdRefError(Exception):
    """Base class of every error scrfd-ref raises on bad input or missing data."""

    #: process exit status the CLI uses for this error
    exit_code: int = EXIT_CHECK_FAILED


class InputError(ScrfdRefError, ValueError):
    """A file or array given to scrfd-ref is malformed (wrong shape, corrupt, unreadable)."""


class UsageError(InputError):
    """The command cannot start as asked: a bad option value, a path of the wrong kind
    (a folder where a file is expected), an output path that is one of the inputs, a
    resume into a folder written by another run."""

    exit_code = EXIT_USAGE


class LayoutError(InputError):
    """Model outputs do not fit any SCRFD layout (wrong count, shapes or values)."""


class ManifestError(InputError):
    """A run manifest (``scrfd_dump.json``, ``scrfd_run.json``) is malformed, or says the
    run is incomplete."""


class DataMissingError(ScrfdRefError, FileNotFoundError):
    """A data file (model weights, ground truth, images) is not where it was looked for."""

    exit_code = EXIT_USAGE


class BackendUnavailable(ScrfdRefError):
    """A backend (or a backend x dtype combination) cannot run here: missing library,
    provider or GPU. The message is a one-line reason suitable for a pytest skip."""

    exit_code = EXIT_USAGE


#: problems listed in one error before the rest are only counted
MAX_LISTED = 20


def problem_list(problems: "list[str] | tuple[str, ...]", what: str,
                 cls: type = None) -> "InputError":  # type: ignore[assignment]
    """One error listing ``problems`` (the first :data:`MAX_LISTED`, then a count)."""
    shown = "\n  ".join(problems[:MAX_LISTED])
    more = (f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED
            else "")
    return (cls or InputError)(f"{what}: {len(problems)} problem(s):\n  {shown}{more}")


def exit_code_of(exc: BaseException) -> int:
    """The exit status for ``exc`` (1 for anything that is not a :class:`ScrfdRefError`)."""
    return int(getattr(exc, "exit_code", EXIT_CHECK_FAILED))


def did_you_mean(word: str, choices: "Sequence[str]", *, list_all: bool = True) -> str:
    """``; did you mean X?`` for the closest of ``choices`` to ``word``; else the list of
    valid names (``list_all``) or nothing."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]}?"
    return f" (valid: {', '.join(choices)})" if list_all else ""
