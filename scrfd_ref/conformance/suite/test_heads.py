"""Level 1: every output head of the device equals the fp32 reference within its dtype's gates.

Per head (score_8 .. kps_32, in the common form: scores after sigmoid, distances in stride
units): shape/layout, no NaN/Inf, cosine similarity, SNR (dB), share of elements within
atol + rtol*|ref|. Tolerant comparison: the gates per dtype are in data/gates.toml. No head
image in common, or a head the device lacks, fails (never a silent pass).
"""
from __future__ import annotations

from scrfd_ref.conformance.checks import check_anchors, check_heads


def test_heads_match_reference(device_spec, device_run, reference_run, gates, judge):
    judge(check_heads(reference_run, device_run, gates, device_spec.dtype))


def test_foreground_heads_match_reference(device_spec, device_run, reference_run, gates, judge):
    """Heads on the anchors that hold faces (reference score >= fg_score_floor), apart from
    the background, whose score distribution is compared on its own."""
    judge(check_anchors(reference_run, device_run, gates, device_spec.dtype))
