"""Faults that hurt one kind of face: the slice level catches what the overall AP averages.

An ONNX Runtime int8 device of ``500m_bnkps`` (the project's default recipe) on the 344
held-out WIDER val images, with one pipeline fault at a time
(:mod:`scrfd_ref.conformance.pipeline_faults`):

- ``bias_scores`` on stride 32 (a score-head requantization offset of -2 logits on the
  stride that detects the largest faces): the AP of easy / medium / hard stays inside the
  int8 gates, the ``scale=large`` slice fails both its gates;
- the input range clipped to 40..215 (a fused preprocessing that saturates) and a Gaussian
  blur of the network input: the slice level passes neither; the blur fails ``blur=heavy``
  (the faces it erases first). On 344 images and with limits loose enough for honest int8
  (NNCF loses one of 57 large faces) the clipped range leaves its hurt slices inconclusive,
  not failed: its drops (0.05 to 0.07 on illumination=extreme) are measured with intervals
  that reach the limit; it passes the AP gates: only the slices refuse it. (The contrast
  compressed and a nearest resize behave alike: ``scrfd_ref/conformance/pipeline_faults.py``
  has them; the closing note of the attributes issue has their rows.)

The same faulty runs judged under every dtype's slice gates show that each slice bound can
fail (the fault-injection matrix shows it for the other levels). The honest devices of the
conformance matrix pass every slice in ``conformance/test_slices.py``.
"""
from __future__ import annotations

import pytest

from scrfd_ref.backends import get_backend
from scrfd_ref.conformance.checks import ap_bootstrap, check_ap
from scrfd_ref.conformance.faults import Fault
from scrfd_ref.conformance.gates import DTYPES, declared
from scrfd_ref.conformance.pipeline_faults import FaultyBackend, InputFault, nearest_resize
from scrfd_ref.conformance.runs import run_device
from scrfd_ref.conformance.slice_checks import check_slices, slices_bootstrap
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.quantize.prepare import prepare_model

pytestmark = [pytest.mark.acceptance, pytest.mark.data, pytest.mark.slow]

VARIANT = "500m_bnkps"
DTYPE = "int8"
S32 = "bias_scores(32 -2)"
#: input fault -> the slices it must fail (the slice level must not pass any of them)
MUST_FAIL = {"input_clip(40..215)": set(), "input_blur(sigma 1 px)": {"blur=heavy"}}
#: fault label -> (input fault, head fault, nearest resize)
FAULTS = {
    S32: (None, Fault("bias_scores", stride=32, magnitude=-2.0), False),
    "input_clip(40..215)": (InputFault("input_clip", low=40, high=215), None, False),
    "input_blur(sigma 1 px)": (InputFault("input_blur", sigma=1.0), None, False),
}


@pytest.fixture(scope="module")
def judged(variant_file, eval_items, ground_truth, gates, reference_run_for):
    """fault -> (AP level, slice level under int8 gates, paired slices)."""
    profile = get_profile("widerface-eval")
    model = variant_file(VARIANT)
    reference = reference_run_for(VARIANT, "widerface-eval")   # the suite's, cached
    int8 = prepare_model(model, dtype=DTYPE)
    keys = [tuple(k.split("/", 1)) for k in reference.detections]
    out = {}
    for label, (input_fault, head_fault, nearest) in FAULTS.items():
        prof = nearest_resize(profile) if nearest else profile
        with FaultyBackend(get_backend("ort", int8, dtype=DTYPE), prof,
                           input_fault=input_fault, head_fault=head_fault) as backend:
            run = run_device(backend, prof, eval_items, device=label, progress=False)
        ref_p, dev_p = reference.predictions(), run.predictions()
        paired_ap = ap_bootstrap(ref_p, dev_p, ground_truth, keys, gates, DTYPE)
        ap = check_ap(paired_ap.result_a, paired_ap.result_b, gates, DTYPE, paired=paired_ap)
        paired = slices_bootstrap(ref_p, dev_p, ground_truth, keys, gates, DTYPE)
        out[label] = (ap, check_slices(paired, gates, DTYPE), paired)
    return out


def _failed_slices(level) -> list[str]:
    return sorted({r.subject.split()[1] for r in level.rows if r.failed})


def test_a_large_face_fault_passes_the_ap_gates_and_fails_its_slice(judged):
    ap, slices, paired = judged[S32]
    print(f"\n{S32}: AP " + "; ".join(r.message for r in ap.rows))
    print("\n".join(r.message for r in slices.rows if r.failed))
    assert ap.verdict == "pass", ap.failures
    assert slices.verdict == "fail"
    assert "scale=large" in _failed_slices(slices)
    large = [r for r in slices.rows if r.subject.startswith("slice scale=large ")]
    assert {r.gate for r in large if r.failed} == {"ap_drop_max", "recall_drop_max"}
    assert paired["scale=large"].recall_delta < -0.2


def _slices(level, verdict: str) -> list[str]:
    return sorted({r.subject.split()[1] for r in level.rows if r.verdict == verdict})


@pytest.mark.parametrize("label", list(MUST_FAIL))
def test_no_input_fault_passes_the_slice_level(judged, label):
    ap, slices, _ = judged[label]
    print(f"\n{label}: AP level {ap.verdict}; slices failed {_slices(slices, 'fail')}, "
          f"inconclusive {_slices(slices, 'inconclusive')}")
    assert slices.verdict != "pass", "every slice passed a faulty pipeline"
    assert MUST_FAIL[label] <= set(_failed_slices(slices)), slices.failures[:5]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_slice_bound_can_fail(judged, gates, dtype, ground_truth):
    """The stride-32 fault's paired slices judged under ``dtype``'s slice gates: each
    declared slice bound fails on some slice."""
    _, _, paired = judged[S32]
    failed = check_slices(paired, gates, dtype).failed_gates
    bounds = {g.name for g in declared(group="slices") if g.kind != "param"}
    assert bounds <= failed, f"{dtype}: no slice fails {sorted(bounds - failed)}"
