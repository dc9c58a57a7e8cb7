"""Recognise SCRFD head outputs from their shapes and bring them to one form.

Two layouts exist (seed-flow.md section 2):

- ``standard``: per stride ``(N, C)`` or ``(B, N, C)``, ``N = (H/s) * (W/s) * 2``, scores
  already through sigmoid (the insightface ONNX export).
- ``device``: per stride ``(B, 2*C, H/s, W/s)`` NCHW raw conv maps, scores as logits,
  fp16 or fp32 (what the vendor compiles).

``C`` is 1 (score), 4 (box distances) or 10 (five landmarks), so each output's kind and
stride follow from its shape alone: output names and order are not trusted. Whatever
the layout, :func:`normalize_heads` returns :class:`Heads` holding per stride
``scores (B, N)`` post-sigmoid, ``boxes (B, N, 4)`` and ``kps (B, N, 10)`` in stride
units, float32.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from scrfd_ref.core.anchors import NUM_ANCHORS, STRIDES
from scrfd_ref.core.errors import LayoutError

KIND_CHANNELS = {"score": 1, "bbox": 4, "kps": 10}
_CHANNEL_KIND = {c: k for k, c in KIND_CHANNELS.items()}


@dataclass(frozen=True)
class Heads:
    """Head outputs of one batch in the common form (all float32, stride units).

    Attributes:
        layout: ``standard`` or ``device`` (where the outputs came from).
        input_size: network input ``(W, H)``.
        scores: per stride ``(B, N)`` post-sigmoid scores.
        boxes: per stride ``(B, N, 4)`` distances left, top, right, bottom.
        kps: per stride ``(B, N, 10)`` landmark offsets, or None for 6-output models.
        strides: the strides, ascending.
    """

    layout: str
    input_size: tuple[int, int]
    scores: tuple[np.ndarray, ...]
    boxes: tuple[np.ndarray, ...]
    kps: tuple[np.ndarray, ...] | None
    strides: tuple[int, ...] = STRIDES

    @property
    def batch(self) -> int:
        """Number of images in the batch."""
        return self.scores[0].shape[0]

    @property
    def has_landmarks(self) -> bool:
        """True for ``_bnkps`` models (9 outputs)."""
        return self.kps is not None


def describe_shapes(outputs: Sequence[np.ndarray], names: Sequence[str] | None = None) -> str:
    """``name (shape dtype), ...`` for error messages."""
    names = list(names) if names is not None else [f"output_{i}" for i in range(len(outputs))]
    return ", ".join(f"{n} {tuple(np.shape(a))} {getattr(a, 'dtype', '?')}"
                     for n, a in zip(names, outputs))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in float32: ``1 / (1 + exp(-x))``."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore"):
        return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


def flatten_device_map(fmap: np.ndarray, channels: int) -> np.ndarray:
    """``(B, A*C, H, W)`` NCHW map -> ``(B, H*W*A, C)``: permute to NHWC, then reshape."""
    b, ac, h, w = fmap.shape
    return np.ascontiguousarray(fmap.transpose(0, 2, 3, 1)).reshape(b, h * w * (ac // channels), channels)


def _classify(outputs: Sequence[np.ndarray], input_size: tuple[int, int] | None,
              where: str) -> tuple[str, tuple[int, int], dict[tuple[str, int], int]]:
    """Map each output to (kind, stride); return layout, input size and the mapping."""
    ranks = {np.ndim(a) for a in outputs}
    fail = lambda why: LayoutError(  # noqa: E731
        f"{where}: {why}; got {len(outputs)} outputs: {describe_shapes(outputs)}. "
        "SCRFD has 6 or 9 outputs: per stride 8/16/32 a score (C=1), box (C=4) and "
        "optionally landmark (C=10) head, as (N, C), (B, N, C) or device (B, 2C, H, W)")
    if len(outputs) not in (6, 9):
        raise fail("wrong number of outputs")
    if len(ranks) != 1 or ranks.pop() not in (2, 3, 4):
        raise fail("outputs must all be rank 2, 3 (standard) or 4 (device NCHW)")
    layout = "device" if np.ndim(outputs[0]) == 4 else "standard"
    found: dict[tuple[str, int], int] = {}
    if layout == "device":
        sizes = sorted({a.shape[2:] for a in outputs}, key=lambda hw: -hw[0] * hw[1])
        if len(sizes) != len(STRIDES):
            raise fail(f"expected {len(STRIDES)} feature map sizes, found {len(sizes)}")
        h8, w8 = sizes[0]
        if input_size is None:
            input_size = (w8 * STRIDES[0], h8 * STRIDES[0])
        for a_i, a in enumerate(outputs):
            c2 = a.shape[1]
            kind = _CHANNEL_KIND.get(c2 // NUM_ANCHORS) if c2 % NUM_ANCHORS == 0 else None
            stride = next((s for s in STRIDES
                           if a.shape[2:] == (input_size[1] // s, input_size[0] // s)), None)
            if kind is None or stride is None:
                raise fail(f"output {a_i} {a.shape} fits no head for input "
                           f"{input_size[0]}x{input_size[1]}")
            found.setdefault((kind, stride), a_i)
    else:
        if input_size is None:
            raise fail("standard-layout outputs need the network input size to place anchors")
        counts = {(input_size[1] // s) * (input_size[0] // s) * NUM_ANCHORS: s for s in STRIDES}
        for a_i, a in enumerate(outputs):
            n, c = a.shape[-2], a.shape[-1]
            kind, stride = _CHANNEL_KIND.get(c), counts.get(n)
            if kind is None or stride is None:
                raise fail(f"output {a_i} {a.shape} fits no head for input "
                           f"{input_size[0]}x{input_size[1]}")
            found.setdefault((kind, stride), a_i)
    kinds = ("score", "bbox", "kps") if len(outputs) == 9 else ("score", "bbox")
    missing = [f"{k}@{s}" for k in kinds for s in STRIDES if (k, s) not in found]
    if missing or len(found) != len(outputs):
        raise fail(f"heads missing or duplicated ({', '.join(missing) or 'duplicates'})")
    return layout, (int(input_size[0]), int(input_size[1])), found


def normalize_heads(outputs: Sequence[np.ndarray], input_size: tuple[int, int] | None = None,
                    *, where: str = "model outputs", check_finite: bool = True) -> Heads:
    """Recognise the layout of raw SCRFD outputs and return them as :class:`Heads`.

    Args:
        outputs: the 6 or 9 arrays a backend returned, in any order.
        input_size: network input ``(W, H)``; required for the standard layout, checked
            against the map sizes for the device layout.
        where: names the source (a file, a backend) in error messages.
        check_finite: raise if a head holds NaN or Inf.

    Raises:
        LayoutError: the shapes do not fit SCRFD (message lists every shape), a dtype is
            not floating point, a head holds NaN/Inf, or standard scores leave [0, 1].
    """
    outputs = [np.asarray(a) for a in outputs]
    for i, a in enumerate(outputs):
        if a.dtype.kind != "f":
            raise LayoutError(f"{where}: output {i} has dtype {a.dtype}; SCRFD heads are "
                              "float16 or float32")
    layout, input_size, found = _classify(outputs, input_size, where)
    if outputs[0].ndim >= 3 and len({a.shape[0] for a in outputs}) != 1:
        raise LayoutError(f"{where}: outputs disagree on batch size: {describe_shapes(outputs)}")
    if check_finite:
        for (kind, stride), i in sorted(found.items(), key=lambda kv: kv[1]):
            bad = int(np.size(outputs[i]) - np.count_nonzero(np.isfinite(outputs[i])))
            if bad:
                raise LayoutError(f"{where}: output {i} ({kind} head, stride {stride}, shape "
                                  f"{outputs[i].shape}) holds {bad} NaN/Inf values")

    def get(kind: str, stride: int) -> np.ndarray:
        a = outputs[found[(kind, stride)]]
        c = KIND_CHANNELS[kind]
        if layout == "device":
            a = flatten_device_map(a.astype(np.float32, copy=False), c)
        elif a.ndim == 2:
            a = a[None]
        return np.asarray(a, dtype=np.float32)

    scores = []
    for s in STRIDES:
        sc = get("score", s)[..., 0]
        if layout == "device":
            sc = sigmoid(sc)
        elif check_finite and sc.size and (sc.min() < 0.0 or sc.max() > 1.0):
            raise LayoutError(f"{where}: standard-layout scores of stride {s} leave [0, 1] "
                              f"(min {sc.min():g}, max {sc.max():g}); they must be post-sigmoid")
        scores.append(sc)
    boxes = tuple(get("bbox", s) for s in STRIDES)
    kps = tuple(get("kps", s) for s in STRIDES) if ("kps", STRIDES[0]) in found else None
    return Heads(layout, input_size, tuple(scores), boxes, kps)


def to_device_layout(heads: Heads, dtype: np.dtype | type = np.float32) -> list[np.ndarray]:
    """Turn :class:`Heads` back into device-layout arrays ``(B, 2C, H, W)``.

    Scores become logits (``log(p / (1 - p))``), so this is the inverse of
    :func:`normalize_heads` up to float rounding. Order: scores, boxes, landmarks.
    """
    w, h = heads.input_size
    out = []
    groups = [("score", heads.scores), ("bbox", heads.boxes)]
    if heads.kps is not None:
        groups.append(("kps", heads.kps))
    for kind, arrays in groups:
        c = KIND_CHANNELS[kind]
        for s, a in zip(heads.strides, arrays):
            a = a[..., None] if kind == "score" else a
            if kind == "score":
                with np.errstate(divide="ignore"):
                    a = np.log(a) - np.log1p(-a)
            b = a.shape[0]
            fmap = a.reshape(b, h // s, w // s, NUM_ANCHORS * c).transpose(0, 3, 1, 2)
            out.append(np.ascontiguousarray(fmap, dtype=dtype))
    return out
