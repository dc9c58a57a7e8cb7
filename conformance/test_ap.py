"""Level 3: WIDER FACE AP (official protocol) of the device vs the fp32 reference.

Both runs use the same profile and images; the gates bound the absolute AP drop per
setting and the MLPerf-style ratio device / reference.
"""
from __future__ import annotations

from pathlib import Path

from scrfd_ref.report import overlay_picture, plot_pr_comparison

SETTINGS = ("easy", "medium", "hard")


def test_wider_ap_within_gate(device_spec, ap_pair, device_run, reference_run, gates,
                              conformance_report, pytestconfig, wider_images_dir, request):
    ref, dev = ap_pair
    rows = []
    for s in SETTINGS:
        rows += gates.check(device_spec.dtype, "ap", f"{s} AP (device {dev.ap[s]:.4f}, "
                                                     f"reference {ref.ap[s]:.4f})",
                            {"abs_delta": ref.ap[s] - dev.ap[s],
                             "ratio": dev.ap[s] / ref.ap[s] if ref.ap[s] > 0 else 1.0})
    print(f"\n{device_spec.id}: AP easy/medium/hard device "
          + " / ".join(f"{dev.ap[s]:.4f}" for s in SETTINGS) + ", reference "
          + " / ".join(f"{ref.ap[s]:.4f}" for s in SETTINGS))
    conformance_report.record(device_spec.id, "ap", rows,
                              {"device": dev.to_dict(), "reference": ref.to_dict()},
                              test=request.node.nodeid)
    folder = pytestconfig.getoption("--report")
    if folder:
        _pictures(Path(folder), device_spec, ref, dev, device_run, reference_run, gates,
                  wider_images_dir, conformance_report)
    failed = [r.message for r in rows if not r.passed]
    assert not failed, f"{device_spec.id}: AP gates failed:\n" + "\n".join(failed)


def _pictures(folder, spec, ref, dev, device_run, reference_run, gates, images_dir, report):
    """PR curves of device vs reference and an overlay of the worst-matching image."""
    from scrfd_ref.compare import compare_detections

    pr = plot_pr_comparison(ref, dev, folder / f"pr_{spec.id}.png", f"{spec.id} vs fp32 reference")
    report.add_artifact(spec.id, "PR curves", pr)
    floor = gates.value(spec.dtype, "detections", "score_floor")
    margin = gates.value(spec.dtype, "detections", "score_margin")
    scored = [(compare_detections(k, reference_run.detections[k], d, floor=floor, margin=margin), k)
              for k, d in device_run.detections.items()]
    worst, key = min(scored, key=lambda mk: (mk[0].recall, mk[0].precision, -mk[0].ref_count))
    over = overlay_picture(images_dir / f"{key}.jpg", _above(reference_run.detections[key], floor),
                           _above(device_run.detections[key], floor),
                           folder / f"worst_{spec.id}.png",
                           f"{key}: ref green, device red, recall {worst.recall:.2f}, "
                           f"precision {worst.precision:.2f}")
    report.add_artifact(spec.id, "worst image", over)


def _above(dets, floor):
    from scrfd_ref.detections import Detections

    keep = dets.scores >= floor
    return Detections(dets.boxes[keep], dets.scores[keep],
                      None if dets.landmarks is None else dets.landmarks[keep])
