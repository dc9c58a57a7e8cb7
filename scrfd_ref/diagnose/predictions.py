"""Diagnose a device from its WIDER prediction files alone (no raw head outputs).

When a team only has the device's final detections (``<event>/<name>.txt``), every
hypothesis is a change of the fp32 reference pipeline, run on the same images, and the
one that makes the reference's detections match the device's best wins:

- post-processing: the score threshold (read off the lowest device score), the NMS IoU
  threshold and convention, boxes rounded to integers (or not rounded), boxes left in
  network-input coordinates (never mapped back to the image);
- a whole other named profile (the vendor's device flow: threshold, NMS, rounding and
  letterbox at once), tested in the first round only;
- preprocessing: channel order, letterbox placement, pad value, normalisation, resize
  interpolation (:func:`~scrfd_ref.diagnose.run.preprocessing_variants`) and
  the network input size (for a model with a dynamic input size).

The match is the **detection agreement** ``-10 log10(mismatch)`` in dB, where the mismatch
pools over the images ``(unmatched reference + unmatched device + 2 sum(1 - IoU) over the
matched pairs) / (reference + device boxes)`` (one-to-one greedy matching at IoU >= 0.5; 0 for
identical sets, 1 when nothing matches), floored at :data:`MISMATCH_FLOOR` (40 dB).

Causes are found by forward selection: each round applies every remaining hypothesis on
top of the causes already accepted and accepts the best one when it gains at least the
gates' ``diagnose_pred_min_gain_db``; when no single change does, pairs of the best single
changes are tried at once (two faults that only show together: boxes never mapped back
and another threshold) and both are named. A device that differs in several settings (the
vendor's device flow against the published-AP profile) gets each named, in the order of
how much of the mismatch it explains; when none gains enough the result says "no known
cause matches" with the closest ones (those that gain at all).

Judged first: with the gates, the device's detections are judged against the reference's
under the claimed profile (:func:`~scrfd_ref.diagnose.run.judge`: the
detection, size-bucket and collapse gates of its dtype; the files hold no landmarks). A
device that passes gets observations, not causes.

Precision: where the detections allow it (enough matched pairs, ``diagnose_pred_min_matched``),
the jitter of the device's matched detections against the reference's, under the profile
with every cause applied (score: ``-20 log10`` of the RMS score difference; box: ``-20
log10`` of the RMS of ``1 - IoU``), is compared with the jitter of the honest devices of
every dtype run the same way (:mod:`scrfd_ref.diagnose.precision`; scores
written with few decimals are rounded alike on every side). The claimed dtype that does
not fit within ``diagnose_pred_precision_margin_db`` while another does is named.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, MutableMapping, Sequence

import numpy as np

from scrfd_ref.conformance.detection_agreement import (  # noqa: F401 - re-exported
    MISMATCH_FLOOR,
    Key,
    Rows,
    agreement_db,
    detection_mismatch,
    jitter_levels,
    matched_ious,
    matched_pairs,
    score_decimals,
)
from scrfd_ref.core.errors import InputError
from scrfd_ref.core.preprocess import Transform
from scrfd_ref.core.profiles import GEOMETRY_FIELDS, NMS_CONVENTIONS, Profile
from scrfd_ref.diagnose.heads import Cause, Diagnosis, Verdict

#: NMS IoU thresholds tried (each in both conventions)
NMS_GRID = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)
#: network input sizes tried (the vendor zoo's configs say 256 where the model wants 640)
INPUT_SIZES = ((256, 256), (320, 320), (480, 480), (512, 512), (640, 640), (800, 800))
#: share of integer coordinates that says a device rounds its boxes
INTEGER_SHARE = 0.99
#: the lowest score the reference decodes (a device threshold below it is not tested)
LOWEST_FLOOR = 0.001
#: the most causes named (forward-selection rounds)
MAX_CAUSES = 6
#: when no single change gains enough, pairs of the best changes of this many kinds
PAIR_KINDS = 12


def rows_in_input(rows: np.ndarray, t: Transform) -> np.ndarray:
    """WIDER rows in original pixels -> the same boxes in network-input pixels (what a
    device writes when it never maps its boxes back)."""
    out = np.array(rows, dtype=np.float64, copy=True).reshape(-1, 5)
    out[:, :2] = t.points_to_input(out[:, :2])
    out[:, 2] *= t.scale_x
    out[:, 3] *= t.scale_y
    return out


@dataclass(frozen=True)
class Change:
    """One hypothesis: what the device did differently, as a change of the reference.

    Attributes:
        kind: the setting it touches (``score_thr``, ``nms``, ``letterbox``...): one cause
            per kind; the best change of each kind competes.
        text: the device's behaviour in words.
        profile: profile fields to change.
        unmapped: the device leaves its boxes in network-input coordinates.
    """

    kind: str
    text: str
    profile: dict[str, Any] = field(default_factory=dict)
    unmapped: bool = False


def device_facts(device: Rows) -> dict[str, float]:
    """What the device's files say by themselves: lowest score, share of integer
    coordinates, number of boxes."""
    rows = [np.asarray(r).reshape(-1, 5) for r in device.values()]
    allr = np.concatenate(rows) if rows else np.zeros((0, 5))
    coords = allr[:, :4]
    integer = float(np.mean(coords == np.round(coords))) if coords.size else 0.0
    low = float(allr[:, 4].min()) if len(allr) else float("nan")
    return {"boxes": int(len(allr)), "lowest_score": low, "integer_share": integer}


def _postprocessing_changes(profile: Profile, unmapped: bool, facts: Mapping[str, float],
                            ) -> list[Change]:
    out = []
    low = facts["lowest_score"]
    if math.isfinite(low):
        thr = max(LOWEST_FLOOR, math.floor(low * 100 + 1e-9) / 100)
        if abs(thr - profile.score_thr) >= 0.01 - 1e-9:
            out.append(Change("score_thr", f"score threshold {thr:g} instead of "
                                           f"{profile.score_thr:g} (lowest device score "
                                           f"{low:.4f})", {"score_thr": thr,
                                                           "score_strict": False}))
    for conv in NMS_CONVENTIONS:
        for thr in NMS_GRID:
            if (thr, conv) != (profile.nms_thr, profile.nms_convention):
                out.append(Change("nms", f"NMS IoU {thr:g} ({conv}) instead of "
                                         f"{profile.nms_thr:g} ({profile.nms_convention})",
                                  {"nms_thr": thr, "nms_convention": conv}))
    share = facts["integer_share"]
    if share >= INTEGER_SHARE and profile.box_mode != "clip_round":
        out.append(Change("box_mode", f"boxes clipped to the image and rounded to integers "
                                      f"({100 * share:.1f}% of device coordinates are "
                                      "integers)", {"box_mode": "clip_round"}))
    if share < 0.5 and profile.box_mode == "clip_round":
        out.append(Change("box_mode", f"boxes not rounded to integers (only {100 * share:.1f}"
                                      "% of device coordinates are integers)",
                          {"box_mode": "clamp_resized"}))
    if not unmapped:
        w, h = profile.input_size
        out.append(Change("mapping", f"boxes left in network-input coordinates ({w}x{h}), "
                                     "never mapped back to the image", unmapped=True))
    return out


def _profile_changes(profile: Profile) -> list[Change]:
    """The device follows another named profile wholesale (the vendor's device flow
    against the published-AP profile): every field but the input size."""
    from scrfd_ref.core.profiles import PROFILES

    out = []
    for name, other in PROFILES.items():
        fields = {k: v for k, v in other.to_dict().items()
                  if k not in ("name", "input_size") and v != profile.to_dict()[k]}
        if name != profile.name and fields:
            text = ", ".join(f"{k} {v}" for k, v in fields.items())
            out.append(Change("profile", f"the device follows the {name} profile ({text})",
                              {k: tuple(v) if isinstance(v, list) else v
                               for k, v in fields.items()}))
    return out


def _preprocessing_changes(profile: Profile, sizes: bool) -> list[Change]:
    from scrfd_ref.diagnose.run import preprocessing_variants

    out = []
    for text, change in preprocessing_variants(profile):
        kind = "normalisation" if {"norm", "mean"} & set(change) else next(iter(change))
        out.append(Change(kind, text, dict(change)))
    w, h = profile.input_size
    for size in INPUT_SIZES if sizes else ():
        if size != profile.input_size:
            out.append(Change("input_size", f"network input {size[0]}x{size[1]} instead of "
                                            f"{w}x{h}", {"input_size": size}))
    return out


def _items_key(items: Sequence[Any]) -> tuple[str, ...]:
    """The images of a run as a hashable key (``event/name`` each)."""
    return tuple(f"{it.event}/{it.name}" for it in items)


class ReferenceRuns:
    """The fp32 reference's detections on fixed images under any profile, with one
    inference per preprocessing (post-processing variants reuse its candidates)."""

    def __init__(self, backend: Any, items: Sequence[Any], floor: float) -> None:
        self.backend, self.items, self.floor = backend, list(items), floor
        self._cands: dict[tuple, dict] = {}

    def _candidates(self, profile: Profile) -> dict:
        from scrfd_ref.conformance.decomposition import reference_candidates

        geometry = tuple(getattr(profile, f) for f in GEOMETRY_FIELDS)
        if geometry not in self._cands:
            self._cands[geometry] = reference_candidates(self.backend, profile, self.items,
                                                         self.floor)
        return self._cands[geometry]

    def scales(self, profile: Profile) -> dict[str, float]:
        """``{event/name: letterbox scale}`` (network-input px per original px, as the
        size buckets read it) under ``profile``."""
        return {f"{k[0]}/{k[1]}": math.sqrt(t.scale_x * t.scale_y)
                for k, (_, t) in self._candidates(profile).items()}

    def rows(self, profile: Profile, unmapped: bool = False) -> dict[Key, np.ndarray]:
        """WIDER rows per image of the reference run with ``profile``."""
        from scrfd_ref.conformance.decomposition import final_rows

        out = {}
        for key, (cands, t) in self._candidates(profile).items():
            rows = final_rows(cands, t, profile)
            out[key] = rows_in_input(rows, t) if unmapped else rows
        return out


def _cause(change: Change, before: float, after: float, together: Change | None = None,
           ) -> Cause:
    evidence = f"mismatch {before:.4f} -> {after:.4f}"
    if together is not None:
        evidence += f" only together with: {together.text}"
    return Cause(change.kind, change.text, ["detections"], agreement_db(before),
                 agreement_db(after),
                 {"changes": {k: list(v) if isinstance(v, tuple) else v
                              for k, v in change.profile.items()},
                  "unmapped": change.unmapped, "mismatch_before": before,
                  "mismatch_after": after, "together_with": together and together.kind,
                  "evidence": evidence},
                 metric="detection agreement")


def _best_pair(ref: ReferenceRuns, device: Rows, memo: dict, current: Profile,
               unmapped: bool, ranked: Sequence[tuple[float, Change, Profile]],
               mismatch: float) -> tuple[float, list[Change], Profile] | None:
    """Two faults that only show together (boxes never mapped back *and* another
    threshold: either correction alone still matches nothing): every pair of the
    :data:`PAIR_KINDS` best single changes of different kinds, applied at once."""
    top = [c for _, c, _ in ranked if c.kind != "profile"][:PAIR_KINDS]
    best = None
    for i, a in enumerate(top):
        for b in top[i + 1:]:
            if set(a.profile) & set(b.profile):
                continue
            try:
                prof = current.replace(**a.profile).replace(**b.profile)
            except InputError:
                continue
            after = detection_mismatch(ref.rows(prof, unmapped or a.unmapped or b.unmapped),
                                       device, memo=memo)
            if after < mismatch and (best is None or after < best[0]):
                best = (after, [a, b], prof)
    return best


#: the detection checks a diagnosis of prediction files judges with (no heads, no AP)
JUDGED_LEVELS = ("detections", "buckets", "collapse")


def _as_run(rows: Rows, scales: Mapping[str, float], name: str) -> Any:
    """WIDER rows as a :class:`~scrfd_ref.conformance.runs.Run` the detection checks read
    (no landmarks)."""
    from scrfd_ref.conformance.runs import Run
    from scrfd_ref.core.detections import Detections

    dets = {}
    for (event, image), r in rows.items():
        r = np.asarray(r, dtype=np.float32).reshape(-1, 5)
        boxes = np.concatenate([r[:, :2], r[:, :2] + r[:, 2:4]], axis=1)
        dets[f"{event}/{image}"] = Detections(boxes, r[:, 4].copy(), None)
    return Run(name, {}, {}, dets, {}, dict(scales))


def judge_predictions(ref: ReferenceRuns, device: Rows, profile: Profile, gates: Any,
                      dtype: str) -> Verdict:
    """The device's detections judged against the reference's under the claimed
    ``profile`` with ``dtype``'s detection, size-bucket and collapse gates."""
    from scrfd_ref.diagnose.run import judge

    scales = ref.scales(profile)
    reference = _as_run(ref.rows(profile), scales, "reference")
    return judge(reference, _as_run({k: device.get(k, np.zeros((0, 5)))
                                     for k in ref.rows(profile)}, scales, "device"),
                 gates, dtype, levels=JUDGED_LEVELS, landmark_free=True)


