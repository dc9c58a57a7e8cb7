"""localize on a real model: faults injected into single nodes are named in their stage,
honest devices get "no stage" (a small slice of ``scrfd-ref localize trials``; the full
table is in the README).

The expected stage of a fault is where the test put it (the stage whose nodes hold the
faulted node, read from ``localize_cuts.json``); the bands are the shipped ones, measured on
other images (0--Parade) than these (4--Dancing).
"""
from __future__ import annotations

import json

import pytest

from scrfd_ref.cli.app import main
from scrfd_ref.formats.dataset import list_images

pytestmark = pytest.mark.acceptance


def test_faults_in_nodes_are_named_in_their_stage_and_honest_devices_are_not(
        tmp_path, variant_file, wider_images_dir, capsys):
    model = variant_file("500m_bnkps")
    images = tmp_path / "images"
    for it in list_images(wider_images_dir, ["4--Dancing"])[:3]:
        (images / it.event).mkdir(parents=True, exist_ok=True)
        (images / it.event / it.path.name).symlink_to(it.path)
    assert main(["image2npz", "-q", "--dataset-path", str(images), "--target-path",
                 str(tmp_path / "npz"), "--text-path", str(tmp_path / "list.txt")]) == 0
    rc = main(["localize", "trials", "-q", "-m", str(model), "--datalist",
               str(tmp_path / "list.txt"), "--honest", "ort/fp16", "ort/int8",
               "--fault-devices", "ort/fp16", "--faults", "relu_identity", "pad_shift",
               "int8_scale", "--out", str(tmp_path / "trials")])
    summary = json.loads((tmp_path / "trials" / "trials.json").read_text())
    trials = summary["trials"]
    honest = [t for t in trials if t["fault"] == "honest"]
    faults = [t for t in trials if t["fault"] != "honest"]
    assert len(honest) == 2 and all(t["named"] is None for t in honest), honest
    # every fault lands in a stage that holds its node, in at least 8 distinct stages each
    for fault in ("relu_identity", "pad_shift", "int8_scale"):
        mine = [t for t in faults if t["fault"] == fault]
        assert len({t["expected"] for t in mine}) >= 8, (fault, mine)
    seen = [t for t in faults if t["observable"]]        # moved beyond the honest band
    assert len(seen) >= 0.8 * len(faults)
    named = sum(t["named"] == t["expected"] for t in seen)
    assert named >= 0.9 * len(seen), [t for t in seen if t["named"] != t["expected"]]
    assert all(t["named"] in (None, t["expected"]) for t in faults if not t["observable"])
    assert rc == 0, capsys.readouterr().out
