"""Diagnose a device dump folder: read it, run the reference on the same images, judge the
device, then rank causes.

:func:`diagnose_outputs` is what ``scrfd-ref diagnose --device-outputs DIR`` runs: the raw
output files are looked at first (int8 outputs never dequantized are named before the
strict reader would refuse them), then the first ``count`` images of the datalist are
replayed and run through the fp32 reference with the dump's recorded profile. The device
is judged first (:func:`judge`: the dtype's gates at head, anchor, detection, size-bucket
and collapse level on those images; not AP, which 16 images cannot measure). Then
:func:`scrfd_ref.diagnose.heads.diagnose` ranks the hypotheses with the gates'
``fg_score_floor``, ``diagnose_min_gain_db`` and ``diagnose_min_fg_anchors`` of the
dtype: the corrections on the raw heads, the preprocessing variants (the reference re-run
with each, compared with the device on the recorded reference's foreground anchors) and
the precision hypothesis (:mod:`scrfd_ref.diagnose.precision`: the honest
devices of every dtype run on the same images). A device that passed gets observations,
not causes.

:class:`ReferenceSet` keeps every run of the reference side (recorded profile,
preprocessing variants, honest devices) per image set, so diagnosing several dumps of the
same images runs each once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scrfd_ref.diagnose.heads import (
    Cause,
    Diagnosis,
    Verdict,
    diagnose,
    head_snrs,
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


class ReferenceSet:
    """The reference side of a diagnosis, per image set, each run computed once: the fp32
    model with the recorded profile, with each preprocessing variant, and the honest
    devices of the precision hypothesis (standard-layout models; heads are compared in
    the common form).

    Args:
        model: the fp32 ONNX model.
        profile: the recorded profile.
        honest: the honest devices (default
            :func:`~scrfd_ref.diagnose.precision.honest_devices`).
        progress: progress bars.
    """

    def __init__(self, model: Path, profile: Any, *, honest: Sequence[Any] | None = None,
                 progress: bool = False) -> None:
        from scrfd_ref.diagnose.precision import honest_devices

        self.model, self.profile, self.progress = Path(model), profile, progress
        self.honest = tuple(honest) if honest is not None else honest_devices()
        self._runs: dict[tuple, Any] = {}

    def _run(self, tag: tuple, items: Sequence[Any], backend: str, model: Path,
             options: dict[str, Any], profile: Any, label: str) -> Any:
        from scrfd_ref.backends import get_backend
        from scrfd_ref.conformance.runs import run_device

        keys = tuple(f"{it.event}/{it.name}" for it in items)
        if (tag, keys) not in self._runs:
            with get_backend(backend, model, **options) as b:
                self._runs[(tag, keys)] = run_device(b, profile, items, head_images=keys,
                                                     device=label, progress=self.progress)
        return self._runs[(tag, keys)]

    def reference(self, items: Sequence[Any]) -> Any:
        """The fp32 reference's :class:`~scrfd_ref.conformance.runs.Run` with the recorded
        profile (heads of every image)."""
        return self._run(("reference",), items, "ort", self.model, {}, self.profile,
                         "reference")

    def variant(self, items: Sequence[Any], text: str, change: dict[str, Any]) -> Any:
        """The reference re-run with one preprocessing variant."""
        return self._run(("variant", text), items, "ort", self.model, {},
                         self.profile.replace(**change), text)

    def honest_run(self, items: Sequence[Any], device: Any) -> Any:
        """The run of one honest device (:class:`~scrfd_ref.diagnose.precision.HonestDevice`)."""
        backend, path, options = device.build(self.model)
        return self._run(("honest", device.label), items, backend, path, options,
                         self.profile, device.label)


def preprocessing_causes(references: ReferenceSet, items: Any, reference: Sequence[Any],
                         device: Sequence[Any], fg_floor: float, min_anchors: int,
                         ) -> list[Cause]:
    """Re-run the reference with each preprocessing variant; the gain is how much closer
    the device's heads come to it than to the recorded profile's reference, both measured
    on the recorded reference's foreground anchors (like for like: a variant under which
    the model sees fewer faces has no empty head to gain on)."""
    keys = [f"{it.event}/{it.name}" for it in items]
    before = head_snrs(reference, device, fg_floor, min_anchors=min_anchors)
    if not before:
        return []
    out = []
    for text, change in preprocessing_variants(references.profile):
        run = references.variant(items, text, change)
        after = head_snrs([run.heads[k] for k in keys], device, fg_floor,
                          min_anchors=min_anchors, mask_from=reference)
        shared = sorted(set(before) & set(after))     # the same heads on both sides
        if not shared:
            continue
        strides = sorted({int(h.rsplit("_", 1)[1]) for h in shared})
        out.append(Cause("preprocessing", text,
                         [f"the heads of stride{'s' * (len(strides) > 1)} "
                          f"{', '.join(map(str, strides))}"],
                         float(np.mean([before[h] for h in shared])),
                         float(np.mean([after[h] for h in shared])),
                         {"changes": {k: list(v) if isinstance(v, tuple) else v
                                      for k, v in change.items()},
                          "heads": shared},
                         anchors=_anchors(reference, fg_floor, shared)))
    return out


def _anchors(reference: Sequence[Any], fg_floor: float, heads: Sequence[str]) -> int:
    """Foreground anchors under the measured ``heads`` (each stride counted once)."""
    from scrfd_ref.diagnose.heads import foreground_anchors

    counts = foreground_anchors(reference, fg_floor)
    return sum(counts[s] for s in {int(h.rsplit("_", 1)[1]) for h in heads})


def precision_fit(references: ReferenceSet, items: Any, reference: Sequence[Any],
                  device: Sequence[Any], claimed: str, fg_floor: float, min_anchors: int,
                  margin: float) -> Any:
    """The device's foreground SNR per head against every honest device's on the same
    images (:class:`~scrfd_ref.diagnose.precision.PrecisionFit`, or None when
    no head has enough foreground anchors)."""
    from scrfd_ref.diagnose.precision import fit_precision

    keys = [f"{it.event}/{it.name}" for it in items]
    levels = head_snrs(reference, device, fg_floor, min_anchors=min_anchors)
    if not levels:
        return None
    honest: dict[str, dict[str, dict[str, float]]] = {}
    for h in references.honest:
        run = references.honest_run(items, h)
        honest.setdefault(h.dtype, {})[h.label] = head_snrs(
            reference, [run.heads[k] for k in keys], fg_floor, min_anchors=min_anchors)
    return fit_precision(levels, honest, claimed, margin)


#: the check levels diagnose judges a device with (AP needs more images than 16)
JUDGED_LEVELS = ("heads", "anchors", "detections", "buckets", "collapse")


def judge(reference: Any, device: Any, gates: Any, dtype: str, *,
          levels: Sequence[str] = JUDGED_LEVELS, landmark_free: bool = False) -> Verdict:
    """The device's :class:`~scrfd_ref.diagnose.heads.Verdict` under ``dtype``'s
    gates (:mod:`scrfd_ref.conformance.checks`) on the images both runs hold: every
    judgement diagnose makes goes through here. The worst verdict of the levels: fail,
    else inconclusive (the images cannot decide a gate), else pass."""
    from scrfd_ref.conformance import checks
    from scrfd_ref.conformance.verdicts import worst_verdict

    run = {"heads": lambda: checks.check_heads(reference, device, gates, dtype),
           "anchors": lambda: checks.check_anchors(reference, device, gates, dtype),
           "detections": lambda: checks.check_detections(reference, device, gates, dtype,
                                                         landmark_free=landmark_free),
           "buckets": lambda: checks.check_buckets(reference, device, gates, dtype,
                                                   landmark_free=landmark_free),
           "collapse": lambda: checks.check_collapse(reference, device, gates, dtype)}
    results = [run[level]() for level in levels]
    rows = [row for r in results for row in r.rows]
    images = sum(1 for k in device.detections if k in reference.detections)
    return Verdict(worst_verdict([r.verdict for r in results]), dtype, list(levels),
                   [r.message for r in rows if r.failed], images,
                   [r.message for r in rows if r.inconclusive])


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
                        dtype: str, extra: Sequence[Cause] = (), *,
                        verdict: Verdict | None = None, precision: Any = None) -> Diagnosis:
    """:func:`~scrfd_ref.diagnose.heads.diagnose` with the foreground floor, the
    margin and the anchor minimum of ``dtype``'s gates."""
    return diagnose(reference, device, extra=extra, verdict=verdict, precision=precision,
                    fg_floor=gates.value(dtype, "heads", "fg_score_floor"),
                    min_gain_db=gates.value(dtype, "heads", "diagnose_min_gain_db"),
                    min_anchors=int(gates.value(dtype, "heads", "diagnose_min_fg_anchors")))


