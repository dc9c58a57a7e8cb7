"""Diagnose a device dump folder: read it, run the reference on the same images, rank causes.

:func:`diagnose_outputs` is what ``scrfd-ref diagnose --device-outputs DIR`` runs: the raw
output files are looked at first (int8 outputs never dequantized are named before the
strict reader would refuse them), then the first ``count`` images of the datalist are
replayed and run through the fp32 reference with the dump's recorded profile, and
:func:`scrfd_ref.conformance.diagnose.diagnose` ranks the hypotheses with the gates'
``fg_score_floor`` and ``diagnose_min_gain_db`` of the dump's dtype.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scrfd_ref.conformance.diagnose import (
    Cause,
    Diagnosis,
    diagnose,
    match_db,
    raw_dtype_cause,
)

#: images diagnosed by default (the first of the datalist): enough faces of every size
DEFAULT_IMAGES = 16
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
            "norm": "div255_minusmean_divstd"}


def preprocessing_variants(profile: Any) -> list[tuple[str, dict[str, Any]]]:
    """(description, profile changes) of each preprocessing hypothesis: one setting of the
    recorded profile changed (channel order, letterbox placement, pad value,
    normalisation, resize interpolation)."""
    from scrfd_ref.core.profiles import LETTERBOX_KINDS

    out: list[tuple[str, dict[str, Any]]] = []
    other = "bgr" if profile.channel_order == "rgb" else "rgb"
    out.append((f"channel order {other.upper()} fed to the model (expected "
                f"{profile.channel_order.upper()})", {"channel_order": other}))
    for kind in LETTERBOX_KINDS:
        if kind != profile.letterbox:
            out.append((f"letterbox {kind} instead of {profile.letterbox}", {"letterbox": kind}))
    for pad in (0.0, 114.0, 127.5, 255.0):
        if pad != profile.pad_value:
            out.append((f"pad value {pad:g} instead of {profile.pad_value:g}",
                        {"pad_value": pad}))
    if profile.norm != "div255":
        out.append(("normalisation x / 255 (DIV255) instead of SCRFD's (x - 127.5) / 128",
                    {"norm": "div255"}))
    out.append(("ImageNet mean / std normalisation (another model's config)", IMAGENET))
    for interp in ("nearest", "bicubic", "area"):
        if interp != profile.interpolation:
            out.append((f"resize interpolation {interp} instead of {profile.interpolation}",
                        {"interpolation": interp}))
    return out


def preprocessing_causes(model: Path, profile: Any, items: Any, device: Any,
                         fg_floor: float, before: float) -> list[Cause]:
    """Re-run the reference with each preprocessing variant; the gain is how much closer
    the device's heads come to it than to the recorded profile's (``before``)."""
    from scrfd_ref.backends import get_backend
    from scrfd_ref.conformance.runs import run_device

    keys = [f"{it.event}/{it.name}" for it in items]
    out = []
    with get_backend("ort", model) as backend:
        for text, change in preprocessing_variants(profile):
            variant = profile.replace(**change)
            run = run_device(backend, variant, items, head_images=keys, device=text,
                             progress=False)
            after = match_db([run.heads[k] for k in keys], device, fg_floor)
            out.append(Cause("preprocessing", text, ["all heads"], before, after,
                             {"changes": {k: list(v) if isinstance(v, tuple) else v
                                          for k, v in change.items()}}))
    return out


def _first_raw_arrays(outputs_dir: Path) -> list[np.ndarray]:
    """The arrays of the first output file, unvalidated (empty when unreadable: the strict
    reader names the damage later)."""
    from scrfd_ref.core.errors import ScrfdRefError
    from scrfd_ref.formats.device_npz import _load_npz, scan_output_files

    files, _ = scan_output_files(outputs_dir)
    if not files:
        return []
    try:
        return [a for _, a in sorted(_load_npz(files[0]).items())]
    except ScrfdRefError:
        return []


def diagnose_with_gates(reference: Sequence[Any], device: Sequence[Any], gates: Any,
                        dtype: str, extra: Sequence[Cause] = ()) -> Diagnosis:
    """:func:`~scrfd_ref.conformance.diagnose.diagnose` with the foreground floor and the
    margin of ``dtype``'s gates."""
    return diagnose(reference, device, extra=extra,
                    fg_floor=gates.value(dtype, "heads", "fg_score_floor"),
                    min_gain_db=gates.value(dtype, "heads", "diagnose_min_gain_db"))


def diagnose_outputs(outputs_dir: Path, model: Path, images_dir: Path, profile: Any,
                     gates: Any, dtype: str, *, count: int = DEFAULT_IMAGES,
                     progress: bool = False) -> tuple[Diagnosis, dict[str, Any]]:
    """Diagnosis of a dump folder and what it looked at (images, profile, dtype)."""
    from scrfd_ref.backends import get_backend
    from scrfd_ref.conformance.runs import replay_images, run_device
    from scrfd_ref.formats.dataset import list_images

    seen = {"outputs": str(outputs_dir), "model": str(model), "dtype": dtype,
            "profile": profile.name}
    raw = raw_dtype_cause(_first_raw_arrays(outputs_dir))
    if raw is not None:
        return Diagnosis([raw], [raw], gates.value(dtype, "heads", "diagnose_min_gain_db"),
                         0), seen
    items, index = replay_images(outputs_dir, list_images(images_dir))
    items = sorted(items, key=lambda it: index[it.name])[:count]
    keys = [f"{it.event}/{it.name}" for it in items]
    with get_backend("ort", model) as backend:
        ref = run_device(backend, profile, items, head_images=keys, device="reference",
                         progress=progress)
    with get_backend("replay", outputs_dir, allow_nonfinite=True) as backend:
        dev = run_device(backend, profile, items, head_images=keys, device="device",
                         replay_index=index, progress=progress)
    seen["images"] = keys
    floor = gates.value(dtype, "heads", "fg_score_floor")
    reference = [ref.heads[k] for k in keys]
    device = [dev.heads[k] for k in keys]
    extra = preprocessing_causes(model, profile, items, device, floor,
                                 match_db(reference, device, floor))
    return diagnose_with_gates(reference, device, gates, dtype, extra), seen
