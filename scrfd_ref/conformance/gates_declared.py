"""The declaration of every gate, in one table: :class:`GateSpec` and :data:`DECLARED`
(re-exported by :mod:`scrfd_ref.conformance.gates`, which validates gates files against it
and applies the gates).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

@dataclass(frozen=True)
class GateSpec:
    """The declaration of one gate.

    Attributes:
        name: key in the gates file (``cosine_min``).
        level: TOML level the key lives in (``heads``, ``detections``, ``ap``).
        group: the check that reads it (:data:`GROUPS`).
        kind: ``min`` (measured >= value passes), ``max`` (<=) or ``param``.
        metric: the measured value a bound reads (``cosine``); None for params.
        lo, hi: allowed range of the value in a gates file (inclusive).
        integer: the value must be a whole number.
        what: one line saying what the gate reads.
    """

    name: str
    level: str
    group: str
    kind: str
    metric: str | None
    lo: float
    hi: float
    what: str
    integer: bool = False

    @property
    def op(self) -> str:
        """``>=`` for a lower bound, ``<=`` for an upper bound, ``=`` for a parameter."""
        return {"min": ">=", "max": "<="}.get(self.kind, "=")


#: The declaration, one gate a row: TOML level, the check that reads it, the name, the
#: allowed value range (``int``: a whole number), and what it reads. A name ending in
#: ``_min`` is a lower bound on the metric named by the rest (``cosine_min`` bounds
#: ``cosine``), ``_max`` an upper bound; any other name is a parameter of the check.
_TABLE = """
level       group       name                 lo    hi    what
heads       heads       atol                 0     inf   absolute tolerance of within_tol
heads       heads       rtol                 0     inf   relative tolerance of within_tol
heads       heads       shape_ok_min         0     1     1 if shape and layout match the reference
heads       heads       nonfinite_max        0     inf   int: NaN / Inf elements in the head
heads       heads       cosine_min           -1    1     cosine similarity device vs reference
heads       heads       snr_db_min           -inf  inf   10 log10(sum ref^2 / sum err^2), dB
heads       heads       within_tol_min       0     1     share with |err| <= atol + rtol |ref|
heads       anchors     fg_score_floor       0     1     foreground anchors: reference score >= this
heads       anchors     fg_cosine_min        -1    1     cosine on foreground anchors only
heads       anchors     fg_snr_db_min        -inf  inf   SNR on foreground anchors only, dB
heads       anchors     bg_score_p99_delta_max  0  1     |p99 device - p99 reference| of background scores
heads       diagnose    diagnose_min_gain_db 0     inf   diagnose: name a cause when undoing it gains this (dB)
heads       diagnose    diagnose_min_fg_anchors  1  inf  int: diagnose: foreground anchors a fitted cause needs (and a head, to be measured over several heads)
heads       diagnose    diagnose_precision_margin_db  0  inf  diagnose: the device's noise fits a dtype within this of an honest device of it (dB)
detections  detections  score_floor          0     1     compare detections scored >= this
detections  detections  score_margin         0     1     either side of the floor: may cross it
detections  detections  iou_match            0     1     IoU at which two boxes match
detections  detections  recall_min           0     1     reference faces found / reference faces
detections  detections  precision_min        0     1     device faces matched / device faces
detections  detections  mean_iou_min         0     1     mean IoU of matched pairs
detections  detections  max_score_delta_max  0     1     largest |score diff| of a matched pair
detections  detections  landmark_err_px_max  0     inf   largest landmark distance, original px
detections  diagnose    diagnose_pred_min_gain_db 0  inf  diagnose --predictions: name a cause when it gains this (dB of detection agreement)
detections  diagnose    diagnose_pred_precision_margin_db  0  inf  diagnose --predictions: the detection jitter fits a dtype within this of an honest device's (dB)
detections  diagnose    diagnose_pred_min_matched  1  inf  int: diagnose --predictions: matched detections a jitter level needs
detections  collapse    collapse_ratio_min   0     inf   device / reference faces above the floor
detections  buckets     bucket_recall_min    0     1     per size bucket: reference faces found
detections  buckets     bucket_mean_iou_min  0     1     per size bucket: mean IoU of matched pairs
detections  buckets     bucket_log_scale_mean_max  0  inf  per bucket: |mean log(w_dev / w_ref)| (w or h)
detections  buckets     bucket_log_scale_std_max   0  inf  per bucket: spread of log(w_dev / w_ref) (w or h)
detections  buckets     bucket_nme_pct_max   0     inf   per bucket: mean landmark error, % of box diagonal
ap          ap          abs_delta_max        -1    1     reference AP - device AP
ap          ap          ratio_min            0     inf   device AP / reference AP (MLPerf-style)
ap          ap          bootstrap_confidence 0.5   0.9999  two-sided confidence of the AP intervals (paired image bootstrap)
ap          ap          bootstrap_resamples  10    1e6   int: resamples of the images behind each AP interval
ap          ap          bootstrap_seed       0     4294967295  int: seed of the resamples (same seed, same intervals)
ap          ap          min_images           1     inf   int: fewer images judged: the AP gates are inconclusive (too few to mean anything)
slices      slices      ap_drop_max          -1    1     per attribute slice: reference AP - device AP, the slice's faces counted (others ignored)
slices      slices      recall_drop_max      -1    1     per attribute slice: reference recall - device recall at the operating point (detections.score_floor)
slices      slices      min_faces            1     inf   int: a slice with fewer faces among the images is inconclusive (and outside the correction's family)
"""


def _parse_table(text: str) -> tuple[GateSpec, ...]:
    specs = []
    for row in text.strip().splitlines()[1:]:
        level, group, name, lo, hi, what = row.split(maxsplit=5)
        integer = what.startswith("int: ")
        kind = "min" if name.endswith("_min") else "max" if name.endswith("_max") else "param"
        metric = name.rsplit("_", 1)[0] if kind != "param" else None
        specs.append(GateSpec(name, level, group, kind, metric, float(lo), float(hi),
                              what.removeprefix("int: "), integer))
    return tuple(specs)


INF = math.inf
DECLARED: tuple[GateSpec, ...] = _parse_table(_TABLE)


__all__ = ["DECLARED", "INF", "GateSpec"]
