"""Every gate can fail, and honest devices pass: known faults injected into honest dumps.

Honest dumps of ``500m_bnkps`` (device layout, device-flow profile, two WIDER events) are
the controls: fp32, ONNX Runtime fp16, the emulated fp16- and bf16-storage devices (every
tensor rounded to fp16 / bfloat16, :mod:`scrfd_ref.device.emulate`), int8 with the
project's default recipe and int8 with the vendor's (MinMax, every node int8), and a
third-party compiler's own builds: OpenVINO fp32, native bf16 (where the CPU has it) and
NNCF int8 (the optional extra; without it those controls skip with the install line, and
fail under --require-data). Each must pass every gate of its dtype (the fp32 dump every
dtype's). The fp32, fp16, bf16-storage and int8 dumps and the OpenVINO ones are then the
bases of the faults (:mod:`scrfd_ref.conformance.faults`: one stride's boxes 15% too
large, a scaled head, a dead stride, swapped landmarks, score biases, boxes in another
channel order, NaN, missing landmark heads, two images swapped, int8 outputs never
dequantized); the ONNX Runtime fp32, fp16 and int8 bases also of two preprocessing
faults (dumped with pad 0 or BGR input while the manifest says 114 / RGB); each faulty
dump is replayed and checked at every level (:mod:`scrfd_ref.conformance.checks`) with its
base's dtype gates. Each fault must fail the levels it breaks, and together the faults
must fail every declared bound of every dtype's gates: a gate that no fault can fail
would be a gate that cannot fail.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scrfd_ref.backends import get_backend
from scrfd_ref.conformance.checks import ap_bootstrap, run_all
from scrfd_ref.conformance.faults import Fault, inject
from scrfd_ref.conformance.gates import DTYPES, declared
from scrfd_ref.conformance.int8_recipes import RECIPES
from scrfd_ref.conformance.runs import replay_images, run_device
from scrfd_ref.core.dtypes import output_dtype
from scrfd_ref.core.errors import InputError
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.device.emulate import RUN_OPTIONS, emulated_model
from scrfd_ref.device.flow import dump, image2npz
from scrfd_ref.pytest_plugin.fixtures_data import openvino_left_out
from scrfd_ref.quantize.prepare import prepare_model
from scrfd_ref.widerface.evaluate import evaluate

VARIANT = "500m_bnkps"
EVENTS = ("19--Couple", "4--Dancing")

#: honest dumps: name -> the dtype whose gates judge it
CONTROLS = {"fp32": "fp32", "fp16": "fp16", "fp16-storage": "fp16", "bf16-storage": "bf16",
            "int8": "int8", "int8-minmax": "int8", "openvino-fp32": "fp32",
            "openvino-bf16": "bf16", "openvino-int8": "int8"}
#: the controls a third-party compiler builds (OpenVINO: native precision, NNCF int8)
THIRD_PARTY = ("openvino-fp32", "openvino-bf16", "openvino-int8")
#: the dumps faults are injected into: one per dtype made by ONNX Runtime (bf16: the
#: storage emulation), and the third-party ones
BASES = ("fp32", "fp16", "bf16-storage", "int8", *THIRD_PARTY)
#: the bases also dumped with wrong preprocessing (a property of the flow, not the runtime)
PREPROCESSING_BASES = ("fp32", "fp16", "int8")

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
#: images out of 79 move the pooled fp16 / bf16 / int8 recall by less than their margin
#: (the per-bucket recall neither: each bucket pools over images too); the heads catch
#: them on every base, and diagnose names the pairing
NOT_CAUGHT: set[tuple[str, str]] = {("swap_images(0<->1)", "fp16"),
                                    ("swap_images(0<->1)", "bf16"),
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


def _device_model(model: Path, name: str, size) -> tuple[str, Path, dict]:
    """(backend, device-layout model file, backend options) of an honest control."""
    fp32 = prepare_model(model, layout="device", input_size=size)
    if name == "fp32":
        return "ort", fp32, {}
    if name in ("fp16-storage", "bf16-storage"):
        return "ort", emulated_model(fp32, name), dict(RUN_OPTIONS)
    if name == "int8-minmax":
        return "ort", prepare_model(model, layout="device", dtype="int8", input_size=size,
                                    recipe=RECIPES["minmax"]), {}
    if name in THIRD_PARTY:
        return "openvino", prepare_model(model, layout="device", dtype=CONTROLS[name],
                                         input_size=size, backend="openvino"), {}
    return "ort", prepare_model(model, layout="device", dtype=name, input_size=size), {}


def _left_out(name: str, require_data: bool) -> str | None:
    """Why a third-party control cannot be made here (None: it can): OpenVINO bf16 without
    AVX512_BF16 / AMX is an allowed case; a missing OpenVINO one only outside
    --require-data."""
    if name not in THIRD_PARTY:
        return None
    return openvino_left_out(CONTROLS[name], require_data)


@pytest.fixture(scope="module")
def left_out(pytestconfig) -> dict[str, str]:
    """Controls (and bases) this machine cannot make, with the reason (printed once)."""
    out = {n: why for n in CONTROLS if (why := _left_out(n, pytestconfig.getoption(
        "--require-data")))}
    for name, why in out.items():
        print(f"\nscrfd-ref: control {name} not made here: {why}")
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory, pytestconfig, variant_file, wider_images_dir, ground_truth,
          left_out):
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
        if name in left_out:
            continue
        runtime, path, opts = _device_model(model, name, profile.input_size)
        out_dtype = output_dtype(dtype)
        with get_backend(runtime, path, dtype=dtype, **opts) as backend:
            dump(backend, root / "datalist.txt", root / name, profile, progress=False,
                 dtype=out_dtype, meta={"variant": VARIANT, "dtype": dtype})
            recorded[name] = json.loads((root / name / "scrfd_dump.json").read_text())
            if name not in PREPROCESSING_BASES:
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
            "model": model, "images_dir": wider_images_dir, "left_out": left_out}


def _made(world, name: str) -> None:
    """Skip a test of a control / base this machine could not make (reason printed)."""
    if name in world["left_out"]:
        pytest.skip(f"{name}: {world['left_out'][name]}")


def _check(world, folder: Path, dtype: str, allow_nonfinite: bool = False):
    _, index = replay_images(folder, world["items"])
    with get_backend("replay", folder, allow_nonfinite=allow_nonfinite) as backend:
        run = run_device(backend, world["profile"], world["items"], head_images=world["heads"],
                         device=folder.name, replay_index=index, progress=False)
    paired = ap_bootstrap(world["reference"].predictions(), run.predictions(), world["gt"],
                          world["keys"], world["gates"], dtype)
    return run_all(world["reference"], run, paired.result_a, paired.result_b, world["gates"],
                   dtype, paired=paired)


@pytest.fixture(scope="module")
def results(world, gates):
    """``{dump label: {dtype: {level: LevelResult}}}``: every control under its dtype (the
    fp32 one under every dtype), every fault on every base under the base's dtype."""
    world["gates"] = gates
    root = world["root"]
    out = {"control fp32": {d: _check(world, root / "fp32", d) for d in DTYPES}}
    for name, dtype in CONTROLS.items():
        if name != "fp32" and name not in world["left_out"]:
            out[f"control {name}"] = {dtype: _check(world, root / name, dtype)}
    for base in BASES:
        if base in world["left_out"]:
            continue
        for label in PREPROCESSING if base in PREPROCESSING_BASES else ():
            folder = root / f"{base}-{label.split()[0]}"
            out.setdefault(label, {})[base] = _check(world, folder, CONTROLS[base])
        for i, fault in enumerate(FAULTS):
            folder = inject(root / base, root / f"{base}-fault{i}", fault)
            out.setdefault(fault.label, {})[base] = _check(world, folder, CONTROLS[base],
                                                           allow_nonfinite=True)
            shutil.rmtree(folder)
    return out


