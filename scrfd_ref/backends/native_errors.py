"""What a native runtime (OpenVINO, its protobuf) says, made into one clean line.

C++ libraries print on file descriptor 2 directly (``libprotobuf ERROR ...``) and raise
exceptions whose first line is a source location (``Exception from
src/inference/src/cpp/core.cpp:84:``). :func:`captured_native_stderr` keeps their lines off
the user's terminal while a call runs and hands them back; :func:`native_reason` picks the
line of an exception (or of those captured lines) that says what is wrong.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence

_LOCATION = re.compile(r"^(Exception from |Check '.*' failed at )|\.(cpp|hpp|cc|h):\d+:?$")
_TAG = re.compile(r"^\[[^\]]*\]\s*")


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[list[str]]:
    """Send file descriptor 2 to a temporary file while the block runs; the list it
    yields holds the captured lines afterwards (Python's ``sys.stderr`` is flushed first,
    so nothing of ours is caught)."""
    sys.stderr.flush()
    lines: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (a detached process): nothing to keep off a terminal
        yield lines
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(ln for ln in tmp.read().decode("utf-8", "replace").splitlines()
                         if ln.strip())


def native_reason(exc: BaseException, captured: Sequence[str] = (), limit: int = 300) -> str:
    """The line of a native exception (else of the captured stderr lines) that says what
    is wrong, without source locations; the exception's type name when none does."""
    for text in (str(exc), "\n".join(captured)):
        # "[libprotobuf ERROR file.cc:577] msg" -> "msg"
        lines = [_TAG.sub("", ln.strip()) for ln in text.splitlines() if ln.strip()]
        lines = [ln for ln in lines if ln]
        useful = [ln for ln in lines if not _LOCATION.search(ln)]
        if useful:
            reason = useful[0]
            for more in useful[1:]:  # "... failed with GeneralFailure:" says what next
                if not reason.endswith(":"):
                    break
                reason = f"{reason} {more}"
            return reason[:limit]
    return type(exc).__name__
