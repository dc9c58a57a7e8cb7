"""Every gate can fail, and honest devices pass: known faults injected into honest dumps.

Honest dumps of ``500m_bnkps`` (device layout, device-flow profile, two WIDER events) are
the controls: fp32, ONNX Runtime fp16, an emulated fp16-storage device (every tensor
rounded to fp16, :mod:`scrfd_ref.device.emulate`), int8 with the project's default recipe
and int8 with the vendor's (MinMax, every node int8). Each must pass every gate of its
dtype (the fp32 dump every dtype's). The fp32, fp16 and int8 dumps are then the bases of
the faults (:mod:`scrfd_ref.conformance.faults`: one stride's boxes 15% too large, a
scaled head, a dead stride, swapped landmarks, score biases, boxes in another channel
order, NaN, missing landmark heads, two images swapped, int8 outputs never dequantized)
and of two preprocessing faults (dumped with pad 0 or BGR input while the manifest says
114 / RGB); each faulty dump is replayed and checked at every level
(:mod:`scrfd_ref.conformance.checks`) with its base's dtype gates. Each fault must fail the
levels it breaks, and together the faults must fail every declared bound of every dtype's
gates: a gate that no fault can fail would be a gate that cannot fail.
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
from scrfd_ref.conformance.int8_recipes import RECIPES
from scrfd_ref.conformance.runs import replay_images, run_device
from scrfd_ref.core.errors import InputError
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.device.emulate import RUN_OPTIONS, emulated_model
from scrfd_ref.device.flow import dump, image2npz
from scrfd_ref.device.model_prep import prepare_model
from scrfd_ref.widerface.evaluate import evaluate

VARIANT = "500m_bnkps"
EVENTS = ("19--Couple", "4--Dancing")

#: honest dumps: name -> the dtype whose gates judge it
CONTROLS = {"fp32": "fp32", "fp16": "fp16", "fp16-storage": "fp16", "int8": "int8",
            "int8-minmax": "int8"}
#: the dumps faults are injected into, one per dtype
BASES = ("fp32", "fp16", "int8")

#: fault -> the levels it must fail on every base (under that base's dtype gates)
FAULTS = {
    Fault("scale_head", kind="bbox", stride=32, magnitude=1.15): {"buckets"},
    Fault("scale_head", kind="bbox", stride=16, magnitude=2.0):
        {"heads", "anchors", "detections", "buckets", "ap"},
    Fault("dead_stride", stride=8, magnitude=30.0):
        {"heads", "anchors", "detections", "buckets", "collapse", "ap"},
    Fault("swap_landmarks", pair=(0, 4)): {"heads", "anchors", "detections", "buckets"},
    Fault("bias_scores", magnitude=3.0): {"heads", "anchors", "detections"},
    Fault("bias_scores", magnitude=-5.0): {"heads", "detections", "collapse", "ap"},
    Fault("box_order"): {"heads", "anchors", "detections", "buckets", "ap"},
    Fault("nan", kind="bbox", stride=32, magnitude=50): {"heads"},
    Fault("drop_landmarks"): {"heads", "detections", "buckets"},
    Fault("swap_images", pair=(0, 1)): {"detections"},
}
#: faults some dtype's gates cannot catch (findings, not expectations): two swapped
#: images out of 79 move the pooled fp16 / int8 recall by less than their margin (the
#: per-bucket recall neither: each bucket pools over images too)
NOT_CAUGHT: set[tuple[str, str]] = {("swap_images(0<->1)", "fp16"),
                                    ("swap_images(0<->1)", "int8")}
#: preprocessing faults: dump made with another profile than the manifest records
PREPROCESSING = {"pad 0 instead of 114": {"pad_value": 0.0},
                 "BGR fed to the model": {"channel_order": "bgr"}}
#: findings: on an int8 device both preprocessing faults stay inside int8 noise at head
#: level (measured on these events: BGR head SNR 10.1 dB, pad 0 8.8 dB, honest int8 9.1 -
#: 11.0 dB; BGR costs 2.0% of hard AP, at the int8 AP gate). The diagnose command tests
#: these hypotheses directly instead.
PREPROCESSING_NOT_CAUGHT = {("pad 0 instead of 114", "int8"), ("BGR fed to the model", "int8")}
#: int8 outputs written without dequantization: the replay refuses the dtype
RAW_INT8 = Fault("raw_int8", magnitude=16.0)

pytestmark = pytest.mark.acceptance


def _device_model(model: Path, name: str, size) -> tuple[Path, dict]:
    """(device-layout model file, backend options) of an honest control."""
    fp32 = prepare_model(model, layout="device", input_size=size)
    if name == "fp32":
        return fp32, {}
    if name == "fp16-storage":
        return emulated_model(fp32), dict(RUN_OPTIONS)
    if name == "int8-minmax":
        return prepare_model(model, layout="device", dtype="int8", input_size=size,
                             recipe=RECIPES["minmax"]), {}
    return prepare_model(model, layout="device", dtype=name, input_size=size), {}


@pytest.fixture(scope="module")
def world(tmp_path_factory, pytestconfig, variant_file, wider_images_dir, ground_truth):
    """(reference run, dump folders, images, profile) for the two events."""
    if pytestconfig.getoption("--device-outputs"):
        pytest.skip("the fault tests make their own dumps, not a replay of --device-outputs")
    model = variant_file(VARIANT)
    root = tmp_path_factory.mktemp("faults")
    image2npz(wider_images_dir, root / "npz", root / "datalist.txt", events=EVENTS,
              progress=False)
    profile = get_profile("device-flow")
    recorded = {}
    for name, dtype in CONTROLS.items():
        path, opts = _device_model(model, name, profile.input_size)
        out_dtype = "fp32" if dtype == "fp32" else "fp16"
        with get_backend("ort", path, dtype=dtype, **opts) as backend:
            dump(backend, root / "datalist.txt", root / name, profile, progress=False,
                 dtype=out_dtype, meta={"variant": VARIANT, "dtype": dtype})
            recorded[name] = json.loads((root / name / "scrfd_dump.json").read_text())
            if name not in BASES:
                continue
            for label, change in PREPROCESSING.items():
                folder = root / f"{name}-{label.split()[0]}"
                dump(backend, root / "datalist.txt", folder, profile.replace(**change),
                     progress=False, dtype=out_dtype, meta={"variant": VARIANT, "dtype": dtype})
                # the faulty dump claims the honest profile (a misconfigured device)
                doc = json.loads((folder / "scrfd_dump.json").read_text())
                doc["identity"]["profile"] = recorded[name]["identity"]["profile"]
                (folder / "scrfd_dump.json").write_text(json.dumps(doc))
    from scrfd_ref.formats.dataset import list_images

    items, _ = replay_images(root / "fp32", list_images(wider_images_dir, EVENTS))
    heads = [f"{it.event}/{it.name}" for it in items[::7]]
    with get_backend("ort", model) as backend:
        reference = run_device(backend, profile, items, head_images=heads, device="reference",
                               progress=False)
    keys = [tuple(k.split("/", 1)) for k in reference.detections]
    ref_ap = evaluate(reference.predictions(), ground_truth, images=keys)
    return {"root": root, "reference": reference, "ref_ap": ref_ap, "items": items,
            "heads": heads, "profile": profile, "gt": ground_truth, "keys": keys,
            "model": model, "images_dir": wider_images_dir}


def _check(world, folder: Path, dtype: str, allow_nonfinite: bool = False):
    _, index = replay_images(folder, world["items"])
    with get_backend("replay", folder, allow_nonfinite=allow_nonfinite) as backend:
        run = run_device(backend, world["profile"], world["items"], head_images=world["heads"],
                         device=folder.name, replay_index=index, progress=False)
    dev_ap = evaluate(run.predictions(), world["gt"], images=world["keys"])
    return run_all(world["reference"], run, world["ref_ap"], dev_ap, world["gates"], dtype)


@pytest.fixture(scope="module")
def results(world, gates):
    """``{dump label: {dtype: {level: LevelResult}}}``: every control under its dtype (the
    fp32 one under every dtype), every fault on every base under the base's dtype."""
    world["gates"] = gates
    root = world["root"]
    out = {"control fp32": {d: _check(world, root / "fp32", d) for d in DTYPES}}
    for name, dtype in CONTROLS.items():
        if name != "fp32":
            out[f"control {name}"] = {dtype: _check(world, root / name, dtype)}
    for base in BASES:
        for label in PREPROCESSING:
            folder = root / f"{base}-{label.split()[0]}"
            out.setdefault(label, {})[base] = _check(world, folder, base)
        for i, fault in enumerate(FAULTS):
            folder = inject(root / base, root / f"{base}-fault{i}", fault)
            out.setdefault(fault.label, {})[base] = _check(world, folder, base,
                                                           allow_nonfinite=True)
            shutil.rmtree(folder)
    return out


