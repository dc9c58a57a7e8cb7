# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Greedy NMS over score-sorted float32 boxes (the hot loop of scrfd_ref.nms).

Two conventions (``mode``), float32 arithmetic in the original operation order:

- 0, ``insightface``: "+1" areas and overlaps, ``iou = inter / (a_i + a_j - inter)``, a
  box is suppressed when ``not (iou <= thr)`` (so NaN suppresses, as
  ``np.where(ovr <= thr)`` drops it): insightface's numpy NMS;
- 1, ``mmcv``: no "+1", a box is suppressed when ``inter > thr * (a_i + a_j - inter)``:
  mmcv's CUDA ``devIoU`` (``nms(..., offset=0)``), what insightface's WIDER test runs.

The keep set is bit-identical to the numpy twins in scrfd_ref/nms.py.

Speed-up without changing the result: a pair whose boxes do not overlap has
``inter = 0`` and, when both areas are finite and positive (insightface) or non-negative
(mmcv) and ``thr >= 0``, can never suppress. When that holds for every box the kernel
only visits pairs found by a sweep with a 2-pixel safety margin on both axes; otherwise
it visits every pair. The sweep runs in horizontal bands (``BAND`` pixels high): a box
joins every band its ``[y1, y2 + 2]`` range touches, each band is swept in x1 order, and
a pair is recorded only in the band holding ``max(y1_i, y1_j)`` (a point both ranges
contain), so each near pair is found exactly once. A whole-height x-sweep visits every
pair of boxes in the same columns (about 125,000 pairs on a crowded WIDER image at
threshold 0.02, 32,000 of them near); the bands visit about the near ones. Boxes with
``y2 < y1`` (whose range is empty) or a height range too large for the band table use
the whole-height sweep.
"""
import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef inline bint _suppresses(const float[:, ::1] b, float[::1] area, Py_ssize_t i,
                             Py_ssize_t j, float thr, int mode) noexcept nogil:
    cdef float xx1, yy1, xx2, yy2, w, h, inter, ovr, one
    one = 1 if mode == 0 else 0
    xx1 = b[i, 0] if b[i, 0] > b[j, 0] else b[j, 0]
    yy1 = b[i, 1] if b[i, 1] > b[j, 1] else b[j, 1]
    xx2 = b[i, 2] if b[i, 2] < b[j, 2] else b[j, 2]
    yy2 = b[i, 3] if b[i, 3] < b[j, 3] else b[j, 3]
    w = xx2 - xx1 + one
    h = yy2 - yy1 + one
    if not (w > 0):
        w = 0
    if not (h > 0):
        h = 0
    inter = w * h
    if mode == 1:
        ovr = area[i] + area[j] - inter
        ovr = thr * ovr
        return inter > ovr
    ovr = inter / (area[i] + area[j] - inter)
    return not (ovr <= thr)


def nms_sorted_kernel(const float[:, ::1] boxes, float thr, int mode=0):
    """Return a uint8 keep mask for ``(n, 4)`` boxes already sorted by descending score
    (``mode`` 0: insightface "+1", 1: mmcv, see the module docstring)."""
    cdef Py_ssize_t n = boxes.shape[0]
    cdef Py_ssize_t i, j, k, a, b, p
    cdef bint prunable = thr >= 0
    cdef float one = 1 if mode == 0 else 0
    if mode not in (0, 1):
        raise ValueError(f"unknown NMS mode {mode}")
    keep_arr = np.zeros(n, dtype=np.uint8)
    area_arr = np.empty(n, dtype=np.float32)
    cdef unsigned char[::1] keep = keep_arr
    cdef unsigned char[::1] dead = np.zeros(n, dtype=np.uint8)
    cdef float[::1] area = area_arr
    for i in range(n):
        area[i] = (boxes[i, 2] - boxes[i, 0] + one) * (boxes[i, 3] - boxes[i, 1] + one)
        if mode == 0 and not (area[i] > 0 and area[i] < 3.0e38):
            prunable = False
        if mode == 1 and not (area[i] >= 0 and area[i] < 3.0e38
                              and boxes[i, 2] >= boxes[i, 0] and boxes[i, 3] >= boxes[i, 1]):
            prunable = False
    if not prunable:
        with nogil:
            for i in range(n):
                if dead[i]:
                    continue
                keep[i] = 1
                for j in range(i + 1, n):
                    if not dead[j] and _suppresses(boxes, area, i, j, thr, mode):
                        dead[j] = 1
        return keep_arr

    # candidate pairs (lower index first) from sweeps over boxes sorted by x1
    x1_np = np.asarray(boxes[:, 0], dtype=np.float64)
    by_x_np = np.argsort(x1_np, kind="stable").astype(np.intp)
    cdef cnp.intp_t[::1] by_x = by_x_np
    cdef cnp.intp_t[::1] count = np.zeros(n + 1, dtype=np.intp)
    bands = _bands(boxes, by_x_np) if n > 1 else None
    cdef cnp.intp_t[::1] band_start, members, first_band
    if bands is None:
        _sweep(boxes, by_x, count, count, False)  # pass 1: neighbours per box
    else:
        band_start, members, first_band = bands
        _band_sweep(boxes, band_start, members, first_band, count, count, False)
    starts_np = np.concatenate([[0], np.cumsum(np.asarray(count[:n]))]).astype(np.intp)
    nbr_np = np.empty(starts_np[n], dtype=np.intp)
    fill_np = starts_np[:n].copy()
    if bands is None:
        _sweep(boxes, by_x, fill_np, nbr_np, True)  # pass 2: store them (CSR rows)
    else:
        _band_sweep(boxes, band_start, members, first_band, fill_np, nbr_np, True)
    cdef cnp.intp_t[::1] starts = starts_np
    cdef cnp.intp_t[::1] nbr = nbr_np
    with nogil:
        for i in range(n):
            if dead[i]:
                continue
            keep[i] = 1
            for k in range(starts[i], starts[i + 1]):
                j = nbr[k]
                if not dead[j] and _suppresses(boxes, area, i, j, thr, mode):
                    dead[j] = 1
    return keep_arr


cdef inline bint _near(const float[:, ::1] b, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    """Conservative overlap test (2-pixel margin) in double precision."""
    return (<double>b[j, 1] <= <double>b[i, 3] + 2.0 and <double>b[i, 1] <= <double>b[j, 3] + 2.0
            and <double>b[j, 0] <= <double>b[i, 2] + 2.0 and <double>b[i, 0] <= <double>b[j, 2] + 2.0)


cdef inline void _record(Py_ssize_t i, Py_ssize_t j, cnp.intp_t* count, cnp.intp_t* nbr,
                         bint write) noexcept nogil:
    """Count the near pair ``(i, j)`` for its lower index, or (``write``) store the higher
    index at ``nbr[count[lower]]`` and advance ``count[lower]``."""
    cdef Py_ssize_t lo = i if i < j else j
    if write:
        nbr[count[lo]] = j if i < j else i
    count[lo] += 1


cdef void _sweep(const float[:, ::1] b, cnp.intp_t[::1] by_x, cnp.intp_t[::1] count,
                 cnp.intp_t[::1] nbr, bint write) noexcept nogil:
    """Visit near pairs in x1 order and :func:`_record` each one."""
    cdef Py_ssize_t n = by_x.shape[0], s, t, i, j
    for s in range(n):
        i = by_x[s]
        for t in range(s + 1, n):
            j = by_x[t]
            if <double>b[j, 0] > <double>b[i, 2] + 2.0:
                break
            if _near(b, i, j):
                _record(i, j, &count[0], &nbr[0], write)


# band height in pixels (32 measured fastest on WIDER candidates at threshold 0.02: 0.82 ms
# an image against 0.87 for 16, 0.84 for 64, 0.91 for 128 and 1.15 for the whole-height
# sweep); compile-time constants, so the division below is a multiply
cdef enum:
    BAND = 32
    MAX_BANDS = 4096    # larger height ranges use the whole-height sweep


cdef inline Py_ssize_t _band_of(double y, double top) noexcept nogil:
    """Band holding ``y`` (``top`` = the smallest y1: band 0 starts there)."""
    return <Py_ssize_t>((y - top) / <double>BAND)


def _bands(const float[:, ::1] b, by_x_np):
    """Band table ``(band_start, members, first_band)``: the boxes of band ``k`` are
    ``members[band_start[k]:band_start[k + 1]]`` in x1 order, box ``i`` joins bands
    ``first_band[i]`` and below; None when a box has
    ``y2 < y1`` or the boxes span more than ``MAX_BANDS`` bands."""
    cdef Py_ssize_t n = b.shape[0], i, s, k, nb
    cdef double top = b[0, 1], bottom = <double>b[0, 3] + 2.0
    for i in range(n):
        if b[i, 3] < b[i, 1]:
            return None
        if b[i, 1] < top:
            top = b[i, 1]
        if <double>b[i, 3] + 2.0 > bottom:
            bottom = <double>b[i, 3] + 2.0
    if not (bottom - top < <double>BAND * (MAX_BANDS - 1)):
        return None
    nb = _band_of(bottom, top) + 1
    cdef cnp.intp_t[::1] by_x = by_x_np
    band_start_np = np.zeros(nb + 1, dtype=np.intp)
    first_band_np = np.empty(n, dtype=np.intp)
    last_band_np = np.empty(n, dtype=np.intp)
    cdef cnp.intp_t[::1] band_start = band_start_np
    cdef cnp.intp_t[::1] first_band = first_band_np
    cdef cnp.intp_t[::1] last_band = last_band_np
    for i in range(n):
        first_band[i] = _band_of(b[i, 1], top)
        last_band[i] = _band_of(<double>b[i, 3] + 2.0, top)
        for k in range(first_band[i], last_band[i] + 1):
            band_start[k + 1] += 1
    for k in range(nb):
        band_start[k + 1] += band_start[k]
    members_np = np.empty(band_start[nb], dtype=np.intp)
    fill_np = band_start_np[:nb].copy()
    cdef cnp.intp_t[::1] members = members_np
    cdef cnp.intp_t[::1] fill = fill_np
    for s in range(n):
        i = by_x[s]
        for k in range(first_band[i], last_band[i] + 1):
            members[fill[k]] = i
            fill[k] += 1
    return band_start_np, members_np, first_band_np


cdef void _band_sweep(const float[:, ::1] b, cnp.intp_t[::1] band_start,
                      cnp.intp_t[::1] members, cnp.intp_t[::1] first_band,
                      cnp.intp_t[::1] count, cnp.intp_t[::1] nbr, bint write) noexcept nogil:
    """:func:`_sweep` inside each band, keeping a pair only in the band that holds
    ``max(y1_i, y1_j)`` (the later of the two boxes' first bands): every near pair once."""
    cdef Py_ssize_t nb = band_start.shape[0] - 1, k, s, t, i, j
    for k in range(nb):
        for s in range(band_start[k], band_start[k + 1]):
            i = members[s]
            for t in range(s + 1, band_start[k + 1]):
                j = members[t]
                if <double>b[j, 0] > <double>b[i, 2] + 2.0:
                    break
                if (first_band[i] != k and first_band[j] != k) or not _near(b, i, j):
                    continue
                _record(i, j, &count[0], &nbr[0], write)
