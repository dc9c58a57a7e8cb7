"""``scrfd-ref diagnose --predictions``: each injected fault is named first, honest devices
get no cause.

The devices here only leave WIDER prediction files. Each faulty device is the fp32 model
run with one setting changed (or two) while it claims the widerface-eval profile: another
score threshold, NMS IoU, boxes rounded to integers, boxes never mapped back to the
image, BGR input, a centred letterbox, another pad value, DIV255 normalisation, nearest
resizing, a 320x320 input (the dynamic-size model), the whole device-flow profile. The
controls are honest devices of every dtype (ONNX Runtime fp32, fp16 and int8 with the
default recipe, the bf16-storage emulation) under the profile they claim (widerface-eval
and device-flow), judged with their dtype's gates: no cause. Claimed as a more precise
dtype, an honest device's detection jitter (score and box of matched detections) fits its
true dtype, and where the claimed dtype's gates fail it the precision hypothesis names
the true dtype.
"""
from __future__ import annotations

import pytest

from scrfd_ref.backends import get_backend
from scrfd_ref.core.dtypes import DTYPES, dtype_spec
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.diagnose.predictions import ReferenceRuns, diagnose_predictions
from scrfd_ref.formats.dataset import list_images
from scrfd_ref.quantize.convert import convert_model

pytestmark = pytest.mark.acceptance

VARIANT = "500m_bnkps"
IMAGES = 10
CLAIMED = "widerface-eval"

#: fault label -> (profile changes, boxes left in input coordinates, the cause kinds that
#: must come first, in any order)
FAULTS = {
    "score threshold 0.5": ({"score_thr": 0.5, "score_strict": False}, False, {"score_thr"}),
    "NMS IoU 0.3": ({"nms_thr": 0.3}, False, {"nms"}),
    "integer boxes": ({"box_mode": "clip_round"}, False, {"box_mode"}),
    "boxes not mapped back": ({}, True, {"mapping"}),
    "BGR input": ({"channel_order": "bgr"}, False, {"channel_order"}),
    "centred letterbox": ({"letterbox": "centered"}, False, {"letterbox"}),
    "pad 0": ({"pad_value": 0.0}, False, {"pad_value"}),
    "DIV255": ({"norm": "div255"}, False, {"normalisation"}),
    "nearest resize": ({"interpolation": "nearest"}, False, {"interpolation"}),
    "input 320x320": ({"input_size": (320, 320)}, False, {"input_size"}),
    "device-flow profile": ("device-flow", False, {"profile"}),
    "threshold + not mapped back": ({"score_thr": 0.5, "score_strict": False}, True,
                                    {"score_thr", "mapping"}),
    "BGR + integer boxes": ({"channel_order": "bgr", "box_mode": "clip_round"}, False,
                            {"channel_order", "box_mode"}),
    "NMS 0.3 + centred letterbox": ({"nms_thr": 0.3, "letterbox": "centered"}, False,
                                    {"nms", "letterbox"}),
}
HONEST = [(dtype, claimed) for dtype in DTYPES for claimed in ("widerface-eval", "device-flow")]