@pytest.mark.parametrize("control", list(CONTROLS))
def test_an_honest_dump_passes_every_gate(world, results, control):
    _made(world, control)
    by_dtype = results[f"control {control}"]
    for dtype, levels in by_dtype.items():
        # every gate decided and passed: neither failed nor inconclusive on these images
        failed = [m for r in levels.values() for m in r.failures]
        assert not failed, f"{control} under {dtype} gates:\n" + "\n".join(failed)
        assert all(r.rows for r in levels.values())


@pytest.mark.parametrize("fault", list(FAULTS), ids=[f.label for f in FAULTS])
@pytest.mark.parametrize("base", BASES)
def test_each_fault_fails_the_levels_it_breaks(world, results, fault, base):
    _made(world, base)
    dtype = CONTROLS[base]
    if (fault.label, dtype) in NOT_CAUGHT:
        pytest.xfail(f"{fault.label} is not caught by the {dtype} gates (a finding)")
    levels = results[fault.label][base]
    failed_levels = {name for name, r in levels.items() if r.verdict == "fail"}
    assert FAULTS[fault] <= failed_levels, (
        f"{fault.label} on the {base} dump failed only {sorted(failed_levels)} of the "
        f"{dtype} gates; expected {sorted(FAULTS[fault])}")


@pytest.mark.parametrize("label", list(PREPROCESSING))
@pytest.mark.parametrize("base", PREPROCESSING_BASES)
def test_a_dump_with_other_preprocessing_fails(results, label, base):
    """The device letterboxed with pad 0, or fed BGR, while its manifest says otherwise:
    the heads and the detections differ from the reference."""
    dtype = CONTROLS[base]
    if (label, dtype) in PREPROCESSING_NOT_CAUGHT:
        pytest.xfail(f"{label} is not caught by the {dtype} gates (a finding)")
    levels = results[label][base]
    failed = {name for name, r in levels.items() if r.verdict == "fail"}
    assert {"heads", "anchors"} <= failed, f"{label} on {base}: failed only {sorted(failed)}"


