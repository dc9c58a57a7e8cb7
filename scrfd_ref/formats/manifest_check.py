"""What a run manifest read from disk must satisfy before a command uses it.

A manifest is a file anyone can edit (or damage): :func:`manifest_problem` checks the type
of every field the commands read, and that a recorded profile is one the reference can
rebuild; :func:`nesting_depth` measures how deeply a parsed JSON document nests without
recursing, so a hostile file is refused before recursive code (comparisons, messages)
walks it. :func:`scrfd_ref.formats.manifest.read_manifest` raises the problem with the
file's path.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from scrfd_ref.core.errors import InputError
from scrfd_ref.formats.strict import nesting_depth  # noqa: F401 - re-exported

#: the manifest layout this scrfd-ref writes (0: a first-wave ``scrfd_dump.json``)
MANIFEST_VERSION = 1


def list_sha256(items: Iterable[str]) -> str:
    """sha256 of a list of strings (one per line), e.g. an image list."""
    h = hashlib.sha256()
    for item in items:
        h.update(item.encode("utf-8", "surrogateescape"))
        h.update(b"\n")
    return h.hexdigest()


#: deepest nesting a manifest may have (a real one has 4 levels)
MAX_DEPTH = 32
#: identity fields that are text (or null) when present
_TEXT_FIELDS = ("variant", "dtype", "output_dtype", "backend", "model", "model_sha256",
                "device_model_sha256", "image_list_sha256", "inputs_sha256")


def _json_type(value: Any) -> str:
    """``a list``, ``an object``, ... : how a JSON value reads in a message."""
    if isinstance(value, bool):
        return "true/false"
    for kind, name in ((dict, "an object"), (list, "a list"), (str, "a string"),
                       ((int, float), "a number")):
        if isinstance(value, kind):
            return name
    return "null"


def manifest_problem(doc: Mapping[str, Any]) -> str | None:
    """What is wrong with the fields of a parsed manifest that the commands use, or None.

    Checks the type of each (``identity.profile`` an object the reference can rebuild a
    profile from, text where text is expected, ``outputs`` a list of relative paths, the
    counts non-negative integers, ``landmarks`` true / false).
    """
    from scrfd_ref.core.dtypes import DTYPES
    from scrfd_ref.core.profiles import profile_from_dict

    version = doc.get("manifest", MANIFEST_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) \
            or not 0 <= version <= MANIFEST_VERSION:
        return (f"manifest version {json.dumps(version)[:20]}, but this scrfd-ref reads 0.."
                f"{MANIFEST_VERSION} (written by a newer scrfd-ref, or damaged)")
    identity = doc["identity"]
    for key in ("profile", "vdsp_params", "source"):
        value = identity.get(key)
        if value is not None and not isinstance(value, dict):
            return f"identity.{key} must be a JSON object, got {_json_type(value)}"
    for key in _TEXT_FIELDS:
        value = identity.get(key)
        if value is not None and not isinstance(value, str):
            return f"identity.{key} must be text, got {_json_type(value)}"
    from scrfd_ref.formats.device_npz import OUTPUT_DTYPES

    for key, allowed in (("dtype", DTYPES), ("output_dtype", tuple(OUTPUT_DTYPES))):
        if identity.get(key) is not None and identity[key] not in allowed:
            return f"identity.{key} must be one of {', '.join(allowed)}, got {identity[key]!r}"
    if identity.get("profile") is not None:
        try:
            profile_from_dict(identity["profile"])
        except InputError as exc:
            return f"identity.profile: {exc}"
    outputs = doc.get("outputs")
    if outputs is not None:
        bad = (["(not a list)"] if not isinstance(outputs, list) else
               [o for o in outputs if not (isinstance(o, str) and o and not os.path.isabs(o)
                                           and ".." not in o.split("/"))])
        if bad:
            return (f"outputs must be paths relative to the folder (no absolute path, no ..), "
                    f"got {json.dumps(bad[0])[:60]}")
    hashes = doc.get("sha256")
    if hashes is not None and not (isinstance(hashes, dict) and all(
            isinstance(v, str) and len(v) == 64 for v in hashes.values())):
        return "sha256 must map each file to its 64-digit sha256"
    for key in ("images", "files", "written"):
        value = doc.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 0):
            return f"{key} must be a count (an integer >= 0), got {json.dumps(value)[:40]}"
    if doc.get("landmarks") is not None and not isinstance(doc.get("landmarks"), bool):
        return f"landmarks must be true or false, got {_json_type(doc['landmarks'])}"
    image_list = doc.get("image_list")
    if image_list is not None and not (isinstance(image_list, list)
                                       and all(isinstance(n, str) for n in image_list)):
        return "image_list must be a list of names"
    want = identity.get("image_list_sha256")
    if image_list is not None and isinstance(want, str) and list_sha256(image_list) != want:
        return ("image_list does not match identity.image_list_sha256 (the list was edited: "
                "its images would pair with the wrong outputs)")
    return None
