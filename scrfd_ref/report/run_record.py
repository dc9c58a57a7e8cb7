"""What a report records about the run itself: the command line, every option that changes
a verdict, start and end time, exit status, the host (CPU model and the features the
dtypes depend on), scrfd-ref's version and git commit where known, and library versions.

The options that change a verdict are named once here (:data:`VERDICT_OPTIONS`): a report
lists each one that was given, so two reports that differ only in them never look alike.
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Mapping

from scrfd_ref import __version__
from scrfd_ref.formats.manifest import now as now_utc  # noqa: F401 - the run's clock

#: options whose value can change a verdict (pytest plugin and CLI spelling), with why
VERDICT_OPTIONS: dict[str, str] = {
    "--accept-inconclusive": "inconclusive gates count as accepted",
    "--allow-incomplete": "a dump that did not finish is judged on what it has",
    "--force-dtype": "the dump is judged as another dtype than its manifest records",
    "--force-profile": "the run uses another preprocessing than the dump recorded",
    "--gates": "the limits every gate is judged against",
    "--profile": "the pre- and post-processing of both runs",
    "--vdsp-params": "the device's preprocessing",
    "--build-yaml": "the int8 recipe of the int8 devices",
}
#: CPU features the dtypes and backends depend on (bf16, int8 dot products, AMX)
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni",
                "amx_bf16", "amx_int8", "amx_tile", "f16c")


def host_info() -> dict[str, Any]:
    """CPU model, logical cores, the :data:`CPU_FEATURES` present, OS and Python."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu": model or platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "features": [f for f in CPU_FEATURES if f in flags],
            "machine": platform.machine(), "os": platform.platform(),
            "python": platform.python_version()}


def git_commit(start: str | Path | None = None) -> str | None:
    """The commit of the checkout scrfd-ref runs from (``+dirty`` with local changes);
    None for an installed wheel or without git."""
    here = Path(start) if start else Path(__file__).resolve().parents[2]
    if not (here / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def verdict_options(given: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict-changing options among ``given`` (option -> value; False / None / empty
    mean not given), each with its value."""
    out = {}
    for option in VERDICT_OPTIONS:
        value = given.get(option)
        if value not in (None, False, "", [], ()):
            out[option] = value if not isinstance(value, Path) else str(value)
    return out


def run_record(argv: list[str], options: Mapping[str, Any], started: str) -> dict[str, Any]:
    """The run's record for a report (end time and exit status are added when it ends)."""
    return {"command": argv, "verdict_options": verdict_options(options),
            "started": started, "host": host_info(), "scrfd_ref": __version__,
            "git_commit": git_commit()}
