"""Faults of the pipeline around the network (``scrfd_ref.conformance.pipeline_faults``).

Independent references: the input faults are checked in pixel space,
``pixel = blob * std + mean``, against the definitions computed here with numpy (a clip, a
contrast compression towards 127.5 rounded to whole levels, a blur that keeps a constant
image constant); the head fault of :class:`FaultyBackend` against the device layout written
out here by index (``map[0, a*C + c, y, x] = standard[(y*W + x)*2 + a, c]``, score logits
``log(p / (1 - p))``), with the fault's logit offset added on stride 32 only.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scrfd_ref.backends.base import Backend
from scrfd_ref.conformance.faults import Fault
from scrfd_ref.conformance.pipeline_faults import (
    FaultyBackend,
    InputFault,
    apply_input_fault,
    nearest_resize,
)
from scrfd_ref.core.errors import InputError
from scrfd_ref.core.profiles import Profile, get_profile

SCRFD = get_profile("insightface")
# per-channel normalisation differing between channels: the order must be kept
ODD = dataclasses.replace(SCRFD, name="odd", mean=(100.0, 120.0, 140.0), std=(50.0, 60.0, 70.0))


def blob_of(pixels: np.ndarray, profile: Profile) -> np.ndarray:
    mean = np.asarray(profile.mean, np.float64).reshape(1, 3, 1, 1)
    std = np.asarray(profile.std, np.float64).reshape(1, 3, 1, 1)
    return ((pixels - mean) / std).astype(np.float32)


def pixels_of(blob: np.ndarray, profile: Profile) -> np.ndarray:
    mean = np.asarray(profile.mean, np.float64).reshape(1, 3, 1, 1)
    std = np.asarray(profile.std, np.float64).reshape(1, 3, 1, 1)
    return blob.astype(np.float64) * std + mean


def random_pixels(seed: int = 0, shape=(2, 3, 24, 40)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.float64)


# --------------------------------------------------------------------------- input faults

@pytest.mark.parametrize("profile", [SCRFD, ODD], ids=["scrfd", "per-channel"])
def test_input_clip_keeps_pixels_inside_and_moves_only_the_others(profile):
    px = random_pixels(1)
    low, high = 40.0, 215.0
    blob = blob_of(px, profile)
    out = apply_input_fault(blob, InputFault("input_clip", low=low, high=high), profile)
    assert out.dtype == np.float32 and out.shape == blob.shape
    got = pixels_of(out, profile)
    tol = 1e-3
    assert got.min() >= low - tol and got.max() <= high + tol
    inside = (px >= low) & (px <= high)
    assert inside.any() and (~inside).any()
    assert np.abs(got[inside] - px[inside]).max() <= tol
    assert np.abs(got[px < low] - low).max() <= tol
    assert np.abs(got[px > high] - high).max() <= tol
    assert np.array_equal(blob, blob_of(px, profile))   # the input is not changed


@pytest.mark.parametrize("factor", [0.5, 0.25, 1.0])
def test_input_compress_maps_mid_grey_plus_d_to_mid_grey_plus_d_times_factor(factor):
    px = random_pixels(2)
    out = apply_input_fault(blob_of(px, SCRFD), InputFault("input_compress", factor=factor),
                            SCRFD)
    got = pixels_of(out, SCRFD)
    d = px - 127.5
    want = np.array([round(v) for v in (127.5 + d * factor).ravel()]).reshape(px.shape)
    assert np.abs(got - want).max() <= 1e-3
    assert np.abs(got - np.round(got)).max() <= 1e-3        # whole levels
    if factor < 1:
        assert np.ptp(got) < np.ptp(px)


def test_input_compress_by_hand():
    px = np.zeros((1, 3, 1, 6))
    px[..., :] = [127.5 - 101, 127.5 - 11, 127.5 - 3, 127.5 + 3, 127.5 + 11, 127.5 + 101]
    got = pixels_of(apply_input_fault(blob_of(px, SCRFD), InputFault("input_compress",
                                                                     factor=0.5), SCRFD), SCRFD)
    # 127.5 -+ 50.5 = 77 / 178, -+ 5.5 = 122 / 133, -+ 1.5 = 126 / 129 (no ties)
    assert np.allclose(got[0, :, 0], [[77, 122, 126, 129, 133, 178]] * 3, atol=1e-3)


@pytest.mark.parametrize("profile", [SCRFD, ODD], ids=["scrfd", "per-channel"])
def test_input_blur_keeps_a_constant_image_and_smooths_an_edge(profile):
    flat = np.zeros((1, 3, 32, 32))
    flat[:, 0], flat[:, 1], flat[:, 2] = 30.0, 128.0, 250.0
    out = apply_input_fault(blob_of(flat, profile), InputFault("input_blur", sigma=1.5), profile)
    assert np.abs(pixels_of(out, profile) - flat).max() <= 1e-3
    edge = np.zeros((1, 3, 32, 32))
    edge[..., 16:] = 200.0
    got = pixels_of(apply_input_fault(blob_of(edge, profile),
                                      InputFault("input_blur", sigma=1.5), profile), profile)
    assert 0 < got[0, 0, 10, 15] < 100 < got[0, 0, 10, 16] < 200   # the edge is spread
    assert np.abs(got[..., :8] - 0).max() <= 1e-3 and np.abs(got[..., 24:] - 200).max() <= 1e-3
    assert got.mean() == pytest.approx(edge.mean(), abs=0.5)


@pytest.mark.parametrize("kwargs", [
    dict(name="input_clip", low=100, high=100), dict(name="input_clip", low=200, high=100),
    dict(name="input_clip", low=-1, high=100), dict(name="input_clip", low=0, high=256),
    dict(name="input_compress", factor=0.0), dict(name="input_compress", factor=1.5),
    dict(name="input_compress", factor=-0.5),
    dict(name="input_blur", sigma=0.0), dict(name="input_blur", sigma=-1.0),
    dict(name="input_blur"), dict(name="input_gamma"),
])
def test_invalid_input_faults_are_refused(kwargs):
    with pytest.raises(InputError, match=kwargs["name"]):
        InputFault(**kwargs)


def test_labels_name_the_parameters():
    assert InputFault("input_clip", low=40, high=215).label == "input_clip(40..215)"
    assert InputFault("input_compress", factor=0.35).label == "input_compress(x0.35)"
    assert InputFault("input_blur", sigma=1).label == "input_blur(sigma 1 px)"


def test_nearest_resize_changes_only_the_interpolation():
    p = nearest_resize(SCRFD)
    assert p.interpolation == "nearest" and SCRFD.interpolation != "nearest"
    assert dataclasses.replace(p, interpolation=SCRFD.interpolation) == SCRFD


# --------------------------------------------------------------------------- FaultyBackend

W, H = 96, 64
STRIDES = (8, 16, 32)
CHANNELS = {"score": 1, "bbox": 4, "kps": 10}


def standard_outputs(seed: int = 0) -> dict[tuple[str, int], np.ndarray]:
    """(kind, stride) -> the insightface export's unbatched ``(H/s * W/s * 2, C)`` output."""
    rng = np.random.default_rng(seed)
    out = {}
    for kind, c in CHANNELS.items():
        for s in STRIDES:
            n = (H // s) * (W // s) * 2
            out[(kind, s)] = (rng.uniform(0.02, 0.98, (n, c)) if kind == "score"
                              else rng.normal(0, 2, (n, c))).astype(np.float32)
    return out


def device_map(a: np.ndarray, kind: str, s: int) -> np.ndarray:
    """The device layout ``(1, 2C, H/s, W/s)`` of a standard output, by index."""
    c, h, w = CHANNELS[kind], H // s, W // s
    m = np.zeros((1, 2 * c, h, w), np.float64)
    for y in range(h):
        for x in range(w):
            for anchor in range(2):
                m[0, anchor * c:(anchor + 1) * c, y, x] = a[(y * w + x) * 2 + anchor]
    if kind == "score":
        m = np.log(m / (1 - m))
    return m


class FixedBackend(Backend):
    """Returns the same standard-layout outputs for any blob; records what it was given."""

    name = "fixed"

    def __init__(self, outputs: list[np.ndarray]):
        self.outputs = outputs
        self.blobs: list[np.ndarray] = []
        self.closed = False

    @property
    def input_size(self):
        return (W, H)

    def run(self, blob):
        self.blobs.append(blob)
        return [a.copy() for a in self.outputs]

    def info(self):
        return {"library": "fixed", "dtype": "fp32"}

    def close(self):
        self.closed = True


def _by_shape(arrays: list[np.ndarray]) -> dict[tuple[str, int], np.ndarray]:
    found = {}
    for a in arrays:
        kind = {2 * c: k for k, c in CHANNELS.items()}[a.shape[1]]
        s = W // a.shape[3]
        assert a.shape == (1, 2 * CHANNELS[kind], H // s, W // s)
        found[(kind, s)] = a
    assert len(found) == 9
    return found


@pytest.mark.parametrize("magnitude", [2.0, -1.5])
def test_a_bias_scores_head_fault_moves_only_the_stride_32_score_logits(magnitude):
    std = standard_outputs()
    keys = list(std)
    order = np.random.default_rng(1).permutation(len(keys))   # a backend's own output order
    inner = FixedBackend([std[keys[i]] for i in order])
    fault = Fault("bias_scores", stride=32, magnitude=magnitude)
    backend = FaultyBackend(inner, SCRFD, head_fault=fault)
    blob = np.zeros((1, 3, H, W), np.float32)
    got = _by_shape(backend.run(blob))
    for (kind, s), a in std.items():
        want = device_map(a, kind, s)
        if (kind, s) == ("score", 32):
            want = want + magnitude
        np.testing.assert_allclose(got[(kind, s)], want, rtol=1e-5, atol=1e-5,
                                   err_msg=f"{kind}@{s}")
    assert np.array_equal(inner.blobs[0], blob)    # no input fault: the blob untouched
    info = backend.info()
    assert info["library"] == "fixed" and fault.label in info["fault"]
    assert "bias_scores" in info["fault"]
    assert backend.input_size == (W, H)
    backend.close()
    assert inner.closed


def test_without_a_head_fault_the_outputs_are_the_inner_ones_and_the_input_fault_applies():
    std = standard_outputs(2)
    inner = FixedBackend(list(std.values()))
    clip = InputFault("input_clip", low=40, high=215)
    backend = FaultyBackend(inner, SCRFD, input_fault=clip)
    px = random_pixels(3, (1, 3, H, W))
    out = backend.run(blob_of(px, SCRFD))
    for a, b in zip(out, std.values()):
        assert np.array_equal(a, b)
    seen = pixels_of(inner.blobs[0], SCRFD)
    assert seen.min() >= 40 - 1e-3 and seen.max() <= 215 + 1e-3
    assert backend.info()["fault"] == clip.label
    both = FaultyBackend(FixedBackend(list(std.values())), SCRFD, input_fault=clip,
                         head_fault=Fault("bias_scores", stride=32, magnitude=1.0))
    assert both.info()["fault"].startswith(clip.label + "; bias_scores")