@pytest.mark.parametrize("control", list(CONTROLS))
def test_an_honest_dump_passes_every_gate(results, control):
    by_dtype = results[f"control {control}"]
    for dtype, levels in by_dtype.items():
        failed = [m for r in levels.values() for m in r.failures]
        assert not failed, f"{control} under {dtype} gates:\n" + "\n".join(failed)
        assert all(r.rows for r in levels.values())


@pytest.mark.parametrize("fault", list(FAULTS), ids=[f.label for f in FAULTS])
@pytest.mark.parametrize("dtype", DTYPES)
def test_each_fault_fails_the_levels_it_breaks(results, fault, dtype):
    if (fault.label, dtype) in NOT_CAUGHT:
        pytest.xfail(f"{fault.label} is not caught by the {dtype} gates (a finding)")
    levels = results[fault.label][dtype]
    failed_levels = {name for name, r in levels.items() if not r.passed}
    assert FAULTS[fault] <= failed_levels, (
        f"{fault.label} on the {dtype} dump failed only {sorted(failed_levels)}; expected "
        f"{sorted(FAULTS[fault])}")


@pytest.mark.parametrize("label", list(PREPROCESSING))
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_dump_with_other_preprocessing_fails(results, label, dtype):
    """The device letterboxed with pad 0, or fed BGR, while its manifest says otherwise:
    the heads and the detections differ from the reference."""
    if (label, dtype) in PREPROCESSING_NOT_CAUGHT:
        pytest.xfail(f"{label} is not caught by the {dtype} gates (a finding)")
    levels = results[label][dtype]
    failed = {name for name, r in levels.items() if not r.passed}
    assert {"heads", "anchors"} <= failed, f"{label} on {dtype}: failed only {sorted(failed)}"


