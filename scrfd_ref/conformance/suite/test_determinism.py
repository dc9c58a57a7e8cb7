"""The reference is reproducible: a self-check, named as such (not a device).

The fp32 ONNX Runtime reference is never a device in the conformance matrix (comparing it
with itself could not fail). What is worth checking about it is that its numbers do not
depend on how ONNX Runtime happens to schedule the graph: the same model with graph
optimisations disabled and one intra-op thread (another kernel choice and summation
order) must agree with the reference within the fp32 gates, at head and detection level.
"""
from __future__ import annotations

import pytest

from scrfd_ref.backends.ort import OrtBackend
from scrfd_ref.conformance.checks import check_detections, check_heads
from scrfd_ref.conformance.runs import run_device
from scrfd_ref.core.profiles import get_profile

VARIANT = "500m_bnkps"

#: two runs of the reference model over a WIDER event: the full tier
pytestmark = pytest.mark.acceptance
EVENT = "19--Couple"


@pytest.fixture(scope="module")
def runs(pytestconfig, variant_file, eval_items):
    if pytestconfig.getoption("--device-outputs"):
        pytest.skip("the self-check runs the reference model, not a replay folder")
    model = variant_file(VARIANT)
    items = [it for it in eval_items if it.event == EVENT]
    heads = [f"{it.event}/{it.name}" for it in items[::6]]
    profile = get_profile("widerface-eval")
    out = {}
    for label, options in (("reference", {}),
                           ("unoptimised-1-thread", {"graph_optimization": "disable",
                                                     "intra_threads": 1})):
        with OrtBackend(model, **options) as backend:
            out[label] = run_device(backend, profile, items, head_images=heads, device=label,
                                    progress=False)
    return out


def test_reference_does_not_depend_on_graph_optimisation_or_threads(runs, gates):
    ref, other = runs["reference"], runs["unoptimised-1-thread"]
    heads = check_heads(ref, other, gates, "fp32")
    dets = check_detections(ref, other, gates, "fp32")
    assert dets.metrics["images"] == len(ref.detections) > 0
    assert heads.passed and dets.passed, "\n".join(heads.failures + dets.failures)
