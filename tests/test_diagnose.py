"""The likely-cause diagnosis on hand-made heads: each fault, made by hand on a copy of the
reference heads, is named first with the parameter it was made with; an identical or
slightly noisy device yields no cause. (Real dumps with library faults: the acceptance
tests in conformance/test_fault_injection.py.)"""
from __future__ import annotations

import numpy as np
import pytest

from scrfd_ref.conformance.diagnose import diagnose, raw_dtype_cause
from scrfd_ref.core.heads import Heads

N = {8: 128, 16: 32, 32: 8}        # anchors per stride of a 64x64 input, 2 per cell


def heads(seed: int) -> Heads:
    rng = np.random.RandomState(seed)
    scores, boxes, kps = [], [], []
    for s in (8, 16, 32):
        sc = np.full(N[s], 0.01, np.float32)
        sc[rng.choice(N[s], N[s] // 4, replace=False)] = rng.uniform(0.3, 0.95, N[s] // 4)
        scores.append(sc[None])
        boxes.append(rng.uniform(0.5, 4.0, (1, N[s], 4)).astype(np.float32))
        kps.append(rng.uniform(-3.0, 3.0, (1, N[s], 10)).astype(np.float32))
    return Heads("standard", (64, 64), tuple(scores), tuple(boxes), tuple(kps))


REF = [heads(i) for i in range(6)]


def changed(h: Heads, attr: str, stride: int, fn) -> Heads:
    arrays = list(getattr(h, attr))
    i = h.strides.index(stride)
    arrays[i] = fn(arrays[i]).astype(np.float32)
    parts = {"scores": h.scores, "boxes": h.boxes, "kps": h.kps, attr: tuple(arrays)}
    return Heads(h.layout, h.input_size, parts["scores"], parts["boxes"], parts["kps"])


def run(device):
    return diagnose(REF, device, fg_floor=0.3, min_gain_db=10.0)


def noisy(h: Heads, seed: int, rel: float = 1e-3) -> Heads:
    rng = np.random.RandomState(100 + seed)
    out = h
    for attr in ("boxes", "kps"):
        for s in (8, 16, 32):
            out = changed(out, attr, s, lambda a: a * (1 + rel * rng.randn(*a.shape)))
    return out


def test_an_identical_or_slightly_noisy_device_has_no_cause():
    assert not run(REF).causes
    result = run([noisy(h, i) for i, h in enumerate(REF)])
    assert not result.causes and "no known cause matches" in result.lines()[0]


def test_a_scaled_box_head_is_named_with_its_slope():
    result = run([changed(h, "boxes", 32, lambda a: a * 1.15) for h in REF])
    top = result.causes[0]
    assert top.name == "scale_head" and top.heads == ["bbox_32"]
    assert top.params["slope"] == pytest.approx(1.15, rel=1e-4)


def test_one_scaled_box_channel_is_named_with_its_channel_and_slope():
    def right_too_far(a):
        b = a.copy()
        b[..., 2] *= 1.2
        return b
    result = run([changed(h, "boxes", 16, right_too_far) for h in REF])
    top = result.causes[0]
    assert top.name == "channel_affine" and top.heads == ["bbox_16"]
    assert top.params["channel"] == 2 and "(right)" in top.text
    assert top.params["slope"] == pytest.approx(1.2, rel=1e-4)
    # a whole-head scale is still named as the head, not as one of its channels
    whole = run([changed(h, "kps", 8, lambda a: a * 1.3) for h in REF]).causes[0]
    assert whole.name == "scale_head" and whole.heads == ["kps_8"]


def test_box_order_landmark_swap_and_score_bias():
    tlbr = [changed(changed(changed(h, "boxes", 8, lambda a: a[..., [1, 0, 3, 2]]), "boxes",
                            16, lambda a: a[..., [1, 0, 3, 2]]), "boxes", 32,
                    lambda a: a[..., [1, 0, 3, 2]]) for h in REF]
    assert run(tlbr).causes[0].name == "box_order"
    order = [0, 1, 8, 9, 4, 5, 6, 7, 2, 3]                      # points 1 and 4 swapped
    swapped = [h for h in REF]
    for s in (8, 16, 32):
        swapped = [changed(h, "kps", s, lambda a: a[..., order]) for h in swapped]
    top = run(swapped).causes[0]
    assert top.name == "swap_landmarks" and top.params["pair"] == [1, 4]

    def bias(a):
        logit = np.log(a / (1 - a)) + 2.0
        return 1 / (1 + np.exp(-logit))
    top = run([changed(h, "scores", 8, bias) for h in REF]).causes[0]
    assert top.name == "score_bias" and top.params["logit_bias"] == pytest.approx(2.0, abs=1e-3)


def test_sigmoid_twice_pairing_and_dead_head():
    twice = REF
    for s in (8, 16, 32):
        twice = [changed(h, "scores", s, lambda a: 1 / (1 + np.exp(-a))) for h in twice]
    assert run(twice).causes[0].name == "sigmoid_twice"
    shifted = REF[1:] + REF[:1]                                 # output i is image i + 1
    top = run(shifted).causes[0]
    assert top.name == "pairing" and "shifted by +1" in top.text
    dead = [changed(h, "scores", 16, lambda a: np.zeros_like(a)) for h in REF]
    assert run(dead).causes[0].name == "dead_head"


def test_raw_int8_outputs_are_named_from_the_arrays():
    cause = raw_dtype_cause([np.zeros((1, 2, 4, 4), np.int8)] * 6)
    assert cause is not None and "never dequantized" in cause.text
    assert raw_dtype_cause([np.zeros((1, 2, 4, 4), np.float16)]) is None