def precision_of_predictions(ref: ReferenceRuns, model: Any, device: Rows, profile: Profile,
                             unmapped: bool, claimed: str, *, margin: float,
                             min_matched: int, floor: float, iou_match: float = 0.5,
                             honest: Sequence[Any] | None = None,
                             shared: MutableMapping[tuple, Any] | None = None) -> Any:
    """The device's detection jitter against the honest devices' (every dtype), all run
    with ``profile`` on the same images
    (:class:`~scrfd_ref.diagnose.precision.PrecisionFit`, or None when the
    detections do not allow it). ``shared``: rows of the honest devices kept between
    calls on the same images (see :func:`diagnose_predictions`)."""
    from scrfd_ref.backends import get_backend
    from scrfd_ref.diagnose.precision import fit_precision, honest_devices

    reference = ref.rows(profile, unmapped)
    decimals = score_decimals(device)
    opts = {"iou_match": iou_match, "floor": floor, "min_matched": min_matched,
            "decimals": decimals}
    levels = jitter_levels(reference, device, **opts)
    if not levels:
        return None
    found: dict[str, dict[str, dict[str, float]]] = {}
    shared = {} if shared is None else shared
    for h in honest if honest is not None else honest_devices():
        key = ("honest", h.label, str(model), _items_key(ref.items), ref.floor,
               repr(sorted(profile.to_dict().items())), unmapped)
        if key not in shared:
            name, path, options = h.build(model)
            with get_backend(name, path, **options) as backend:
                shared[key] = ReferenceRuns(backend, ref.items, ref.floor).rows(profile,
                                                                                 unmapped)
        rows = shared[key]
        found.setdefault(h.dtype, {})[h.label] = jitter_levels(reference, rows, **opts)
    return fit_precision(levels, found, claimed, margin, metric="detection jitter",
                         unit="metrics")


