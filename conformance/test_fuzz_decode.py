"""Fuzzing anchor decoding (hypothesis) against definitions written here, not the package.

Across layouts (standard ``(B, N, C)`` post-sigmoid, device ``(B, 2C, H, W)`` logits),
the three strides at random input sizes (multiples of 32, non-square), batch sizes,
with and without landmarks, and fp16 or fp32 device heads, ``decode`` must equal:

- a per-anchor scalar decode (one anchor at a time, double precision, rounded once);
- an encode -> decode round trip of random boxes;
- itself across layouts (the same values as standard and as device maps).

Definitions (seed-flow.md sections 1-2): anchor ``a`` of cell ``(row, col)`` at
``(col * s, row * s)``, flat index ``(row * W + col) * 2 + a``;
``x1 = cx - l*s, y1 = cy - t*s, x2 = cx + r*s, y2 = cy + b*s``, landmark
``(cx + dx*s, cy + dy*s)``; device channel block ``a*C:(a+1)*C`` is anchor ``a``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scrfd_ref.core.anchors import anchor_centers
from scrfd_ref.core.decode import decode
from scrfd_ref.core.heads import normalize_heads

STRIDES = (8, 16, 32)
F32 = np.float32

CHEAP = settings(max_examples=200, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
MEDIUM = settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --------------------------------------------------------------------------------------
# independent helpers (definitions, not the package)
# --------------------------------------------------------------------------------------

def sigmoid64(x: float) -> float:
    """The logistic function in double precision (a reference, not float32 arithmetic)."""
    return 1.0 / (1.0 + math.exp(-float(x)))


def grid(input_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Feature map (H, W) of a stride: the input divided by the stride."""
    w, h = input_size
    return h // stride, w // stride


def std_to_device(std: np.ndarray, h: int, w: int) -> np.ndarray:
    """Standard ``(B, H*W*2, C)`` -> device ``(B, 2C, H, W)``, written channel by channel.

    Standard rows of anchor ``a`` are ``a, a+2, a+4, ...`` in row-major cell order, so
    ``std[:, a::2, c]`` reshaped to ``(H, W)`` is device channel ``a*C + c``.
    """
    b, n, c = std.shape
    assert n == h * w * 2
    dev = np.empty((b, 2 * c, h, w), dtype=std.dtype)
    for a in range(2):
        for k in range(c):
            dev[:, a * c + k, :, :] = std[:, a::2, k].reshape(b, h, w)
    return dev


def random_heads(rng: np.random.Generator, input_size: tuple[int, int], batch: int,
                 landmarks: bool, dtype, logit_gap: float = 1e-3):
    """Random raw head values per stride, rounded to ``dtype`` and widened to float32.

    Logits avoid ``(-logit_gap, logit_gap)`` so that no score lies within float
    rounding of the 0.5 threshold used with them.
    """
    logits, boxes, kps = [], [], []
    for s in STRIDES:
        h, w = grid(input_size, s)
        n = h * w * 2
        lg = rng.normal(-1.0, 2.5, size=(batch, n))
        lg = np.where(np.abs(lg) < logit_gap, np.sign(lg + 1e-12) * logit_gap * 2, lg)
        logits.append(lg.astype(dtype).astype(np.float32))
        boxes.append(rng.uniform(0.0, 6.0, size=(batch, n, 4)).astype(dtype).astype(np.float32))
        if landmarks:
            kps.append(rng.uniform(-4.0, 4.0, size=(batch, n, 10)).astype(dtype).astype(np.float32))
    return logits, boxes, (kps if landmarks else None)


def canonical(c):
    """Candidates sorted by their box coordinates (order-free comparison)."""
    order = np.lexsort(c.boxes.T[::-1])
    return c.take(order)


def ulp32(*values: float) -> float:
    """One float32 ulp at the largest magnitude among ``values``."""
    return float(np.spacing(F32(max(abs(float(v)) for v in values))))


# --------------------------------------------------------------------------------------
# anchors
# --------------------------------------------------------------------------------------

