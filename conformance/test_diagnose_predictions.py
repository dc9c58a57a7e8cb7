"""``scrfd-ref diagnose --predictions``: each injected fault is named first, honest devices
get no cause.

The devices here only leave WIDER prediction files. Each faulty device is the fp32 model
run with one setting changed (or two) while it claims the widerface-eval profile: another
score threshold, NMS IoU, boxes rounded to integers, boxes never mapped back to the
image, BGR input, a centred letterbox, another pad value, DIV255 normalisation, nearest
resizing, a 320x320 input (the dynamic-size model), the whole device-flow profile. The
controls are honest fp32, ONNX Runtime fp16 and int8 (default recipe) devices under the
profile they claim (widerface-eval and device-flow).
"""
from __future__ import annotations

import pytest

from scrfd_ref.backends import get_backend
from scrfd_ref.conformance.diagnose_predictions import ReferenceRuns, diagnose_predictions
from scrfd_ref.core.profiles import get_profile
from scrfd_ref.device.quantize import convert_model
from scrfd_ref.formats.dataset import list_images

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
HONEST = [(dtype, claimed) for dtype in ("fp32", "fp16", "int8")
          for claimed in ("widerface-eval", "device-flow")]


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
        yield {"backend": backend, "items": items, "fixed": fixed,
               "margin": gates.value("fp32", "detections", "diagnose_pred_min_gain_db"),
               "runs": ReferenceRuns(backend, items, 0.001)}


def _diagnose(world, device_rows, claimed: str):
    return diagnose_predictions(world["backend"], world["items"], device_rows,
                                get_profile(claimed), min_gain_db=world["margin"])[0]


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
    model = convert_model(world["fixed"], dtype)
    with get_backend("ort", model) as backend:
        rows = ReferenceRuns(backend, world["items"], 0.001).rows(get_profile(claimed))
    result = _diagnose(world, rows, claimed)
    assert result.causes == [], result.lines()
    assert result.closest, "the closest hypotheses are listed"
    assert result.lines()[0].startswith("no known cause matches")


def test_the_fault_changes_the_device(world):
    """Control of the controls: every faulty device really differs from the honest one."""
    honest = world["runs"].rows(get_profile(CLAIMED))
    for label, (change, unmapped, _) in FAULTS.items():
        claimed = get_profile(CLAIMED)
        device = get_profile(change) if isinstance(change, str) else claimed.replace(**change)
        rows = world["runs"].rows(device, unmapped)
        assert any(rows[k].shape != honest[k].shape or (rows[k] != honest[k]).any()
                   for k in honest), label