@pytest.mark.parametrize("base", BASES)
def test_int8_outputs_never_dequantized_are_refused(world, base):
    """Outputs stored as raw int8: the replay refuses them, naming the dtype (never a
    pass)."""
    _made(world, base)
    folder = inject(world["root"] / base, world["root"] / f"{base}-raw", RAW_INT8)
    with pytest.raises(InputError, match="dtype int8"):
        _check(world, folder, CONTROLS[base])


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_declared_gate_is_failed_by_some_fault(results, dtype):
    failed = set()
    for label, by_base in results.items():
        if label.startswith("control"):
            continue
        for base, levels in by_base.items():
            if CONTROLS[base] == dtype:
                for r in levels.values():
                    failed |= r.failed_gates
    # the slice bounds judge WIDER AP per face attribute on the 344 held-out images, not
    # these two-event dumps: conformance/test_slice_faults.py shows each of them failing
    bounds = {g.name for g in declared() if g.kind != "param" and g.group != "slices"}
    assert bounds <= failed, f"{dtype}: no fault fails {sorted(bounds - failed)}"


# ----------------------------------------------------------------------------- diagnose

#: fault -> the cause `scrfd-ref diagnose` must rank first (missing landmark heads are
#: named by the strict checks, not by a correction)
DIAGNOSED = {fault: name for fault, name in zip(FAULTS, (
    "scale_head", "scale_head", "dead_head", "swap_landmarks", "score_bias", "score_bias",
    "box_order", "nonfinite", None, "pairing"))}
DIAGNOSED[RAW_INT8] = "not_dequantized"
TWO_FAULTS = (Fault("box_order"), Fault("bias_scores", magnitude=3.0))
#: the bases diagnose is shown on: the ONNX Runtime ones of each dtype family and the
#: third-party compiler's (the bf16-storage emulation is a control only)
DIAGNOSE_BASES = ("fp32", "fp16", "int8", *THIRD_PARTY)


#: a fault on a head with too few foreground anchors in the 16 diagnosed images for a
#: fitted cause to count (stride 32: 5 anchors there, 49 in the first 32 images): on 16
#: images its fit is the closest hypothesis and says how many anchors it rests on; on
#: MORE_IMAGES it is named
FEW_ANCHORS = {Fault("scale_head", kind="bbox", stride=32, magnitude=1.15)}
MORE_IMAGES = 32


def _diagnose(world, folder: Path, dtype: str, count: int = 16):
    from scrfd_ref.diagnose.run import ReferenceSet, diagnose_outputs

    if "diagnose_refs" not in world:     # the reference side, run once for every dump
        world["diagnose_refs"] = ReferenceSet(world["model"], world["profile"])
    result, _ = diagnose_outputs(folder, world["model"], world["images_dir"], world["profile"],
                                 world["gates"], dtype, references=world["diagnose_refs"],
                                 count=count)
    return result