@CHEAP
@given(h=st.integers(1, 40), w=st.integers(1, 40), stride=st.sampled_from([1, 4, 8, 16, 32, 64]))
def test_anchor_centers_follow_the_grid_formula(h, w, stride):
    """Anchor ``a`` of cell ``(row, col)`` sits at ``(col*stride, row*stride)`` and has flat
    index ``(row*W + col)*2 + a``; the array is float32, read-only and cached."""
    got = anchor_centers(h, w, stride)
    assert got.shape == (h * w * 2, 2) and got.dtype == np.float32
    want = np.empty((h * w * 2, 2), dtype=np.float64)
    for row in range(h):
        for col in range(w):
            for a in range(2):
                want[(row * w + col) * 2 + a] = (col * stride, row * stride)
    np.testing.assert_array_equal(got, want)
    assert not got.flags.writeable
    with pytest.raises(ValueError):
        got[0, 0] = 1.0
    assert anchor_centers(h, w, stride) is got, "anchor grids are cached"


# --------------------------------------------------------------------------------------
# decode
# --------------------------------------------------------------------------------------

@CHEAP
@given(data=st.data(),
       in_w=st.integers(1, 8).map(lambda k: 32 * k), in_h=st.integers(1, 8).map(lambda k: 32 * k),
       layout=st.sampled_from(["standard", "device"]), batch=st.integers(1, 2),
       landmarks=st.booleans())
def test_decode_recovers_an_encoded_box(data, in_w, in_h, layout, batch, landmarks):
    """One anchor above the threshold carries the encoding of a box (and five points):
    ``l = (cx - x1)/s, t = (cy - y1)/s, r = (x2 - cx)/s, b = (y2 - cy)/s``,
    ``dx = (px - cx)/s``. Decoding returns exactly that one candidate, equal to the box.

    Tolerance: one float32 ulp of the largest magnitude involved per coordinate: the
    encoded distance is rounded to float32 once (<= half an ulp of ``|cx - x1|``;
    multiplying by the power-of-two stride is exact) and the decoded sum once more
    (<= half an ulp of ``|x1|``); plus ``stride * 2**-149`` because a distance below
    2**-126 is subnormal in float32, where the spacing is the absolute 2**-149.
    """
    s = data.draw(st.sampled_from(STRIDES), label="stride")
    fh, fw = grid((in_w, in_h), s)
    row = data.draw(st.integers(0, fh - 1), label="row")
    col = data.draw(st.integers(0, fw - 1), label="col")
    a = data.draw(st.integers(0, 1), label="anchor")
    img = data.draw(st.integers(0, batch - 1), label="image")
    cx, cy = float(col * s), float(row * s)
    dist = st.floats(0.0, 20.0 * s, allow_nan=False, allow_infinity=False)
    l, t, r, b = (data.draw(dist, label=k) for k in "ltrb")
    box = (cx - l, cy - t, cx + r, cy + b)
    pts = [(data.draw(st.floats(-50.0, in_w + 50.0), label="px"),
            data.draw(st.floats(-50.0, in_h + 50.0), label="py")) for _ in range(5)]
    score = data.draw(st.floats(0.55, 0.99), label="score")
    thr = 0.5

    floor = s * float(np.finfo(np.float32).smallest_subnormal)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    std_scores, std_boxes, std_kps = [], [], []
    for level_s in STRIDES:
        h, w = grid((in_w, in_h), level_s)
        n = h * w * 2
        std_scores.append(rng.uniform(0.0, 0.45, size=(batch, n, 1)).astype(np.float32))
        std_boxes.append(rng.uniform(0.0, 5.0, size=(batch, n, 4)).astype(np.float32))
        std_kps.append(rng.uniform(-3.0, 3.0, size=(batch, n, 10)).astype(np.float32))
    level = STRIDES.index(s)
    idx = (row * fw + col) * 2 + a
    std_scores[level][img, idx, 0] = score
    std_boxes[level][img, idx] = [(cx - box[0]) / s, (cy - box[1]) / s,
                                  (box[2] - cx) / s, (box[3] - cy) / s]
    std_kps[level][img, idx] = [v for (px, py) in pts for v in ((px - cx) / s, (py - cy) / s)]

    if layout == "standard":
        outputs = std_scores + std_boxes + (std_kps if landmarks else [])
        heads = normalize_heads(outputs, (in_w, in_h))
    else:
        sc = [np.log(p) - np.log1p(-p) for p in std_scores]  # logits; 0.45 -> < 0, score -> > 0.2
        groups = [sc, std_boxes] + ([std_kps] if landmarks else [])
        outputs = [std_to_device(arr, *grid((in_w, in_h), st_))
                   for g in groups for st_, arr in zip(STRIDES, g)]
        heads = normalize_heads(outputs)

    cands = decode(heads, thr)
    assert [len(c) for c in cands] == [1 if i == img else 0 for i in range(batch)]
    c = cands[img]
    for k, (got, want, centre) in enumerate(zip(c.boxes[0], box, (cx, cy, cx, cy))):
        tol = ulp32(want - centre, want, got) + floor
        assert abs(float(got) - want) <= tol, f"coordinate {k}: {got} vs {want} (tol {tol})"
    if landmarks:
        for k, ((gx, gy), (px, py)) in enumerate(zip(c.kps[0], pts)):
            assert abs(float(gx) - px) <= ulp32(px - cx, px, gx) + floor, f"landmark {k} x"
            assert abs(float(gy) - py) <= ulp32(py - cy, py, gy) + floor, f"landmark {k} y"
    else:
        assert c.kps is None
    if layout == "standard":
        assert c.scores[0] == F32(score)
    else:
        assert abs(float(c.scores[0]) - score) <= 4e-7


