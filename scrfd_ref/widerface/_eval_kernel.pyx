# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Per-image best-overlap search of the WIDER FACE evaluation (hot loop of evaluate.py).

For every prediction (already in descending score order within its image) find the
ground-truth box of its image with the highest IoU (first one on ties, like
``np.argmax`` / MATLAB ``max``). IoU uses the official "+1" arithmetic in float64 and in
the official operation order (x2 = x + w; ``iw = min(x2) - max(x1) + 1``; ``ua = area_pred
+ area_gt - iw * ih``; ``iou = iw * ih / ua``; 0 unless ``iw > 0`` and ``ih > 0``); the
module is compiled with ``-ffp-contract=off`` so no fused multiply-add changes a rounding,
which keeps the result bit-identical to the numpy twin in evaluate.py and to the official
Python port.
"""
import numpy as np
cimport numpy as cnp

cnp.import_array()


def best_overlaps(const double[:, ::1] pred, const cnp.int64_t[::1] pred_off,
                  const double[:, ::1] gt, const cnp.int64_t[::1] gt_off):
    """Best ground-truth match of every prediction.

    Args:
        pred: ``(N, 4)`` float64 ``x y w h`` of all predictions, image after image.
        pred_off: ``(I + 1,)`` int64 start offsets of each image's predictions in ``pred``.
        gt: ``(M, 4)`` float64 ``x y w h`` of all ground-truth boxes, image after image.
        gt_off: ``(I + 1,)`` int64 start offsets of each image's boxes in ``gt``.

    Returns:
        ``(best, iou)``: ``(N,)`` int64 global index into ``gt`` of the best box (``-1``
        for a prediction in an image without boxes) and ``(N,)`` float64 its IoU (0.0
        there).
    """
    cdef Py_ssize_t n_img = pred_off.shape[0] - 1
    cdef Py_ssize_t n = pred.shape[0]
    cdef Py_ssize_t m = gt.shape[0]
    if gt_off.shape[0] != n_img + 1:
        raise ValueError("pred_off and gt_off must have the same length")
    if n_img < 0 or pred_off[n_img] != n or gt_off[n_img] != m:
        raise ValueError("offsets do not match the array lengths")
    best_arr = np.full(n, -1, dtype=np.int64)
    iou_arr = np.zeros(n, dtype=np.float64)
    gx2_arr = np.empty(m, dtype=np.float64)
    gy2_arr = np.empty(m, dtype=np.float64)
    ga_arr = np.empty(m, dtype=np.float64)
    cdef cnp.int64_t[::1] best = best_arr
    cdef double[::1] biou = iou_arr
    cdef double[::1] gx2 = gx2_arr
    cdef double[::1] gy2 = gy2_arr
    cdef double[::1] garea = ga_arr
    cdef Py_ssize_t i, h, k, ps, pe, gs, ge, bk
    cdef double px1, py1, px2, py2, parea, iw, ih, ua, o, bo, lo, hi
    with nogil:
        for k in range(m):
            gx2[k] = gt[k, 0] + gt[k, 2]
            gy2[k] = gt[k, 1] + gt[k, 3]
            garea[k] = (gx2[k] - gt[k, 0] + 1) * (gy2[k] - gt[k, 1] + 1)
        for i in range(n_img):
            ps = pred_off[i]
            pe = pred_off[i + 1]
            gs = gt_off[i]
            ge = gt_off[i + 1]
            if ge <= gs:
                continue
            for h in range(ps, pe):
                px1 = pred[h, 0]
                py1 = pred[h, 1]
                px2 = pred[h, 0] + pred[h, 2]
                py2 = pred[h, 1] + pred[h, 3]
                parea = (px2 - px1 + 1) * (py2 - py1 + 1)
                bk = gs
                bo = 0.0
                for k in range(gs, ge):
                    o = 0.0
                    hi = px2 if px2 < gx2[k] else gx2[k]
                    lo = px1 if px1 > gt[k, 0] else gt[k, 0]
                    iw = hi - lo + 1
                    if iw > 0:
                        hi = py2 if py2 < gy2[k] else gy2[k]
                        lo = py1 if py1 > gt[k, 1] else gt[k, 1]
                        ih = hi - lo + 1
                        if ih > 0:
                            ua = parea + garea[k] - iw * ih
                            o = iw * ih / ua
                    if k == gs or o > bo:
                        bo = o
                        bk = k
                best[h] = bk
                biou[h] = bo
    return best_arr, iou_arr
