"""Automatic mixed precision: keep the most sensitive nodes in float until int8 agrees with
fp32, without labels.

The search (:func:`search`) takes the weighted nodes ranked by the error they add
(:func:`scrfd_ref.quantize.sensitivity.node_sensitivity`, ``lost_db``), keeps a bounded
number of candidates (those that add error, run in int8, and whose MACs the int8 share can
afford), and walks them in rank order: step ``k`` keeps the first ``k`` in float. Each step
is scored by its agreement with the fp32 model's detections on the calibration images
(:func:`agreement_ap`); the first step that reaches the target wins, else the step with
the highest agreement. Re-quantizing a step reuses the calibration ranges (ONNX
Runtime's calibration cache), so a step costs one quantization pass and one run over the
calibration images. The AP target itself is checked afterwards on held-out images (the
conformance suite), never on the images the search saw.

Agreement: the fp32 detections scored at least ``gt_floor`` are the pseudo ground truth;
the int8 detections (every score the profile keeps) are ranked and matched greedily at
IoU 0.5; the agreement is the area under that precision / recall curve (all-point
interpolation), 1.0 for a model that reproduces fp32.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from scrfd_ref.core.detections import Detections
from scrfd_ref.core.errors import InputError
from scrfd_ref.core.nms import box_iou

#: defaults of the search (part of the int8 recipe). The target: the percentile-calibrated
#: models of the four shared variants agree at 0.994 - 0.9997 and keep >= 99.3% of
#: held-out hard AP; a model under 0.99 has lost more than calibration noise. The
#: agreement does not resolve AP differences under ~0.4% (see the int8 issue's note).
DEFAULT_TARGET = 0.99
DEFAULT_CANDIDATES = 6
DEFAULT_MIN_INT8_SHARE = 0.9
GT_FLOOR = 0.3


def agreement_ap(reference: Sequence[Detections], device: Sequence[Detections], *,
                 gt_floor: float = GT_FLOOR, iou: float = 0.5) -> float:
    """AP of ``device`` detections against ``reference`` detections scored >= ``gt_floor``
    (pooled over images, greedy matching in score order, all-point interpolation).

    Raises:
        InputError: the reference has no detection above ``gt_floor`` (nothing to agree on).
    """
    scores, hits, n_gt = [], [], 0
    for ref, dev in zip(reference, device):
        gt = ref.boxes[ref.scores >= gt_floor]
        n_gt += len(gt)
        order = np.argsort(-dev.scores, kind="stable")
        taken = np.zeros(len(gt), bool)
        ious = box_iou(dev.boxes[order], gt) if len(gt) and len(order) else None
        for rank, i in enumerate(order):
            hit = False
            if ious is not None:
                cand = np.where(taken, -1.0, ious[rank])
                j = int(np.argmax(cand))
                if cand[j] >= iou:
                    taken[j] = hit = True
            scores.append(float(dev.scores[i]))
            hits.append(hit)
    if n_gt == 0:
        raise InputError(f"no reference detection scored >= {gt_floor}: nothing to agree on")
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.cumsum(np.asarray(hits, float)[order])
    fp = np.cumsum(1.0 - np.asarray(hits, float)[order])
    recall = np.concatenate([[0.0], tp / n_gt])
    precision = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1e-12)])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * precision[1:]))


@dataclass(frozen=True)
class Step:
    """One step of the search: the nodes kept in float, and what that gives."""

    float_nodes: tuple[str, ...]
    agreement: float
    int8_mac_share: float


@dataclass
class SearchResult:
    """The whole search, for the report.

    Attributes:
        steps: every step tried, in order.
        chosen: index of the step the recipe keeps.
        target: the agreement target.
        met: whether the chosen step reaches it.
        candidates: the ranked candidate nodes with their ``lost_db`` and MAC share.
    """

    steps: list[Step]
    chosen: int
    target: float
    met: bool
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def float_nodes(self) -> tuple[str, ...]:
        """The nodes the chosen step keeps in float."""
        return self.steps[self.chosen].float_nodes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"steps": [asdict(s) for s in self.steps], "chosen": self.chosen,
                "target": self.target, "met": self.met, "candidates": self.candidates,
                "float_nodes": list(self.float_nodes)}


def candidates(ranked: Sequence[Any], limit: int, min_int8_share: float) -> list[Any]:
    """At most ``limit`` nodes of a ``lost_db`` ranking worth trying in float: they add
    error, run in int8, and keeping all of them float leaves at least ``min_int8_share``
    of the MACs in int8."""
    share = sum(r.macs_share for r in ranked if r.int8)
    out = []
    for r in ranked:
        if len(out) >= limit:
            break
        if not r.int8 or r.lost_db is None or r.lost_db <= 0:
            continue
        if share - r.macs_share < min_int8_share:
            continue
        share -= r.macs_share
        out.append(r)
    return out


def search(ranked: Sequence[Any], build: Callable[[tuple[str, ...]], Path],
           score: Callable[[Path], float], *, target: float = DEFAULT_TARGET,
           limit: int = DEFAULT_CANDIDATES,
           min_int8_share: float = DEFAULT_MIN_INT8_SHARE) -> SearchResult:
    """Walk the candidates of ``ranked`` (see the module docstring).

    Args:
        ranked: :class:`~scrfd_ref.quantize.sensitivity.NodeSensitivity` rows, ranked.
        build: writes the int8 model keeping the given nodes in float; returns its path.
        score: agreement of a model file with fp32 on the calibration images.
    """
    chosen_nodes = candidates(ranked, limit, min_int8_share)
    base_share = sum(r.macs_share for r in ranked if r.int8)
    steps: list[Step] = []
    for k in range(len(chosen_nodes) + 1):
        nodes = tuple(r.name for r in chosen_nodes[:k])
        share = base_share - sum(r.macs_share for r in chosen_nodes[:k])
        steps.append(Step(nodes, score(build(nodes)), share))
        if steps[-1].agreement >= target:
            break
    met = [i for i, s in enumerate(steps) if s.agreement >= target]
    best = met[0] if met else int(np.argmax([s.agreement for s in steps]))
    cands = [{"name": r.name, "lost_db": r.lost_db, "macs_share": r.macs_share}
             for r in chosen_nodes]
    return SearchResult(steps, best, target, bool(met), cands)