@MEDIUM
@given(seed=st.integers(0, 2**32 - 1),
       in_w=st.integers(1, 10).map(lambda k: 32 * k), in_h=st.integers(1, 10).map(lambda k: 32 * k),
       batch=st.integers(1, 3), landmarks=st.booleans(),
       dtype=st.sampled_from([np.float16, np.float32]), shuffle=st.booleans())
def test_standard_and_device_layouts_decode_alike(seed, in_w, in_h, batch, landmarks, dtype,
                                                  shuffle):
    """The same head values given as standard ``(B, N, C)`` (scores post-sigmoid) and as
    device ``(B, 2C, H, W)`` maps (scores as logits, fp16 or fp32) decode to the same
    candidates. For fp16 the standard heads hold the fp16-rounded values (widened to
    float32), which is what the device produced.

    Boxes and landmarks must be identical (same float32 distances, same arithmetic).
    Standard scores are the double-precision sigmoid rounded to float32, the device's
    the package's float32 sigmoid: they may differ by a couple of float32 ulps, so scores
    are compared with rtol 1e-6 and candidates are matched by box, not by position
    (logits stay away from 0 so the 0.5 threshold never falls between the two).
    """
    rng = np.random.default_rng(seed)
    size = (in_w, in_h)
    logits, boxes, kps = random_heads(rng, size, batch, landmarks, dtype)
    sig = np.vectorize(sigmoid64, otypes=[np.float64])
    standard = ([sig(lg)[..., None].astype(np.float32) for lg in logits] + boxes
                + (kps if landmarks else []))
    device = [std_to_device(arr[..., None] if arr.ndim == 2 else arr, *grid(size, s)).astype(dtype)
              for g in ([logits, boxes] + ([kps] if landmarks else []))
              for s, arr in zip(STRIDES, g)]
    if shuffle:  # output names and order are not trusted: shapes identify the heads
        standard = [standard[i] for i in rng.permutation(len(standard))]
        device = [device[i] for i in rng.permutation(len(device))]

    h_std = normalize_heads(standard, size)
    h_dev = normalize_heads(device, size)
    assert h_dev.layout == "device" and h_std.layout == "standard"
    assert h_dev.input_size == size and h_dev.batch == batch
    thr = 0.5
    for c_std, c_dev in zip(decode(h_std, thr), decode(h_dev, thr)):
        assert len(c_std) == len(c_dev)
        for c in (c_std, c_dev):
            assert np.all(np.diff(c.scores) <= 0), "candidates come in descending score order"
            assert np.all(c.scores >= F32(thr))
        a, b = canonical(c_std), canonical(c_dev)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6, atol=0)
        if landmarks:
            np.testing.assert_array_equal(a.kps, b.kps)
        else:
            assert a.kps is None and b.kps is None


