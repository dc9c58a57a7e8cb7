"""One strict way to read the structured files a user hands the tool (JSON, YAML, TOML).

Every reader goes through here, so each class of bad file is refused the same way
everywhere:

- a path that is not a regular file (a FIFO, a device, a socket) is refused before it is
  opened: opening a FIFO blocks forever;
- a duplicate key in an object or mapping (two ``Mean`` keys in a vdsp params file: which
  one did the device use?) is refused, naming the key;
- number syntax no producer writes (JSON ``NaN``, ``Infinity``, ``-Infinity``) is refused;
- nesting deeper than the format ever needs is refused before it can exhaust the stack.

The functions raise :class:`StrictFormatError` (a ``ValueError``) with a message that does not
name the file: the caller adds the file or option, as its one line to the user.
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

#: deepest nesting any file the tool reads needs (manifests: 5 levels)
MAX_DEPTH = 32
#: the largest structured file read (manifests and reports are far smaller)
MAX_BYTES = 64 * 1024 * 1024


class StrictFormatError(ValueError):
    """A structured file breaks a rule every reader enforces (module docstring)."""


def regular_file_text(path: str | os.PathLike[str]) -> str:
    """The text of ``path`` (UTF-8, a leading BOM skipped), refusing anything that is not a
    regular file before opening it, and files above :data:`MAX_BYTES`.

    Raises:
        FileNotFoundError: nothing at ``path``.
        StrictFormatError: a folder, FIFO, device or socket; too large; not UTF-8.
    """
    p = Path(path)
    st = p.stat()
    if stat.S_ISDIR(st.st_mode):
        raise StrictFormatError("is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise StrictFormatError("not a regular file (a FIFO, device or socket would block or "
                                "never end); give a file")
    if st.st_size > MAX_BYTES:
        raise StrictFormatError(f"{st.st_size} bytes: larger than any such file "
                                f"({MAX_BYTES} bytes at most)")
    try:
        return p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StrictFormatError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise StrictFormatError(f"duplicate key {key!r} in one object (which one counts?)")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise StrictFormatError(f"{name} is not JSON (no producer writes it); write a number")


def nesting_depth(doc: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply lists and objects nest in ``doc`` (0 for a scalar), without recursion;
    the walk stops once ``limit`` is passed."""
    deepest = 0
    todo = [(doc, 1)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, level)
            if level > limit:
                break
            todo.extend((v, level + 1) for v in value)
    return deepest


#: the most digits an integer in a structured file may have (Python refuses > 4300 anyway)
MAX_INT_DIGITS = 100


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise StrictFormatError(f"an integer of {len(text.lstrip('-'))} digits (no producer "
                                "writes one)")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictFormatError(f"the number {text[:30]} is out of range (it reads as "
                                "infinity)")
    return value


def json_loads(text: str) -> Any:
    """Parse JSON strictly (module docstring).

    Raises:
        StrictFormatError: a duplicate key, ``NaN`` / ``Infinity``, nested too deeply, or not
            JSON (the parser's message).
    """
    try:
        doc = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant,
                         parse_int=_bounded_int, parse_float=_finite_float)
    except RecursionError:
        raise StrictFormatError(f"nested too deeply (more than {MAX_DEPTH} levels)") from None
    except StrictFormatError:
        raise
    except json.JSONDecodeError as exc:
        raise StrictFormatError(f"not valid JSON ({exc})") from None
    if nesting_depth(doc) > MAX_DEPTH:
        raise StrictFormatError(f"nested too deeply (more than {MAX_DEPTH} levels)")
    return doc


def strict_yaml_loader(base: type) -> type:
    """A subclass of the PyYAML loader ``base`` (a SafeLoader) that refuses duplicate keys."""
    class _Strict(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise StrictFormatError(f"duplicate key {key!r} in one mapping (line "
                                            f"{key_node.start_mark.line + 1}; which one counts?)")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_int(self, node):
            digits = str(node.value).lstrip("+-").replace("_", "")
            if len(digits) > MAX_INT_DIGITS:
                raise StrictFormatError(f"an integer of {len(digits)} digits (line "
                                        f"{node.start_mark.line + 1}; no producer writes one)")
            return super().construct_yaml_int(node)

    _Strict.add_constructor("tag:yaml.org,2002:int", _Strict.construct_yaml_int)
    return _Strict
