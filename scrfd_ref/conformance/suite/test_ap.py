"""Level 3: WIDER FACE AP (official protocol) of the device vs the fp32 reference.

Both runs use the same profile and images; the gates bound the AP drop per setting
(reference - device) and the MLPerf-style ratio device / reference, each judged on its
95% paired-bootstrap interval: pass or fail only when the whole interval is on one side of
the limit, inconclusive (the images cannot decide) when it straddles it. A setting without
faces among the images leaves both unmeasured: inconclusive, never a pass.
"""
from __future__ import annotations

from pathlib import Path

from scrfd_ref.conformance.checks import check_ap, worst_images
from scrfd_ref.report.pictures import overlay_picture, plot_pr_comparison


def test_wider_ap_within_gate(device_spec, ap_pair, ap_paired, device_run, reference_run, gates,
                              conformance_report, pytestconfig, wider_images_dir, judge):
    ref, dev = ap_pair
    print(f"\n{device_spec.id}: AP " + ", ".join(
        f"{s} device {dev.ap[s]:.4f} reference {ref.ap[s]:.4f} (ratio {ap_paired[s].ratio:.4f}"
        f" [{ap_paired[s].ratio_interval.low:.4f}, {ap_paired[s].ratio_interval.high:.4f}])"
        for s in ref.settings))
    folder = pytestconfig.getoption("--report")
    if folder:
        _pictures(Path(folder), device_spec, ref, dev, device_run, reference_run, gates,
                  wider_images_dir, conformance_report)
    judge(check_ap(ref, dev, gates, device_spec.dtype, paired=ap_paired))


def _pictures(folder, spec, ref, dev, device_run, reference_run, gates, images_dir, report):
    """PR curves of device vs reference and an overlay of the worst-matching image."""
    from scrfd_ref.conformance.compare import compare_detections

    pr = plot_pr_comparison(ref, dev, folder / f"pr_{spec.id}.png", f"{spec.id} vs fp32 reference")
    report.add_artifact(spec.id, "PR curves", pr)
    floor = gates.value(spec.dtype, "detections", "score_floor")
    margin = gates.value(spec.dtype, "detections", "score_margin")
    per_image = [compare_detections(k, reference_run.detections[k], d, floor=floor,
                                    margin=margin)
                 for k, d in device_run.detections.items()]
    worst = worst_images(per_image, 1)
    if not worst:
        return
    m = worst[0]
    over = overlay_picture(images_dir / f"{m.image}.jpg",
                           _above(reference_run.detections[m.image], floor),
                           _above(device_run.detections[m.image], floor),
                           folder / f"worst_{spec.id}.png",
                           f"{m.image}: ref green, device red, {m.found}/{m.ref_count} found, "
                           f"{m.dev_count - m.precise} extra")
    report.add_artifact(spec.id, "worst image", over)


def _above(dets, floor):
    from scrfd_ref.core.detections import Detections

    keep = dets.scores >= floor
    return Detections(dets.boxes[keep], dets.scores[keep],
                      None if dets.landmarks is None else dets.landmarks[keep])
