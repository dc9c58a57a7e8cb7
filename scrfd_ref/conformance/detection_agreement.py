"""How well two sets of WIDER prediction rows agree: the one-to-one matching of their boxes,
the pooled detection mismatch and its agreement in dB (the match of
:mod:`scrfd_ref.diagnose.predictions`), and the jitter of the matched pairs
(score and box, the noise level the precision hypothesis compares with honest devices').
Arrays in, numbers out.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from scrfd_ref.conformance.compare import SNR_CAP
from scrfd_ref.core.nms import box_area

#: the smallest mismatch told apart (agreement capped at 40 dB)
MISMATCH_FLOOR = 1e-4

Key = tuple[str, str]
Rows = Mapping[Key, np.ndarray]


def _xyxy(rows: np.ndarray) -> np.ndarray:
    return np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], axis=1).astype(np.float32)


def _overlapping_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` of ``(n, 4)`` / ``(m, 4)`` boxes whose x ranges overlap (+1
    convention), found by sorting instead of testing all ``n * m`` pairs."""
    order = np.argsort(b[:, 0], kind="stable")
    xs = b[order, 0]
    reach = float(np.max(b[:, 2] - b[:, 0])) + 2.0       # widest box, and the "+1" pixel
    lo = np.searchsorted(xs, a[:, 0] - reach, side="left")
    hi = np.searchsorted(xs, a[:, 2] + 1.0, side="right")
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    rows = np.repeat(np.arange(len(a)), counts)
    starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
    return rows, order[starts + np.arange(total)]


def matched_ious(ref: np.ndarray, dev: np.ndarray, iou_match: float) -> np.ndarray:
    """IoUs (+1 convention, as the detection checks) of a one-to-one greedy matching
    (highest IoU first) of two ``(n, 5)`` WIDER row sets, pairs with IoU >= ``iou_match``
    only (greedy, not Hungarian: a diagnosis compares hundreds of variants, and the two
    agree where boxes are near-identical)."""
    return matched_pairs(ref, dev, iou_match)[2]


def matched_pairs(ref: np.ndarray, dev: np.ndarray, iou_match: float,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(reference rows, device rows, IoUs)`` of the matching of :func:`matched_ious`,
    in the order the pairs were taken."""
    if not len(ref) or not len(dev):
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    a, b = _xyxy(ref), _xyxy(dev)
    r, c = _overlapping_pairs(a, b)
    one = np.float32(1)
    w = np.maximum(0, np.minimum(a[r, 2], b[c, 2]) - np.maximum(a[r, 0], b[c, 0]) + one)
    h = np.maximum(0, np.minimum(a[r, 3], b[c, 3]) - np.maximum(a[r, 1], b[c, 1]) + one)
    inter = w * h
    v = inter / (box_area(a)[r] + box_area(b)[c] - inter)
    ok = v >= iou_match
    r, c, v = r[ok], c[ok], v[ok]
    used_r = np.zeros(len(ref), bool)
    used_c = np.zeros(len(dev), bool)
    rows, cols, out = [], [], []
    for i in np.argsort(-v, kind="stable").tolist():
        if not used_r[r[i]] and not used_c[c[i]]:
            used_r[r[i]] = used_c[c[i]] = True
            rows.append(int(r[i]))
            cols.append(int(c[i]))
            out.append(float(v[i]))
    return (np.asarray(rows, dtype=int), np.asarray(cols, dtype=int),
            np.asarray(out, dtype=np.float64))


def _image_mismatch(ref: np.ndarray, dev: np.ndarray, iou_match: float) -> tuple[float, int]:
    """(mismatch numerator, boxes) of one image."""
    n = len(ref) + len(dev)
    if not n:
        return 0.0, 0
    if ref.shape == dev.shape and np.array_equal(ref, dev):
        return 0.0, n
    ious = matched_ious(ref, dev, iou_match)
    return n - 2 * ious.size + 2 * float((1.0 - ious).sum()), n


def detection_mismatch(reference: Rows, device: Rows, iou_match: float = 0.5, *,
                       memo: dict | None = None) -> float:
    """Pooled mismatch of two sets of WIDER rows (``(n, 5)`` x y w h score per image).

    ``(unmatched reference + unmatched device + 2 sum(1 - IoU) of matched pairs) /
    (reference + device boxes)`` over the images of ``reference``; 0 for identical sets,
    1 when nothing matches, 0 when both sides are empty. ``memo`` (a dict kept across
    calls with the same ``device``) skips images whose reference rows were seen before.
    """
    num = den = 0.0
    empty = np.zeros((0, 5))
    for key, ref in reference.items():
        ref = np.asarray(ref, dtype=np.float64).reshape(-1, 5)
        dev = np.asarray(device.get(key, empty), dtype=np.float64).reshape(-1, 5)
        tag = (key, ref.tobytes()) if memo is not None else None
        if tag is not None and tag in memo:
            a, n = memo[tag]
        else:
            a, n = _image_mismatch(ref, dev, iou_match)
            if tag is not None:
                memo[tag] = (a, n)
        num += a
        den += n
    return num / den if den else 0.0


def agreement_db(mismatch: float) -> float:
    """``-10 log10(mismatch)``, capped at 40 dB (:data:`MISMATCH_FLOOR`)."""
    return -10.0 * math.log10(max(mismatch, MISMATCH_FLOOR))


def score_decimals(device: Rows) -> int | None:
    """The decimals the device wrote its scores with, when 6 or fewer (else None)."""
    rows = [np.asarray(r).reshape(-1, 5)[:, 4] for r in device.values()]
    scores = np.concatenate(rows) if rows else np.zeros(0)
    if not scores.size:
        return None
    for k in range(1, 7):
        if np.all(np.abs(scores - np.round(scores, k)) < 1e-9):
            return k
    return None


def jitter_levels(reference: Rows, device: Rows, *, iou_match: float, floor: float,
                  min_matched: int, decimals: int | None = None) -> dict[str, float]:
    """How little matched detections jitter, in dB (capped at :data:`SNR_CAP`):
    ``score jitter`` ``-20 log10`` of the RMS score difference and ``box jitter`` ``-20
    log10`` of the RMS of ``1 - IoU`` over the pairs (:func:`matched_pairs`) whose
    reference score is >= ``floor``; scores rounded to ``decimals`` on both sides when
    given. Empty when fewer than ``min_matched`` pairs: the detections do not allow it."""
    ds, gaps = [], []
    empty = np.zeros((0, 5))
    for key, ref in reference.items():
        ref = np.asarray(ref, dtype=np.float64).reshape(-1, 5)
        dev = np.asarray(device.get(key, empty), dtype=np.float64).reshape(-1, 5)
        r, c, ious = matched_pairs(ref, dev, iou_match)
        keep = ref[r, 4] >= floor
        rs, dsc = ref[r[keep], 4], dev[c[keep], 4]
        if decimals is not None:
            rs, dsc = np.round(rs, decimals), np.round(dsc, decimals)
        ds.append(dsc - rs)
        gaps.append(1.0 - ious[keep])
    d = np.concatenate(ds) if ds else np.zeros(0)
    if d.size < max(1, min_matched):
        return {}
    g = np.concatenate(gaps)
    low = 10.0 ** (-SNR_CAP / 20)
    level = lambda x: float(-20 * math.log10(max(float(np.sqrt(np.mean(x ** 2))), low)))  # noqa: E731
    return {"score jitter": level(d), "box jitter": level(g)}