def scalar_decode(arrays_by_kind, layout: str, size, image: int, thr: float, landmarks: bool):
    """Per-anchor decode written from the definitions, one anchor at a time.

    ``arrays_by_kind[kind][level]`` are the raw outputs of one layout. Standard rows are
    read at flat index ``(row*W + col)*2 + a``; device maps at channel ``a*C + k``,
    position ``(row, col)``, and their scores go through a double-precision sigmoid.
    Coordinates are computed in double precision and rounded to float32 once.
    Returns ``[(score, box(4), kps(5, 2) or None, enumeration index)]`` of the anchors
    whose score is ``>= thr``.
    """
    out = []
    enum = 0
    for level, s in enumerate(STRIDES):
        fh, fw = grid(size, s)
        for row in range(fh):
            for col in range(fw):
                for a in range(2):
                    if layout == "standard":
                        i = (row * fw + col) * 2 + a
                        score = float(arrays_by_kind["score"][level][image, i, 0])
                        dist = [float(v) for v in arrays_by_kind["bbox"][level][image, i]]
                        off = ([float(v) for v in arrays_by_kind["kps"][level][image, i]]
                               if landmarks else None)
                        keep = F32(score) >= F32(thr)
                    else:
                        score = sigmoid64(arrays_by_kind["score"][level][image, a, row, col])
                        dist = [float(arrays_by_kind["bbox"][level][image, a * 4 + k, row, col])
                                for k in range(4)]
                        off = ([float(arrays_by_kind["kps"][level][image, a * 10 + k, row, col])
                                for k in range(10)] if landmarks else None)
                        keep = score >= thr
                    if keep:
                        cx, cy = float(col * s), float(row * s)
                        l, t, r, b = dist
                        box = np.array([cx - l * s, cy - t * s, cx + r * s, cy + b * s],
                                       dtype=np.float32)
                        pts = (np.array([[cx + off[2 * k] * s, cy + off[2 * k + 1] * s]
                                         for k in range(5)], dtype=np.float32)
                               if landmarks else None)
                        out.append((score, box, pts, enum))
                    enum += 1
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1),
       in_w=st.sampled_from([32, 64, 96]), in_h=st.sampled_from([32, 64, 96]),
       batch=st.integers(1, 2), landmarks=st.booleans(),
       layout=st.sampled_from(["standard", "device"]),
       dtype=st.sampled_from([np.float16, np.float32]))
def test_decode_equals_a_per_anchor_scalar_decode(seed, in_w, in_h, batch, landmarks, layout,
                                                 dtype):
    """``decode`` equals a scalar loop over strides, rows, cols and anchors.

    Tolerance: boxes and landmarks exactly equal. The stride is a power of two, so
    ``l*s`` is exact, and the one float32 rounding of a double-precision sum equals the
    float32 sum (double rounding 53 -> 24 bits is innocuous for one addition).
    Standard scores are passed through, so exactly equal and ordered by
    (descending score, anchor enumeration order) like a stable sort; device scores
    (double vs float32 sigmoid) within 1e-6 relative, matched by box.
    """
    rng = np.random.default_rng(seed)
    size = (in_w, in_h)
    logits, boxes, kps = random_heads(rng, size, batch, landmarks, dtype, logit_gap=1e-2)
    if layout == "standard":
        scores = [rng.uniform(0.0, 1.0, size=(batch, lg.shape[1], 1)).astype(np.float32)
                  for lg in logits]
        # a few exact ties at and around the threshold
        scores[0][:, :4, 0] = F32(0.5)
        by_kind = {"score": scores, "bbox": boxes, "kps": kps}
        outputs = scores + boxes + (kps if landmarks else [])
    else:
        by_kind = {
            kind: [std_to_device(arr[..., None] if arr.ndim == 2 else arr, *grid(size, s)).astype(dtype)
                   for s, arr in zip(STRIDES, g)]
            for kind, g in (("score", logits), ("bbox", boxes), ("kps", kps)) if g is not None}
        outputs = [arr for kind in ("score", "bbox", "kps") if kind in by_kind
                   for arr in by_kind[kind]]
    thr = 0.5
    got = decode(normalize_heads(outputs, size), thr)
    for image in range(batch):
        want = scalar_decode(by_kind, layout, size, image, thr, landmarks)
        c = got[image]
        assert len(c) == len(want), f"image {image}: {len(c)} candidates, expected {len(want)}"
        if not want:
            continue
        if layout == "standard":
            want.sort(key=lambda rec: (-rec[0], rec[3]))
            np.testing.assert_array_equal(c.scores, np.array([w[0] for w in want], np.float32))
            np.testing.assert_array_equal(c.boxes, np.stack([w[1] for w in want]))
            if landmarks:
                np.testing.assert_array_equal(c.kps, np.stack([w[2] for w in want]))
        else:
            wb = np.stack([w[1] for w in want])
            order = np.lexsort(wb.T[::-1])
            cc = canonical(c)
            np.testing.assert_array_equal(cc.boxes, wb[order])
            np.testing.assert_allclose(cc.scores, np.array([w[0] for w in want])[order],
                                       rtol=1e-6, atol=0)
            if landmarks:
                np.testing.assert_array_equal(cc.kps, np.stack([w[2] for w in want])[order])
        if not landmarks:
            assert c.kps is None


