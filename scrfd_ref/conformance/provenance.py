"""Where a device's outputs came from, as a report states it.

A replayed dump is described by what its manifest (``scrfd_dump.json``) says: the tool and
backend that made it, the model file and its sha256, the input set's hash, dtype, profile,
and a fault the fault tools injected. A dump made by scrfd-ref's own backends (ONNX Runtime,
OpenCV, OpenVINO on this kind of CPU) is labelled so and never presented as hardware; a
folder without a manifest is "no manifest" (unknown provenance). A device built and run in
the session itself is labelled with the backend that ran it.
"""
from __future__ import annotations

from typing import Any, Mapping

#: manifest identity fields a report carries (in this order)
IDENTITY_FIELDS = ("backend", "dtype", "output_dtype", "variant", "model", "model_sha256",
                   "device_model_sha256", "image_list_sha256", "inputs_sha256")


def replay_provenance(manifest: Mapping[str, Any] | None, folder: str) -> dict[str, Any]:
    """The provenance of a replayed folder from its manifest (None: it has none)."""
    if not manifest:
        return {"source": "replay", "folder": folder, "manifest": False,
                "label": "no manifest: unknown provenance (a device's own files, or a dump "
                         "whose manifest was removed)"}
    identity = manifest.get("identity") or {}
    tool = str(manifest.get("tool") or "")
    out: dict[str, Any] = {"source": "replay", "folder": folder, "manifest": True,
                           "tool": tool or None}
    out.update({k: identity[k] for k in IDENTITY_FIELDS if identity.get(k) is not None})
    profile = identity.get("profile")
    if isinstance(profile, Mapping):
        out["profile"] = profile.get("name")
    for key in ("started", "finished", "complete"):
        if key in manifest:
            out[key] = manifest[key]
    fault = identity.get("fault")
    if fault:
        out["fault"] = fault
    made_by_us = tool.startswith("scrfd-ref")
    out["made_by_scrfd_ref"] = made_by_us
    if made_by_us:
        label = (f"made by scrfd-ref's own {identity.get('backend', '?')} backend "
                 f"({tool}), not by hardware")
    else:
        label = f"dumped by {tool or 'a tool the manifest does not name'}"
    if fault:
        what = fault.get("label") or fault.get("name") if isinstance(fault, Mapping) else fault
        label += f"; with an injected fault: {what}"
    out["label"] = label
    return out


def run_provenance(backend: str, dtype: str, model: str, model_sha256: str | None,
                   runtime: str | None = None) -> dict[str, Any]:
    """The provenance of a device built and run in the session by scrfd-ref's backend."""
    return {"source": "run", "backend": backend, "dtype": dtype, "model": model,
            "model_sha256": model_sha256, "runtime": runtime, "made_by_scrfd_ref": True,
            "label": f"run in this session by scrfd-ref's {backend} backend "
                     f"({runtime or backend}) on this host, not by hardware"}