@pytest.fixture(scope="module")
def world(variant_file, wider_images_dir, gates, pytestconfig):
    """(fp32 backend of the dynamic-size model, images, margin)."""
    fixed = variant_file(VARIANT)
    model = fixed.with_name(f"{fixed.stem}_dynamic.onnx")
    if not model.is_file():
        reason = f"{model}: the dynamic-size model is not in the data folder"
        if pytestconfig.getoption("--require-data"):
            pytest.fail(f"--require-data: {reason}", pytrace=False)
        pytest.skip(reason)
    items = sorted(list_images(wider_images_dir), key=lambda it: (it.event, it.name))
    items = items[::len(items) // IMAGES][:IMAGES]
    with get_backend("ort", model) as backend:
        yield {"backend": backend, "items": items, "fixed": fixed, "model": model,
               "gates": gates,
               "margin": gates.value("fp32", "detections", "diagnose_pred_min_gain_db"),
               "runs": ReferenceRuns(backend, items, 0.001), "honest": {},
               # reference candidates and honest devices' rows, computed once for the module
               "shared": {}}


def _diagnose(world, device_rows, claimed: str, dtype: str | None = None):
    """The diagnosis against the ``claimed`` profile; with ``dtype``, judged with its
    gates first and with the precision hypothesis."""
    extra = ({"gates": world["gates"], "dtype": dtype, "model": world["model"]}
             if dtype else {})
    return diagnose_predictions(world["backend"], world["items"], device_rows,
                                get_profile(claimed), min_gain_db=world["margin"],
                                shared=world["shared"], **extra)[0]


def _honest_rows(world, dtype: str, claimed: str):
    """Prediction rows of an honest ``dtype`` device (the fixed-size model converted)."""
    if (dtype, claimed) not in world["honest"]:
        model = convert_model(world["fixed"], dtype)
        with get_backend("ort", model, dtype=dtype) as backend:   # bf16: no graph passes
            world["honest"][(dtype, claimed)] = ReferenceRuns(
                backend, world["items"], 0.001).rows(get_profile(claimed))
    return world["honest"][(dtype, claimed)]


@pytest.mark.parametrize("label", list(FAULTS))
def test_the_injected_fault_is_named_first(world, label):
    change, unmapped, expected = FAULTS[label]
    claimed = get_profile(CLAIMED)
    device = get_profile(change) if isinstance(change, str) else claimed.replace(**change)
    result = _diagnose(world, world["runs"].rows(device, unmapped), CLAIMED)
    named = [c.name for c in result.causes]
    assert set(named[:len(expected)]) == expected, (label, result.lines())
    for cause in result.causes[:len(expected)]:
        assert cause.gain_db >= world["margin"]
        assert cause.params["mismatch_after"] < cause.params["mismatch_before"]


@pytest.mark.parametrize(("dtype", "claimed"), HONEST, ids=[f"{d}-{c}" for d, c in HONEST])
def test_an_honest_device_gets_no_cause(world, dtype, claimed):
    result = _diagnose(world, _honest_rows(world, dtype, claimed), claimed, dtype)
    assert result.verdict is not None and result.causes == [], result.lines()
    assert all(c.gain_db > 0 for c in result.closest)
    if result.precision is not None:
        assert result.precision.fits(dtype), result.lines()


def _bits(dtype: str) -> int:
    return dtype_spec(dtype).significand_bits or 0


MORE_PRECISE = [(d, c) for d in DTYPES for c in DTYPES if _bits(c) > _bits(d)]


@pytest.mark.parametrize(("dtype", "claimed"), MORE_PRECISE,
                         ids=[f"{d}-as-{c}" for d, c in MORE_PRECISE])
def test_an_honest_device_claimed_more_precise_is_named_by_its_jitter(world, dtype, claimed):
    """The jitter of an honest ``dtype`` device's detections fits ``dtype`` whatever it
    claims; when the claimed dtype's gates fail it, that is the cause named."""
    result = _diagnose(world, _honest_rows(world, dtype, CLAIMED), CLAIMED, claimed)
    assert result.precision is not None, result.lines()
    assert result.precision.best == dtype, result.lines()
    named = [c.text for c in result.causes if c.name == "precision"]
    if result.failed:
        assert named == [f"the device computes in {dtype}, not {claimed}"], result.lines()
    else:
        assert named == [], result.lines()


def test_the_fault_changes_the_device(world):
    """Control of the controls: every faulty device really differs from the honest one."""
    honest = world["runs"].rows(get_profile(CLAIMED))
    for label, (change, unmapped, _) in FAULTS.items():
        claimed = get_profile(CLAIMED)
        device = get_profile(change) if isinstance(change, str) else claimed.replace(**change)
        rows = world["runs"].rows(device, unmapped)
        assert any(rows[k].shape != honest[k].shape or (rows[k] != honest[k]).any()
                   for k in honest), label

