"""Box functions and greedy NMS in the two conventions SCRFD's flows use.

Boxes are ``(n, 4)`` float32 ``x1 y1 x2 y2``. Greedy NMS visits boxes in descending
score order (stable: ties keep input order); all arithmetic is float32 in the original
operation order:

- ``insightface`` (the package, the vendor device flow): "+1" pixels,
  ``area = (x2 - x1 + 1) * (y2 - y1 + 1)``, overlap ``max(0, min(x2) - max(x1) + 1)`` per
  axis, a box is kept when its IoU with every kept box is ``<= thr``; bit-identical to
  ``insightface.model_zoo.scrfd.SCRFD.nms``.
- ``mmcv`` (insightface's WIDER test, which runs mmcv's CUDA NMS with ``offset=0``): no
  "+1", ``area = (x2 - x1) * (y2 - y1)``, a box is suppressed when
  ``inter > thr * (area_i + area_j - inter)`` (mmcv ``devIoU``).

The loop runs in a Cython kernel when built (``scrfd_ref.core._nms_kernel``) and in numpy
otherwise; both give the same result.
"""
from __future__ import annotations

import numpy as np

try:  # the compiled kernel is optional; the numpy path is the fallback
    from scrfd_ref.core._nms_kernel import nms_sorted_kernel as _kernel
except ImportError:  # pragma: no cover - exercised when the extension is not built
    _kernel = None

HAVE_KERNEL = _kernel is not None
#: NMS conventions (see the module docstring) and their kernel mode numbers
NMS_CONVENTIONS: dict[str, int] = {"insightface": 0, "mmcv": 1}


def box_area(boxes: np.ndarray) -> np.ndarray:
    """``(n, 4)`` boxes -> ``(n,)`` float32 areas with the +1 convention."""
    b = np.asarray(boxes, dtype=np.float32)
    return (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``(n, m)`` float32 of ``(n, 4)`` and ``(m, 4)`` boxes, +1 convention."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    xx1 = np.maximum(a[:, None, 0], b[None, :, 0])
    yy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    xx2 = np.minimum(a[:, None, 2], b[None, :, 2])
    yy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    w = np.maximum(np.float32(0), xx2 - xx1 + 1)
    h = np.maximum(np.float32(0), yy2 - yy1 + 1)
    inter = w * h
    return inter / (box_area(a)[:, None] + box_area(b)[None, :] - inter)


def _nms_sorted_numpy(boxes: np.ndarray, thr: float, convention: str = "insightface"
                      ) -> np.ndarray:
    """Numpy twin of the kernel: keep mask for score-sorted boxes."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    mmcv = convention == "mmcv"
    one = np.float32(0 if mmcv else 1)
    areas = (x2 - x1 + one) * (y2 - y1 + one)
    thr32 = np.float32(thr)
    zero = np.float32(0)
    keep = np.zeros(boxes.shape[0], dtype=np.uint8)
    order = np.arange(boxes.shape[0])
    while order.size > 0:
        i = order[0]
        keep[i] = 1
        rest = order[1:]
        w = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + one
        h = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + one
        # insightface: np.maximum (NaN stays NaN); mmcv: fmaxf (NaN becomes 0)
        w, h = (np.fmax(w, zero), np.fmax(h, zero)) if mmcv else (np.maximum(zero, w),
                                                                 np.maximum(zero, h))
        inter = w * h
        if mmcv:
            order = rest[~(inter > thr32 * (areas[i] + areas[rest] - inter))]
        else:
            ovr = inter / (areas[i] + areas[rest] - inter)
            order = rest[ovr <= thr32]
    return keep


def _mode(convention: str) -> int:
    try:
        return NMS_CONVENTIONS[convention]
    except KeyError:
        raise ValueError(f"unknown NMS convention {convention!r}; one of "
                         f"{', '.join(NMS_CONVENTIONS)}") from None


def nms_sorted(boxes: np.ndarray, thr: float, *, use_kernel: bool | None = None,
               convention: str = "insightface") -> np.ndarray:
    """Greedy NMS over boxes already in descending score order.

    Args:
        boxes: ``(n, 4)`` boxes, sorted by descending score.
        thr: IoU threshold (``insightface``: a box survives when IoU ``<= thr`` with every
            kept box; ``mmcv``: it is suppressed when ``inter > thr * union``).
        use_kernel: force the Cython kernel (True) or numpy (False); default: kernel if built.
        convention: ``insightface`` ("+1") or ``mmcv`` (see the module docstring).

    Returns:
        ``(k,)`` int64 indices of kept boxes, ascending (= descending score).
    """
    mode = _mode(convention)
    b = np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 4)
    if use_kernel is None:
        use_kernel = HAVE_KERNEL
    if use_kernel and _kernel is None:
        raise RuntimeError("the Cython NMS kernel is not built (python setup.py build_ext --inplace)")
    mask = (_kernel(b, float(np.float32(thr)), mode) if use_kernel
            else _nms_sorted_numpy(b, thr, convention))
    return np.flatnonzero(mask)


def nms(boxes: np.ndarray, scores: np.ndarray, thr: float, *,
        use_kernel: bool | None = None, convention: str = "insightface") -> np.ndarray:
    """Greedy NMS: indices of kept boxes in descending score order (stable ties).

    Args:
        boxes: ``(n, 4)`` x1 y1 x2 y2.
        scores: ``(n,)`` scores.
        thr: IoU threshold (see :func:`nms_sorted`).
        convention: ``insightface`` ("+1", keep when IoU ``<= thr``) or ``mmcv``.
    """
    scores = np.asarray(scores)
    order = np.argsort(-scores, kind="stable")
    return order[nms_sorted(np.asarray(boxes)[order], thr, use_kernel=use_kernel,
                            convention=convention)]


def select_max_num(boxes: np.ndarray, max_num: int, image_size: tuple[int, int],
                   metric: str = "default") -> np.ndarray:
    """insightface's optional top-k after NMS: indices of the ``max_num`` best boxes.

    ``default`` ranks by ``area - 2 * squared offset of the box centre from the image
    centre`` (area without +1, image centre ``(w // 2, h // 2)``), ``max`` by area alone.
    Returns all indices unchanged when ``max_num <= 0`` or there are few enough boxes.
    """
    n = boxes.shape[0]
    if max_num <= 0 or n <= max_num:
        return np.arange(n)
    w, h = image_size
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    offsets = np.vstack([(boxes[:, 0] + boxes[:, 2]) / 2 - w // 2,
                         (boxes[:, 1] + boxes[:, 3]) / 2 - h // 2])
    values = area if metric == "max" else area - np.sum(np.power(offsets, 2.0), 0) * 2.0
    return np.argsort(values)[::-1][:max_num]
