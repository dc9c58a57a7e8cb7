"""The likely-cause diagnosis on hand-made heads: each fault, made by hand on a copy of the
reference heads, is named first with the parameter it was made with; an identical or
slightly noisy device yields no cause. Every hypothesis is scored like for like (a
variant that empties a stride gains nothing, a head without foreground is not measured),
the closest list holds only hypotheses that gain, a fit on few anchors says so and needs
the minimum, a device that passed gets observations, and the precision hypothesis names
the dtype whose noise level fits. (Real dumps with library faults: the acceptance tests
in conformance/test_fault_injection.py and conformance/test_diagnose_precision.py.)"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from scrfd_ref.core.heads import Heads
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.diagnose.heads import Verdict, diagnose, head_snrs, raw_dtype_cause
from scrfd_ref.diagnose.precision import fit_precision

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


def _bias(shift: float):
    def fn(a):
        logit = np.log(a / (1 - a)) + shift
        return 1 / (1 + np.exp(-logit))
    return fn


def test_a_variant_that_empties_a_stride_gains_nothing():
    """A preprocessing variant under which the model sees no face on stride 32: scored on
    the recorded reference's foreground, its stride-32 heads are measured on both sides
    (they match worse), so it gains nothing; on its own foreground they would be empty,
    and an empty head is not measured (never a perfect match)."""
    from scrfd_ref.diagnose.run import preprocessing_causes

    device = [noisy(h, i, rel=0.03) for i, h in enumerate(REF)]
    emptied = [changed(h, "scores", 32, lambda a: np.full_like(a, 0.01)) for h in REF]

    class Refs:                       # every variant re-run gives the emptied heads
        profile = get_profile("device-flow")

        def variant(self, items, text, change):
            return SimpleNamespace(heads={f"e/{i}": h for i, h in enumerate(emptied)})

    items = [SimpleNamespace(event="e", name=str(i)) for i in range(len(REF))]
    causes = preprocessing_causes(Refs(), items, REF, device, 0.3, 0)
    assert len(causes) > 5
    assert all(c.gain_db <= 0 for c in causes), [c.describe() for c in causes]
    assert all(c.heads == ["the heads of strides 8, 16, 32"] for c in causes)
    assert not any(name.endswith("_32") for name in head_snrs(emptied, device, 0.3))


def test_a_head_without_foreground_is_never_a_match_or_a_cause():
    no32 = [changed(h, "scores", 32, lambda a: np.full_like(a, 0.01)) for h in REF]
    device = [changed(h, "boxes", 32, lambda a: a * 3.0) for h in no32]
    assert set(head_snrs(no32, device, 0.3)) == {f"{k}_{s}" for k in ("score", "bbox", "kps")
                                                  for s in (8, 16)}
    result = diagnose(no32, device, fg_floor=0.3, min_gain_db=10.0)
    assert not result.causes
    assert not any("bbox_32" in c.heads or "score_32" in c.heads for c in result.ranked)


def test_closest_lists_only_hypotheses_that_gain():
    same = run(REF)
    assert same.closest == [] and same.ranked
    assert same.lines() == ["no known cause matches; nothing brings the device closer"]
    result = run([noisy(h, i, rel=0.05) for i, h in enumerate(REF)])
    assert not result.causes
    assert all(c.gain_db > 0 for c in result.closest)
    assert any(c.gain_db <= 0 for c in result.ranked)


def test_a_fit_on_few_anchors_states_how_many_and_needs_the_minimum():
    # stride 32: 8 anchors an image, 2 of them foreground, 6 images -> 12 anchors
    biased = [changed(h, "scores", 32, _bias(2.0)) for h in REF]
    loose = diagnose(REF, biased, fg_floor=0.3, min_gain_db=10.0, min_anchors=12)
    top = loose.causes[0]
    assert (top.name, top.heads, top.anchors) == ("score_bias", ["score_32"], 12)
    assert "12 foreground anchors" in loose.lines()[0]
    strict = diagnose(REF, biased, fg_floor=0.3, min_gain_db=10.0, min_anchors=13)
    assert not strict.causes
    assert strict.closest[0].name == "score_bias" and strict.closest[0].gain_db >= 10.0
    assert ("12 foreground anchors (fitted on fewer than the 13 a cause needs)"
            in strict.lines()[1])


def test_a_device_that_passes_gets_observations_not_causes():
    biased = [changed(h, "scores", 8, _bias(0.5)) for h in REF]
    passed = diagnose(REF, biased, fg_floor=0.3, min_gain_db=10.0,
                      verdict=Verdict("pass", "int8", ["heads", "anchors"], [], 6))
    assert not passed.causes and not passed.failed
    assert passed.observations[0].name == "score_bias"
    lines = passed.lines()
    assert lines[0].startswith("the device passes every int8 gate on these images (6 images")
    assert lines[1].startswith("observations (systematic deviations inside the gates")
    failed = diagnose(REF, biased, fg_floor=0.3, min_gain_db=10.0,
                      verdict=Verdict("fail", "int8", ["anchors"], ["FAIL anchors/x"], 6))
    assert failed.failed and failed.causes[0].name == "score_bias"
    assert failed.lines()[:2] == ["the device fails 1 int8 gate row(s) on these images "
                                  "(6 images; anchors):", "   FAIL anchors/x"]


HEADS = ("score_8", "bbox_8", "kps_8", "score_16", "bbox_16", "kps_16")


def _levels(start: float) -> dict[str, float]:
    return {h: start + i for i, h in enumerate(HEADS)}


HONEST = {"fp32": {"ref": dict.fromkeys(HEADS, 80.0)}, "fp16": {"f16": _levels(52.0)},
          "bf16": {"b16": _levels(33.0)}, "int8": {"i8": _levels(20.0)}}


def test_the_precision_hypothesis_names_the_arithmetic_the_noise_fits():
    device = _levels(33.3)                   # bf16's noise, claimed as fp16
    cause = fit_precision(device, HONEST, "fp16", 5.0).cause()
    assert cause.text == "the device computes in bf16, not fp16"
    # medians of the six heads: device 35.8, honest bf16 35.5, fp16 54.5
    assert cause.describe() == ("the device computes in bf16, not fp16 (foreground SNR "
                                "35.8 dB over 6 heads; honest bf16 35.5, honest fp16 54.5; "
                                "fits within 5 dB)")
    assert cause.params["dtype"] == "bf16"
    assert fit_precision(device, HONEST, "bf16", 5.0).cause() is None
    # a fault on two of the six heads (worse than every honest device, int8's 21 and 24
    # dB, by more than the margin) leaves the fit to the other four
    faulty = dict(device, bbox_8=5.0, bbox_16=3.0)
    assert fit_precision(faulty, HONEST, "bf16", 5.0).cause() is None
    fit = fit_precision(faulty, HONEST, "fp16", 5.0)
    assert fit.faulty == ["bbox_16", "bbox_8"] and fit.cause().params["dtype"] == "bf16"
    assert "over 4 heads" in fit.cause().describe()
    # between fp16 and bf16 (8 dB from one, 11 from the other): nothing fits, no cause
    between = fit_precision(_levels(44.0), HONEST, "fp16", 5.0)
    assert between.cause() is None and between.best is None
    assert between.line().endswith("fits no honest dtype (within 5 dB)")
    # only the levels every side measured are compared
    assert fit_precision({"score_32": 30.0}, HONEST, "fp16", 5.0) is None
