"""Regenerate data/expected/wider_ap.json from independent sources only (run by hand).

    python tests/helpers/pin_wider_ap.py [--data-dir DIR]

scrfd_500m_bnkps on the five shared WIDER events, both profiles, predictions made by code
that is not the package's and evaluated by the literal oracle (``tests/helpers/wider_oracle.py``),
never by the package's fast path:

- ``widerface-eval``: ``tests/helpers/insightface_wider_transcript.py``, a transcription of
  insightface's ``tools/test_widerface.py`` (mmdet pipeline, mmcv NMS) that imports
  nothing from ``scrfd_ref``;
- ``insightface``: the insightface package itself (``insightface.model_zoo.scrfd.SCRFD``,
  the peer), ``detect(img, input_size=(640, 640))`` at its defaults (score 0.5, NMS 0.4).

Rows are written as insightface's test script computes them (``w = x2 - x1`` in float32,
every box kept, inverted ones included).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import insightface_wider_transcript as transcript  # noqa: E402
from wider_oracle import load_ground_truth_mat, wider_eval  # noqa: E402

TARGET = HERE.parents[1] / "data" / "expected" / "wider_ap.json"
MODEL = "scrfd_500m_bnkps.onnx"
EVENTS = ("0--Parade", "13--Interview", "19--Couple", "20--Family_Group", "4--Dancing")


def peer_predictions(model: str, images_root: str, events) -> dict:
    """The insightface package's detections at its defaults, as WIDER rows."""
    import cv2
    from insightface.model_zoo.scrfd import SCRFD

    peer = SCRFD(model_file=model)
    peer.prepare(-1, input_size=(640, 640))
    preds = {}
    for event in events:
        folder = os.path.join(images_root, event)
        for f in sorted(x for x in os.listdir(folder) if x.endswith(".jpg")):
            dets, _ = peer.detect(cv2.imread(os.path.join(folder, f)), input_size=(640, 640))
            preds[(event, f[:-4])] = transcript.wider_rows(dets)
    return preds


def pin(data_dir: str | None) -> dict:
    root = Path(data_dir or os.environ.get("SCRFD_DATA") or HERE.parents[2] / "shared" / "data")
    gt = load_ground_truth_mat(root / "widerface" / "ground_truth", EVENTS)
    model = str(root / "models" / MODEL)
    images = str(root / "widerface" / "WIDER_val" / "images")
    import onnxruntime

    doc = {"model": MODEL, "events": list(EVENTS), "onnxruntime": onnxruntime.__version__,
           "produced_by": {"widerface-eval": "tests/helpers/insightface_wider_transcript.py",
                           "insightface": "insightface.model_zoo.scrfd.SCRFD (peer package)",
                           "evaluation": "tests/helpers/wider_oracle.py"},
           "profiles": {}, "detections": {}}
    for profile, preds in (("widerface-eval", transcript.predict_events(model, images, EVENTS)),
                           ("insightface", peer_predictions(model, images, EVENTS))):
        res = wider_eval(gt, preds)
        doc["profiles"][profile] = {s: float(res[s]["ap"]) for s in ("easy", "medium", "hard")}
        doc["detections"][profile] = int(sum(np.asarray(v).shape[0] for v in preds.values()))
        print(profile, doc["profiles"][profile], doc["detections"][profile])
    return doc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    doc = pin(ap.parse_args().data_dir)
    TARGET.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {TARGET}")