def _diagnose_faults(world, base: str, *faults: Fault, count: int = 16):
    """Inject ``faults`` one after the other into the ``base`` dump, diagnose the result,
    remove the faulty copies."""
    folders = []
    try:
        for n, fault in enumerate(faults):
            source = folders[-1] if folders else world["root"] / base
            folders.append(inject(source, world["root"] / f"diag-{base}-{n}-{fault.name}",
                                  fault))
        return _diagnose(world, folders[-1], CONTROLS[base], count)
    finally:
        for folder in folders:
            shutil.rmtree(folder)


@pytest.mark.parametrize("control", list(CONTROLS))
def test_diagnose_finds_no_cause_in_an_honest_dump(world, results, control):
    _made(world, control)
    result = _diagnose(world, world["root"] / control, CONTROLS[control])
    assert not result.causes, "\n".join(result.lines())


@pytest.mark.parametrize("fault", [f for f, n in DIAGNOSED.items() if n],
                         ids=[f.label for f, n in DIAGNOSED.items() if n])
@pytest.mark.parametrize("base", DIAGNOSE_BASES)
def test_diagnose_names_the_injected_fault_first(world, results, fault, base):
    _made(world, base)
    result = _diagnose_faults(world, base, fault)
    if fault in FEW_ANCHORS:
        top = result.closest[0]       # the fit on that head (a slope, maybe an offset)
        assert top.heads == [f"bbox_{fault.stride}"] and top.fitted, "\n".join(result.lines())
        assert top.anchors < result.min_anchors and top not in result.causes
        assert "a cause needs" in top.describe(result.min_anchors)
        result = _diagnose_faults(world, base, fault, count=MORE_IMAGES)
    assert result.causes, f"{fault.label} on {base}: " + "\n".join(result.lines())
    assert result.causes[0].name == DIAGNOSED[fault], "\n".join(result.lines())


@pytest.mark.parametrize("base", DIAGNOSE_BASES)
def test_diagnose_names_both_of_two_faults(world, results, base):
    _made(world, base)
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
@pytest.mark.parametrize("base", DIAGNOSE_BASES)
def test_diagnose_names_a_scaled_channel(world, results, fault, base):
    _made(world, base)
    result = _diagnose_faults(world, base, fault)
    head, channel = CHANNEL_FAULTS[fault]
    if CONTROLS[base] == "int8" and head.startswith("kps") and not result.causes:
        # int8 noise caps the landmark head's match: the right channel is the closest
        # hypothesis resting on enough anchors, either below the 10 dB margin (ORT int8:
        # about 8 dB) or above it on a device that still passes the int8 gates on these
        # 16 images (OpenVINO NNCF int8: 11 dB), an observation there; a finding
        top = next(c for c in result.closest if c.counts(0.0, result.min_anchors))
        assert (top.name, top.params.get("channel")) == ("channel_affine", channel), \
            "\n".join(result.lines())
        if top.counts(result.min_gain_db, result.min_anchors):
            assert not result.failed and top in result.observations, "\n".join(result.lines())
            why = f"passes the int8 gates; an observation (gain {top.gain_db:.1f} dB)"
        else:
            why = f"closest, gain {top.gain_db:.1f} dB < margin"
        pytest.xfail(f"{fault.label} on {base}: {why}")
    assert result.causes, "\n".join(result.lines())
    top = result.causes[0]
    assert (top.name, top.heads, top.params.get("channel")) == ("channel_affine", [head],
                                                                channel), "\n".join(
        result.lines())
    assert top.params["slope"] == pytest.approx(fault.magnitude, rel=0.05)



@pytest.mark.parametrize("label", list(PREPROCESSING))
@pytest.mark.parametrize("base", PREPROCESSING_BASES)
def test_diagnose_names_the_preprocessing_fault(world, results, label, base):
    """The reference re-run with the device's actual preprocessing matches it; under int8
    noise the gain (BGR about 2 dB, pad about 0.3 dB) stays below the margin: a finding."""
    result = _diagnose(world, world["root"] / f"{base}-{label.split()[0]}", base)
    if base == "int8":
        assert not result.causes, "\n".join(result.lines())
        pytest.xfail(f"{label} on int8: inside int8 noise (a finding)")
    assert result.causes and result.causes[0].name == "preprocessing", "\n".join(result.lines())
    assert result.causes[0].params["changes"] == PREPROCESSING[label]
