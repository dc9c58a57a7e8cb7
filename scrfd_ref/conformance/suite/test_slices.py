"""Level 4: conformance per face attribute and scale (the WIDER FACE labels: blur,
expression, illumination, occlusion, pose; small / medium / large faces).

Per slice the device's AP and recall at the operating point against the fp32 reference's
on the same images, each drop judged on its paired-bootstrap interval (pass on the 95%
interval, fail only on the Bonferroni-corrected one across the slices, inconclusive
between; :mod:`scrfd_ref.conformance.slice_checks`). A ground truth without attributes
(a text file) leaves the level inconclusive, never a pass.
"""
from __future__ import annotations

from pathlib import Path

from scrfd_ref.conformance.slice_checks import check_slices


def test_attribute_slices_within_gate(device_spec, slices_paired, gates, conformance_report,
                                      pytestconfig, judge):
    paired, missing = slices_paired
    result = check_slices(paired, gates, device_spec.dtype, missing=missing)
    worst = sorted((r for r in result.rows if r.value == r.value), key=lambda r: -r.value)[:3]
    print(f"\n{device_spec.id}: slices " + "; ".join(r.message for r in worst))
    folder = pytestconfig.getoption("--report")
    if folder and paired is not None:
        from scrfd_ref.report.slices import plot_forest

        limits = {m: gates.value(device_spec.dtype, "slices", f"{m}_drop_max")
                  for m in ("ap", "recall")}
        png = plot_forest(paired.to_dict(), Path(folder) / f"slices_{device_spec.id}.png",
                          f"{device_spec.id} vs fp32 reference, per slice", limits)
        conformance_report.add_artifact(device_spec.id, "slice forest plot", png)
    judge(result)