@pytest.mark.parametrize("base", BASES)
def test_int8_outputs_never_dequantized_are_refused(world, base):
    """Outputs stored as raw int8: the replay refuses them, naming the dtype (never a
    pass)."""
    folder = inject(world["root"] / base, world["root"] / f"{base}-raw", RAW_INT8)
    with pytest.raises(InputError, match="dtype int8"):
        _check(world, folder, base)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_declared_gate_is_failed_by_some_fault(results, dtype):
    failed = set()
    for label, by_dtype in results.items():
        if label.startswith("control") or dtype not in by_dtype:
            continue
        for r in by_dtype[dtype].values():
            failed |= r.failed_gates
    bounds = {g.name for g in declared() if g.kind != "param"}
    assert bounds <= failed, f"{dtype}: no fault fails {sorted(bounds - failed)}"


# ----------------------------------------------------------------------------- diagnose

#: fault -> the cause `scrfd-ref diagnose` must rank first (missing landmark heads are
#: named by the strict checks, not by a correction)
DIAGNOSED = {fault: name for fault, name in zip(FAULTS, (
    "scale_head", "scale_head", "dead_head", "swap_landmarks", "score_bias", "score_bias",
    "box_order", "nonfinite", None, "pairing"))}
DIAGNOSED[RAW_INT8] = "not_dequantized"
TWO_FAULTS = (Fault("box_order"), Fault("bias_scores", magnitude=3.0))


def _diagnose(world, folder: Path, dtype: str):
    from scrfd_ref.conformance.diagnose_run import diagnose_outputs

    result, _ = diagnose_outputs(folder, world["model"], world["images_dir"], world["profile"],
                                 world["gates"], dtype)
    return result


