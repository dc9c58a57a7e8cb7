"""Every gate can fail: known faults injected into an honest dump, the checks run on each.

An honest fp32 dump of ``500m_bnkps`` (device layout, device-flow profile, two WIDER
events) is the control: it passes every gate of every dtype. Copies of it with one fault
each (:mod:`scrfd_ref.conformance.faults`: a scaled head, a dead stride, swapped landmarks, a score
bias, boxes in another channel order, NaN, missing landmark heads, two images swapped)
and a dump made with another pad value than its manifest claims are replayed and checked
at head, detection, collapse and AP level (:mod:`scrfd_ref.conformance.checks`). Each fault must fail
the levels it breaks, and together the faults must fail every declared bound of every
dtype's gates: a gate that no fault can fail would be a gate that cannot fail.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scrfd_ref.backends import get_backend
from scrfd_ref.conformance.checks import run_all
from scrfd_ref.conformance.faults import Fault, inject
from scrfd_ref.conformance.gates import DTYPES, declared
from scrfd_ref.conformance.runs import replay_images, run_device
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.device.flow import dump, image2npz
from scrfd_ref.device.model_prep import prepare_model
from scrfd_ref.widerface.evaluate import evaluate

VARIANT = "500m_bnkps"
EVENTS = ("19--Couple", "4--Dancing")

#: fault -> the levels it must fail under every dtype's gates
FAULTS = {
    Fault("scale_head", kind="bbox", stride=16, magnitude=2.0): {"heads", "detections", "ap"},
    Fault("dead_stride", stride=8, magnitude=30.0): {"heads", "detections", "collapse", "ap"},
    Fault("swap_landmarks", pair=(0, 4)): {"heads", "detections"},
    Fault("bias_scores", magnitude=3.0): {"heads", "detections"},  # monotone: AP may hold
    Fault("bias_scores", magnitude=-5.0): {"heads", "detections", "collapse", "ap"},
    Fault("box_order"): {"heads", "detections", "ap"},
    Fault("nan", kind="bbox", stride=32, magnitude=50): {"heads"},
    Fault("drop_landmarks"): {"heads", "detections"},
    Fault("swap_images", pair=(0, 1)): {"detections"},
}
#: faults the looser gates of some dtypes cannot catch (findings, not expectations):
#: two swapped images out of 79 move the pooled fp16 / int8 recall by less than their
#: margin (a per-image gate would catch it; see the int8 / gates issue)
NOT_CAUGHT = {("swap_images(0<->1)", "fp16"), ("swap_images(0<->1)", "int8")}
PAD_FAULT = "profile: pad 0 instead of the recorded 114"

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def world(tmp_path_factory, pytestconfig, variant_file, wider_images_dir, ground_truth):
    """(reference run, honest dump folder, images, profile) for the two events."""
    if pytestconfig.getoption("--device-outputs"):
        pytest.skip("the fault tests make their own dumps, not a replay of --device-outputs")
    model = variant_file(VARIANT)
    root = tmp_path_factory.mktemp("faults")
    image2npz(wider_images_dir, root / "npz", root / "datalist.txt", events=EVENTS,
              progress=False)
    profile = get_profile("device-flow")
    device_model = prepare_model(model, layout="device", input_size=profile.input_size)
    with get_backend("ort", device_model) as backend:
        dump(backend, root / "datalist.txt", root / "honest", profile, progress=False,
             meta={"variant": VARIANT, "dtype": "fp32"})
        dump(backend, root / "datalist.txt", root / "pad0", profile.replace(pad_value=0.0),
             progress=False, meta={"variant": VARIANT, "dtype": "fp32"})
    # the pad-0 dump claims the recorded profile of the honest one (a misconfigured device)
    honest_doc = json.loads((root / "honest" / "scrfd_dump.json").read_text())
    pad_doc = json.loads((root / "pad0" / "scrfd_dump.json").read_text())
    pad_doc["identity"]["profile"] = honest_doc["identity"]["profile"]
    (root / "pad0" / "scrfd_dump.json").write_text(json.dumps(pad_doc))
    from scrfd_ref.formats.dataset import list_images

    items, _ = replay_images(root / "honest", list_images(wider_images_dir, EVENTS))
    heads = [f"{it.event}/{it.name}" for it in items[::7]]
    with get_backend("ort", model) as backend:
        reference = run_device(backend, profile, items, head_images=heads, device="reference",
                               progress=False)
    keys = [tuple(k.split("/", 1)) for k in reference.detections]
    ref_ap = evaluate(reference.predictions(), ground_truth, images=keys)
    return {"root": root, "reference": reference, "ref_ap": ref_ap, "items": items,
            "heads": heads, "profile": profile, "gt": ground_truth, "keys": keys}


def _check(world, folder: Path, dtype: str, allow_nonfinite: bool = False):
    _, index = replay_images(folder, world["items"])
    with get_backend("replay", folder, allow_nonfinite=allow_nonfinite) as backend:
        run = run_device(backend, world["profile"], world["items"], head_images=world["heads"],
                         device=folder.name, replay_index=index, progress=False)
    dev_ap = evaluate(run.predictions(), world["gt"], images=world["keys"])
    return run_all(world["reference"], run, world["ref_ap"], dev_ap, world["gates"], dtype)


@pytest.fixture(scope="module")
def results(world, gates):
    """``{fault label: {dtype: {level: LevelResult}}}`` for the control and every fault."""
    world["gates"] = gates
    root = world["root"]
    out = {"honest": {d: _check(world, root / "honest", d) for d in DTYPES},
           PAD_FAULT: {d: _check(world, root / "pad0", d) for d in DTYPES}}
    for i, fault in enumerate(FAULTS):
        folder = inject(root / "honest", root / f"fault{i}", fault)
        out[fault.label] = {d: _check(world, folder, d, allow_nonfinite=True) for d in DTYPES}
        shutil.rmtree(folder)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_honest_dump_passes_every_gate(results, dtype):
    levels = results["honest"][dtype]
    failed = [m for r in levels.values() for m in r.failures]
    assert not failed, "\n".join(failed)
    assert all(r.rows for r in levels.values())


@pytest.mark.parametrize("fault", list(FAULTS), ids=[f.label for f in FAULTS])
@pytest.mark.parametrize("dtype", DTYPES)
def test_each_fault_fails_the_levels_it_breaks(results, fault, dtype):
    if (fault.label, dtype) in NOT_CAUGHT:
        pytest.xfail(f"{fault.label} is not caught by the pooled {dtype} gates (a finding)")
    levels = results[fault.label][dtype]
    failed_levels = {name for name, r in levels.items() if not r.passed}
    assert FAULTS[fault] <= failed_levels, (
        f"{fault.label} with {dtype} gates failed only {sorted(failed_levels)}; expected "
        f"{sorted(FAULTS[fault])}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_dump_with_another_pad_value_fails(results, dtype):
    """The device letterboxed with pad 0 while its manifest says 114: the heads differ."""
    levels = results[PAD_FAULT][dtype]
    if dtype == "fp32":
        assert not levels["heads"].passed, "fp32 head gates must see the pad difference"
    assert any(not r.passed for r in levels.values()) or dtype != "fp32"


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_declared_gate_is_failed_by_some_fault(results, dtype):
    failed = set()
    for label, by_dtype in results.items():
        if label == "honest":
            continue
        for r in by_dtype[dtype].values():
            failed |= r.failed_gates
    bounds = {g.name for g in declared() if g.kind != "param"}
    assert bounds <= failed, f"{dtype}: no fault fails {sorted(bounds - failed)}"
