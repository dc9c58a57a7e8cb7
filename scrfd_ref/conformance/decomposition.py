"""Explain a device's AP gap step by step (seed-flow.md section 3).

Starting from the published-AP profile (``widerface-eval``), change one setting at a time
towards the vendor's ``device-flow`` profile, then change the precision:

1. ``widerface-eval`` as published (score > 0.02, mmcv NMS 0.45, wider letterbox, clamp)
2. the score threshold (0.02 -> 0.5, and ``>`` -> ``>=``)
3. the NMS IoU threshold, 4. the NMS convention (mmcv -> "+1"), 5. boxes clipped to the
   image and rounded to integers before NMS: each only when the two profiles differ in it
   (a setting both share is not listed);
6. centred letterbox with the device's pad value (= the full ``device-flow`` profile, fp32)
7. the same on fp16, 8. on the bf16-storage emulation, 9. on int8 (when those models
   can be built)

The post-processing steps reuse one inference (they differ only after decode); each later
step runs the model again. Every AP is the official protocol on the same images.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from scrfd_ref.core.decode import Candidates, decode
from scrfd_ref.core.heads import normalize_heads
from scrfd_ref.core.parallel import prefetch
from scrfd_ref.core.postprocess import postprocess
from scrfd_ref.core.preprocess import Transform, preprocess
from scrfd_ref.core.profiles import Profile, get_profile
from scrfd_ref.formats.dataset import ImageItem
from scrfd_ref.formats.images import read_image
from scrfd_ref.formats.wider_txt import wider_rows
from scrfd_ref.widerface.evaluate import WiderResult, evaluate

SETTINGS = ("easy", "medium", "hard")


@dataclass(frozen=True)
class Step:
    """One row of the decomposition: what changed, the profile, dtype and its AP.

    ``base`` is the index of the step this one changes (the previous one; for a
    precision step the device-flow fp32 step), ``delta`` its AP change against that
    step and ``delta_interval`` the change's confidence interval (paired image
    bootstrap over the same images, the gates file's settings): a change whose interval
    holds 0 is within the evaluation's sampling noise.
    """

    label: str
    profile: Profile
    dtype: str
    result: WiderResult
    predictions: Any = field(default=None, repr=False, compare=False)
    base: int | None = None
    delta: dict = field(default_factory=dict)
    delta_interval: dict = field(default_factory=dict)

    @property
    def ap(self) -> dict[str, float]:
        """AP per setting."""
        return {s: float(self.result.ap[s]) for s in SETTINGS}


def reference_candidates(model: Path | Any, profile: Profile, items: Sequence[ImageItem],
                         floor: float) -> dict[tuple[str, str], tuple[Candidates, Transform]]:
    """Score-sorted candidates (score >= ``floor``) and the letterbox of each image, from
    one inference of ``model`` (an ONNX path, or an open backend) with ``profile``'s
    preprocessing; keyed by ``(event, name)``."""
    from scrfd_ref.backends.ort import OrtBackend

    backend = OrtBackend(model) if isinstance(model, (str, Path)) else model
    out = {}
    load = lambda it: preprocess([read_image(it.path)], profile)  # noqa: E731
    for item, (blob, (t,)) in prefetch(load, items, depth=4):
        heads = normalize_heads(backend.run(blob), profile.input_size)
        out[(item.event, item.name)] = (decode(heads, floor)[0], t)
    return out


def final_rows(cands: Candidates, t: Transform, profile: Profile) -> np.ndarray:
    """WIDER ``(n, 5)`` x y w h score rows of one image: ``profile``'s score threshold, box
    handling and NMS applied to candidates decoded at a lower floor."""
    thr = np.float32(profile.score_thr)
    kept = cands.take(cands.scores > thr if profile.score_strict else cands.scores >= thr)
    return wider_rows(postprocess(kept, t, profile))[0]


def _step(label: str, profile: Profile, dtype: str, cands, gt, keys,
          base: int | None) -> Step:
    """A step's predictions and their official-protocol AP."""
    preds = {k: final_rows(c, t, profile) for k, (c, t) in cands.items()}
    return Step(label, profile, dtype, evaluate(preds, gt, images=keys), preds, base)


def with_intervals(steps: Sequence[Step], gt, keys, settings: dict[str, Any]) -> list[Step]:
    """Each step with its AP change against its base step and the change's interval
    (:func:`scrfd_ref.widerface.bootstrap.paired_bootstrap` with ``settings``)."""
    from scrfd_ref.widerface.bootstrap import paired_bootstrap

    out = []
    for s in steps:
        if s.base is None:
            out.append(s)
            continue
        pb = paired_bootstrap(steps[s.base].predictions, s.predictions, gt, images=keys,
                              **settings)
        out.append(replace(s, delta={k: pb[k].delta for k in SETTINGS},
                           delta_interval={k: pb[k].delta_interval.to_list()
                                           for k in SETTINGS}))
    return out