def diagnose_outputs(outputs_dir: Path, model: Path, images_dir: Path, profile: Any,
                     gates: Any, dtype: str, *, count: int = DEFAULT_IMAGES,
                     progress: bool = False, references: ReferenceSet | None = None,
                     ) -> tuple[Diagnosis, dict[str, Any]]:
    """Diagnosis of a dump folder and what it looked at (images, profile, dtype).

    ``references`` (same model and profile) shares the reference side between calls.
    """
    from scrfd_ref.backends import get_backend
    from scrfd_ref.conformance.runs import replay_images, run_device
    from scrfd_ref.formats.dataset import list_images

    seen = {"outputs": str(outputs_dir), "model": str(model), "dtype": dtype,
            "profile": profile.name}
    raw = raw_dtype_cause(_first_raw_arrays(outputs_dir))
    if raw is not None:
        verdict = Verdict("fail", dtype, ["files"], [raw.text], 0)
        return Diagnosis([raw], [raw], gates.value(dtype, "heads", "diagnose_min_gain_db"),
                         0, verdict), seen
    refs = references or ReferenceSet(model, profile, progress=progress)
    if refs.model != Path(model) or refs.profile.to_dict() != profile.to_dict():
        raise ValueError("references: a ReferenceSet of another model or profile")
    items, index = replay_images(outputs_dir, list_images(images_dir))
    items = sorted(items, key=lambda it: index[it.name])[:count]
    keys = [f"{it.event}/{it.name}" for it in items]
    ref = refs.reference(items)
    with get_backend("replay", outputs_dir, allow_nonfinite=True) as backend:
        dev = run_device(backend, profile, items, head_images=keys, device="device",
                         replay_index=index, progress=progress)
    seen["images"] = keys
    verdict = judge(ref, dev, gates, dtype)
    floor = gates.value(dtype, "heads", "fg_score_floor")
    min_anchors = int(gates.value(dtype, "heads", "diagnose_min_fg_anchors"))
    reference = [ref.heads[k] for k in keys]
    device = [dev.heads[k] for k in keys]
    extra = preprocessing_causes(refs, items, reference, device, floor, min_anchors)
    precision = precision_fit(refs, items, reference, device, dtype, floor, min_anchors,
                              gates.value(dtype, "heads", "diagnose_precision_margin_db"))
    return diagnose_with_gates(reference, device, gates, dtype, extra, verdict=verdict,
                               precision=precision), seen