def diagnose_predictions(backend: Any, items: Sequence[Any], device: Rows, profile: Profile,
                         *, min_gain_db: float, gates: Any = None, dtype: str | None = None,
                         model: Any = None, honest: Sequence[Any] | None = None,
                         shared: MutableMapping[tuple, Any] | None = None,
                         ) -> tuple[Diagnosis, dict[str, Any]]:
    """Rank the causes of a device's prediction files against the reference.

    Args:
        backend: an open fp32 backend of the model the device runs.
        items: the images (:class:`~scrfd_ref.formats.dataset.ImageItem`) to look at;
            ``device`` has rows for them, keyed ``(event, name)``.
        device: the device's WIDER rows per image.
        profile: the profile the device claims to follow (the reference's start).
        min_gain_db: the agreement gain (dB) a cause must bring.
        gates, dtype: judge the device first with ``dtype``'s gates (a device that
            passes gets observations, not causes); None: no judgement.
        model: the fp32 model file: with ``gates``, the precision hypothesis runs the
            honest devices (``honest``, default every dtype's) on it.
        shared: a dict kept between diagnoses of devices on the same images and
            ``backend``: the reference's candidates per preprocessing and the honest
            devices' rows are computed once for all of them.

    Returns:
        The diagnosis, and the facts it used (lowest device score, share of integer
        coordinates, box counts, the profile with every cause applied).
    """
    facts = device_facts(device)
    low = facts["lowest_score"]
    floor = min(profile.score_thr, 0.02, low if math.isfinite(low) else 1.0)
    shared = {} if shared is None else shared
    ref_key = ("reference", id(backend), _items_key(items), max(LOWEST_FLOOR, floor - 1e-6))
    if ref_key not in shared:
        shared[ref_key] = ReferenceRuns(backend, items, ref_key[-1])
    ref = shared[ref_key]
    current, unmapped = profile, False
    memo: dict = {}
    sizes = getattr(backend, "input_size", None) is None     # a dynamic-size model
    mismatch = detection_mismatch(ref.rows(current), device, memo=memo)
    facts["mismatch_as_claimed"] = mismatch
    causes: list[Cause] = []
    closest: list[Cause] = []
    done: set[str] = set()
    while len(causes) < MAX_CAUSES:
        best: dict[str, tuple[float, Change, Profile]] = {}
        changes = (_profile_changes(current) if not causes else []) + (
                   _postprocessing_changes(current, unmapped, facts)
                   + _preprocessing_changes(current, sizes))
        for change in changes:
            if change.kind in done:
                continue
            try:
                prof = current.replace(**change.profile)
            except InputError:
                continue
            after = detection_mismatch(ref.rows(prof, unmapped or change.unmapped), device,
                                       memo=memo)
            if change.kind not in best or after < best[change.kind][0]:
                best[change.kind] = (after, change, prof)
        ranked = sorted(best.values(), key=lambda b: b[0])
        closest = [_cause(c, mismatch, after) for after, c, _ in ranked]
        if ranked and closest[0].gain_db >= min_gain_db:
            after, chosen, current = ranked[0]
            causes.append(closest[0])
            chosen = [chosen]
        else:
            pair = _best_pair(ref, device, memo, current, unmapped, ranked, mismatch)
            if pair is None or agreement_db(pair[0]) - agreement_db(mismatch) < min_gain_db:
                break
            after, chosen, current = pair
            causes += [_cause(c, mismatch, after, together=o)
                       for c, o in (chosen, chosen[::-1])]
        done.update(c.kind for c in chosen)
        unmapped = unmapped or any(c.unmapped for c in chosen)
        mismatch = after
    facts["mismatch_explained"] = mismatch
    facts["profile_explained"] = current.to_dict()
    verdict = precision = None
    if gates is not None and dtype is not None:
        verdict = judge_predictions(ref, device, profile, gates, dtype)
        if model is not None:
            precision = precision_of_predictions(
                ref, model, device, current, unmapped, dtype, honest=honest,
                margin=gates.value(dtype, "detections", "diagnose_pred_precision_margin_db"),
                min_matched=int(gates.value(dtype, "detections", "diagnose_pred_min_matched")),
                floor=gates.value(dtype, "heads", "fg_score_floor"),
                iou_match=gates.value(dtype, "detections", "iou_match"), shared=shared)
    return Diagnosis.judged(causes, [c for c in closest if c.gain_db > 0], min_gain_db,
                            len(items), verdict, precision, closest), facts