def _diagnose_faults(world, base: str, *faults: Fault):
    """Inject ``faults`` one after the other into the ``base`` dump, diagnose the result,
    remove the faulty copies."""
    folders = []
    try:
        for n, fault in enumerate(faults):
            source = folders[-1] if folders else world["root"] / base
            folders.append(inject(source, world["root"] / f"diag-{base}-{n}-{fault.name}",
                                  fault))
        return _diagnose(world, folders[-1], base)
    finally:
        for folder in folders:
            shutil.rmtree(folder)


@pytest.mark.parametrize("control", list(CONTROLS))
def test_diagnose_finds_no_cause_in_an_honest_dump(world, results, control):
    result = _diagnose(world, world["root"] / control, CONTROLS[control])
    assert not result.causes, "\n".join(result.lines())


@pytest.mark.parametrize("fault", [f for f, n in DIAGNOSED.items() if n],
                         ids=[f.label for f, n in DIAGNOSED.items() if n])
@pytest.mark.parametrize("base", BASES)
def test_diagnose_names_the_injected_fault_first(world, results, fault, base):
    result = _diagnose_faults(world, base, fault)
    assert result.causes, f"{fault.label} on {base}: " + "\n".join(result.lines())
    assert result.causes[0].name == DIAGNOSED[fault], "\n".join(result.lines())


@pytest.mark.parametrize("base", BASES)
def test_diagnose_names_both_of_two_faults(world, results, base):
    result = _diagnose_faults(world, base, *TWO_FAULTS)
    names = {c.name for c in result.causes}
    assert {"box_order", "score_bias"} <= names, "\n".join(result.lines())


#: one channel of one head wrong (a per-channel requantisation): right side of stride-16
#: boxes 20% too far, x of the nose point on stride 8 scaled by 1.5
CHANNEL_FAULTS = {Fault("scale_channel", kind="bbox", stride=16, magnitude=1.2, pair=(2, 2)):
                  ("bbox_16", 2),
                  Fault("scale_channel", kind="kps", stride=8, magnitude=1.5, pair=(4, 4)):
                  ("kps_8", 4)}


@pytest.mark.parametrize("fault", list(CHANNEL_FAULTS), ids=[f.label for f in CHANNEL_FAULTS])
@pytest.mark.parametrize("base", BASES)
def test_diagnose_names_a_scaled_channel(world, results, fault, base):
    result = _diagnose_faults(world, base, fault)
    head, channel = CHANNEL_FAULTS[fault]
    if base == "int8" and head.startswith("kps") and not result.causes:
        # int8 noise caps the landmark head's match: the right channel is the closest
        # hypothesis (gain about 8 dB) but below the 10 dB margin, a finding
        top = result.closest[0]
        assert (top.name, top.params.get("channel")) == ("channel_affine", channel)
        pytest.xfail(f"{fault.label} on int8: closest, gain {top.gain_db:.1f} dB < margin")
    assert result.causes, "\n".join(result.lines())
    top = result.causes[0]
    assert (top.name, top.heads, top.params.get("channel")) == ("channel_affine", [head],
                                                                channel), "\n".join(
        result.lines())
    assert top.params["slope"] == pytest.approx(fault.magnitude, rel=0.05)



@pytest.mark.parametrize("label", list(PREPROCESSING))
@pytest.mark.parametrize("base", BASES)
def test_diagnose_names_the_preprocessing_fault(world, results, label, base):
    """The reference re-run with the device's actual preprocessing matches it; under int8
    noise the gain (BGR about 2 dB, pad about 0.3 dB) stays below the margin: a finding."""
    result = _diagnose(world, world["root"] / f"{base}-{label.split()[0]}", base)
    if base == "int8":
        assert not result.causes, "\n".join(result.lines())
        pytest.xfail(f"{label} on int8: inside int8 noise (a finding)")
    assert result.causes and result.causes[0].name == "preprocessing", "\n".join(result.lines())
    assert result.causes[0].params["changes"] == PREPROCESSING[label]