def postprocess_chain(start: Profile, end: Profile) -> list[tuple[str, Profile]]:
    """Profiles from ``start`` towards ``end``'s post-processing, one setting at a time;
    settings the two share are left out."""
    chain = [(f"published-AP profile ({start.name})", start)]
    cur = start
    steps = [
        (("score_thr", "score_strict"), lambda a, b: (
            f"score threshold {'>' if a.score_strict else '>='} {a.score_thr:g} -> "
            f"{'>' if b.score_strict else '>='} {b.score_thr:g}")),
        (("nms_thr",), lambda a, b: f"NMS IoU {a.nms_thr:g} -> {b.nms_thr:g}"),
        (("nms_convention",), lambda a, b: f"NMS convention {a.nms_convention} -> "
                                           f"{b.nms_convention}"),
        (("box_mode",), lambda a, b: f"boxes {a.box_mode} -> {b.box_mode} before NMS"),
        (("max_num", "max_num_metric"), lambda a, b: f"max_num {a.max_num} -> {b.max_num}"),
    ]
    for fields, label in steps:
        if all(getattr(cur, f) == getattr(end, f) for f in fields):
            continue
        nxt = cur.replace(**{f: getattr(end, f) for f in fields})
        chain.append((label(cur, nxt), nxt))
        cur = nxt
    return chain


def decompose(model: Path, items: Sequence[ImageItem], gt, *,
              models_by_dtype: dict[str, Path] | None = None,
              progress: Callable[[str], None] | None = None) -> list[Step]:
    """AP at each step from ``widerface-eval`` to ``device-flow`` and lower precisions.

    Args:
        model: the fp32 standard ONNX model.
        items: images to evaluate (with ground truth in ``gt``).
        gt: :class:`~scrfd_ref.formats.ground_truth.GroundTruth`.
        models_by_dtype: ``{"fp16": path, "int8": path}`` models for the precision steps.
        progress: called with each step's label before it runs.
    """
    say = progress or (lambda label: None)
    keys = [(it.event, it.name) for it in items]
    wider = get_profile("widerface-eval")
    device = get_profile("device-flow")
    chain = postprocess_chain(wider, device)
    say("inference with the wider letterbox")
    cands = reference_candidates(model, wider, items, wider.score_thr)
    steps = []
    for label, prof in chain:
        say(label)
        steps.append(_step(label, prof, "fp32", cands, gt, keys,
                           len(steps) - 1 if steps else None))
    label = (f"letterbox {wider.letterbox} -> {device.letterbox}, pad {wider.pad_value:g} -> "
             f"{device.pad_value:g} (= device-flow profile, fp32)")
    say(label)
    dev_cands = reference_candidates(model, device, items, device.score_thr)
    steps.append(_step(label, device, "fp32", dev_cands, gt, keys, len(steps) - 1))
    device_fp32 = len(steps) - 1
    from scrfd_ref.backends.ort import OrtBackend

    for dtype, path in (models_by_dtype or {}).items():
        label = f"precision fp32 -> {dtype} (device-flow profile)"
        say(label)
        # the dtype picks the backend's graph optimisation (int8: the exact QDQ
        # arithmetic; bf16: the storage emulation's rounding casts kept)
        with OrtBackend(path, dtype=dtype) as backend:
            cands = reference_candidates(backend, device, items, device.score_thr)
        steps.append(_step(label, device, dtype, cands, gt, keys, device_fp32))
    from scrfd_ref.conformance.gates import Gates

    return with_intervals(steps, gt, keys, Gates.load().bootstrap_settings("fp32"))


def markdown_table(steps: Sequence[Step], title: str) -> str:
    """The decomposition as a Markdown section (AP and change per step)."""
    lines = [f"## {title}", "",
             "Each change is against the step it changes (a precision step: against the "
             "device-flow fp32 step), with its 95% paired-bootstrap interval; **bold** when "
             "the interval excludes 0 (a real change, not sampling noise).", "",
             "| step | dtype | easy | medium | hard | d easy | d medium | d hard |",
             "|---|---|---|---|---|---|---|---|"]
    for s in steps:
        ap = s.ap
        d = []
        for k in SETTINGS:
            if s.base is None:
                d.append("")
                continue
            change = ap[k] - steps[s.base].ap[k]
            iv = s.delta_interval.get(k)
            if not iv or None in iv:
                d.append(f"{change:+.4f}")
                continue
            text = f"{change:+.4f} [{iv[0]:+.4f}, {iv[1]:+.4f}]"
            d.append(f"**{text}**" if not iv[0] <= 0 <= iv[1] else text)
        lines.append(f"| {s.label} | {s.dtype} | " + " | ".join(f"{ap[k]:.4f}" for k in SETTINGS)
                     + " | " + " | ".join(d) + " |")
    first, last = steps[0].ap, steps[-1].ap
    lines.append("| **total** | | | | | " + " | ".join(f"{last[k] - first[k]:+.4f}"
                                                       for k in SETTINGS) + " |")
    return "\n".join(lines) + "\n"
