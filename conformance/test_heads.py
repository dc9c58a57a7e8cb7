"""Level 1: every output head of the device equals the fp32 reference within its dtype's gates.

Per head (score_8 .. kps_32, in the common form: scores after sigmoid, distances in stride
units): shape/layout, no NaN/Inf, cosine similarity, SNR (dB), share of elements within
atol + rtol*|ref|. Tolerant comparison: the gates per dtype are in data/gates.toml.
"""
from __future__ import annotations

from scrfd_ref.compare import compare_heads


def test_heads_match_reference(device_spec, device_run, reference_run, gates, conformance_report,
                               request):
    dtype = device_spec.dtype
    atol = gates.value(dtype, "heads", "atol")
    rtol = gates.value(dtype, "heads", "rtol")
    pairs = [(k, reference_run.heads[k], 0, device_run.heads[k], 0)
             for k in reference_run.heads if k in device_run.heads]
    assert pairs, "no head-level images in common between device and reference"
    stats = compare_heads(pairs, atol, rtol)
    rows = []
    for s in stats:
        subject = f"{s.name} (worst image {s.worst_image})"
        rows += gates.check(dtype, "heads", subject,
                            {"cosine": s.cosine, "snr_db": s.snr_db, "within_tol": s.within_tol,
                             "nonfinite": s.nonfinite, "shape_ok": float(s.shape_ok)})
    conformance_report.record(device_spec.id, "heads", rows, [s.to_dict() for s in stats],
                              test=request.node.nodeid)
    failed = [r.message for r in rows if not r.passed]
    assert not failed, f"{device_spec.id}: head gates failed:\n" + "\n".join(failed)
