"""scrfd_500m_bnkps on the five shared WIDER events: pinned AP, and every path agrees.

``data/expected/wider_ap.json`` comes from sources independent of the package
(tests/helpers/pin_wider_ap.py): the widerface-eval predictions from a transcription of
insightface's WIDER test script (tests/helpers/insightface_wider_transcript.py), the insightface
ones from the insightface package itself, both evaluated by the literal oracle
(tests/helpers/wider_oracle.py) reading the .mat files itself. Here predictions are made again
with ``scrfd-ref wider-run`` and evaluated by the fast path, by ``scrfd-ref eval --json``
and by the suite's ``reference_ap`` fixture: those three must agree exactly (same
predictions, same arithmetic; the fixture evaluates the images int8 calibration never
sees, so the fast path is compared with it on the same images). Against the pinned values the comparison is tolerant
(|dAP| <= 1e-4): the package writes exact float64 widths where the script rounds them to
float32, and a different onnxruntime release may change the last bits of head outputs;
both move AP by far less, while a real regression of preprocessing, decode, NMS or
evaluation moves it by more (the mmcv-vs-"+1" NMS difference alone moved hard AP by
1.4e-3).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrfd_ref.cli import main
from scrfd_ref.formats.datadir import SHARED_EVENTS
from scrfd_ref.formats.wider_txt import read_prediction_dir
from scrfd_ref.quantize.calibration import calibration_keys
from scrfd_ref.widerface.evaluate import evaluate, evaluate_dir

EXPECTED = Path(__file__).resolve().parents[2] / "data" / "expected" / "wider_ap.json"
PIN_TOL = 1e-4
SETTINGS = ("easy", "medium", "hard")

pytestmark = pytest.mark.data


@pytest.mark.acceptance  # wider-run over the 394 shared images: dataset-wide
@pytest.mark.parametrize("profile", ["widerface-eval", "insightface"])
def test_pinned_ap_fast_path_cli_and_fixture_agree(profile, tmp_path, data_root, need,
                                                   ground_truth, reference_ap, capsys):
    pinned = json.loads(EXPECTED.read_text())["profiles"][profile]
    model = need(data_root / "models" / "scrfd_500m_bnkps.onnx", "model file")
    pred = tmp_path / "pred"
    assert main(["--data-dir", str(data_root), "wider-run", "-q", "-m", str(model),
                 "--profile", profile, "--out", str(pred), "--events", *SHARED_EVENTS]) == 0
    fast = evaluate_dir(pred, ground_truth, events=SHARED_EVENTS)
    capsys.readouterr()
    assert main(["--data-dir", str(data_root), "eval", "--pred", str(pred), "--events",
                 *SHARED_EVENTS, "--json", "-"]) == 0
    cli = json.loads(capsys.readouterr().out)
    fixture = reference_ap("500m_bnkps", profile)
    preds = read_prediction_dir(pred, SHARED_EVENTS)
    calib = set(calibration_keys())
    same_images = evaluate(preds, ground_truth,
                           images=[k for k in preds if f"{k[0]}/{k[1]}" not in calib])
    assert same_images.images == fixture.images < fast.images
    with capsys.disabled():
        print(f"\n500m_bnkps {profile} AP on {len(SHARED_EVENTS)} events: "
              + ", ".join(f"{s} {fast.ap[s]:.6f} (pinned {pinned[s]:.6f})" for s in SETTINGS))
    for s in SETTINGS:
        assert fast.ap[s] == cli[s], s
        assert same_images.ap[s] == fixture.ap[s], s
        assert abs(fast.ap[s] - pinned[s]) <= PIN_TOL, (s, fast.ap[s], pinned[s])
