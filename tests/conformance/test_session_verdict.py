"""The session verdict (:mod:`scrfd_ref.conformance.session_verdict`) on hand-made outcomes:
PASS only when every device the run set out to judge was judged and passed; an errored,
skipped or unjudged device is named with its reason and keeps the run from passing."""
from __future__ import annotations

import pytest

from scrfd_ref.conformance.session_verdict import PhaseOutcome, SessionVerdict, session_verdict

PASSED = {"heads": "pass", "detections": "pass"}


def _ok(device: str) -> list[PhaseOutcome]:
    return [PhaseOutcome(device, f"conformance/test_heads.py::test_heads[{device}]", w, "passed")
            for w in ("setup", "call", "teardown")]


def test_every_device_judged_and_passed_is_a_pass():
    v = session_verdict(_ok("a") + _ok("b"), {"a": PASSED, "b": PASSED})
    assert v.verdict == "PASS" and v.passed
    assert v.headline() == "PASS, 2 devices: 2 pass"


def test_a_device_that_could_not_be_built_makes_the_run_an_error_and_is_named():
    """The issue's case: int8 calibration images missing, its tests error in setup; the
    other devices pass. Not "PASS, 4 devices: 4 pass"."""
    broken = [PhaseOutcome("ort-int8-500m_bnkps", f"conformance/test_heads.py::t{i}[x]", "setup",
                          "failed", "DataMissingError: calibration images missing: /d/c")
              for i in range(6)]
    v = session_verdict(_ok("a") + _ok("b") + broken, {"a": PASSED, "b": PASSED})
    assert v.verdict == "ERROR" and not v.passed
    assert v.headline() == "ERROR, 3 devices: 1 error, 2 pass"
    int8 = next(d for d in v.devices if d.device == "ort-int8-500m_bnkps")
    assert int8.state == "error" and "calibration images missing" in int8.reasons[0]
    assert "ort-int8-500m_bnkps error" in v.reason


def test_a_run_whose_tests_all_skipped_judged_nothing():
    """A mistyped --data-dir: every test skipped. Never a pass."""
    skipped = [PhaseOutcome("replay-fp16-500m_bnkps", f"t{i}", "setup", "skipped",
                           "model file missing: /typo/models/scrfd_500m_bnkps.onnx")
               for i in range(9)]
    v = session_verdict(skipped, {})
    assert v.verdict == "NOTHING JUDGED" and not v.passed
    assert v.devices[0].state == "not run"
    assert "model file missing" in v.reason


def test_no_device_at_all_judged_nothing():
    assert session_verdict([], {}).verdict == "NOTHING JUDGED"


def test_a_skipped_device_beside_a_passing_one_leaves_the_run_incomplete():
    skipped = [PhaseOutcome("c", "t", "setup", "skipped", "no OpenVINO")]
    v = session_verdict(_ok("a") + skipped, {"a": PASSED})
    assert v.verdict == "NOT RUN"


@pytest.mark.parametrize("accept, expected", [(False, "INCONCLUSIVE"), (True, "PASS")])
def test_inconclusive_devices_are_accepted_only_when_asked(accept, expected):
    v = session_verdict(_ok("a") + _ok("b"), {"a": PASSED, "b": {"heads": "inconclusive"}},
                        accept_inconclusive=accept)
    assert v.verdict == expected
    assert v.accepted_inconclusive == (("b",) if accept else ())
    if accept:
        assert "accepted by --accept-inconclusive" in v.headline()


def test_fail_is_worse_than_error_and_error_worse_than_inconclusive():
    err = [PhaseOutcome("e", "t", "setup", "failed", "boom")]
    levels = {"a": {"heads": "fail"}, "i": {"heads": "inconclusive"}}
    assert session_verdict(_ok("a") + err + _ok("i"), levels).verdict == "FAIL"
    assert session_verdict(err + _ok("i"), {"i": levels["i"]}).verdict == "ERROR"


def test_a_failed_test_outside_the_recorded_levels_still_fails_the_device():
    calls = _ok("a") + [PhaseOutcome("a", "conformance/test_x.py::test_y[a]", "call", "failed",
                                    "AssertionError: boxes differ")]
    v = session_verdict(calls, {"a": PASSED})
    assert v.verdict == "FAIL" and "test_y: AssertionError: boxes differ" in v.devices[0].reasons


def test_a_device_that_failed_before_recording_a_level_is_an_error():
    calls = [PhaseOutcome("a", "t", "call", "failed", "InputError: output_3.npz truncated")]
    v = session_verdict(calls, {})
    assert v.verdict == "NOTHING JUDGED" and v.devices[0].state == "error"


def test_left_out_combinations_are_listed_and_change_nothing():
    v = session_verdict(_ok("a"), {"a": PASSED}, ["opencv int8: cv2.dnn cannot run QDQ"])
    assert v.verdict == "PASS" and v.left_out == ("opencv int8: cv2.dnn cannot run QDQ",)


def test_the_verdict_survives_its_json_form():
    err = [PhaseOutcome("e", "t", "setup", "failed", "boom")]
    v = session_verdict(_ok("a") + err, {"a": PASSED}, ["x"])
    back = SessionVerdict.from_dict(v.to_dict())
    assert back == v
