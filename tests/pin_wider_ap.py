"""Regenerate data/expected/wider_ap.json with the literal oracle (run by hand).

    python tests/pin_wider_ap.py [--data-dir DIR]

Runs ``scrfd-ref wider-run`` with scrfd_500m_bnkps.onnx on the shared five events for
the ``widerface-eval`` and ``insightface`` profiles and evaluates the predictions with
``tests/wider_oracle.py`` (the loop-for-loop transcription of the official protocol),
never with the package's fast path.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from conftest import SHARED_EVENTS  # noqa: E402
from wider_oracle import wider_eval  # noqa: E402

from scrfd_ref import __version__  # noqa: E402
from scrfd_ref import data as data_mod  # noqa: E402
from scrfd_ref.cli import main  # noqa: E402
from scrfd_ref.formats.ground_truth import load_ground_truth  # noqa: E402
from scrfd_ref.formats.wider_txt import read_prediction_dir  # noqa: E402

TARGET = HERE.parent / "data" / "expected" / "wider_ap.json"
MODEL = "scrfd_500m_bnkps.onnx"
PROFILES = ("widerface-eval", "insightface")


def pin(data_dir: str | None) -> dict:
    root = data_mod.data_dir(data_dir)
    gt = load_ground_truth(root / "widerface" / "ground_truth").select(SHARED_EVENTS)
    import onnxruntime

    doc = {"model": MODEL, "events": list(SHARED_EVENTS), "scrfd_ref": __version__,
           "onnxruntime": onnxruntime.__version__, "produced_by": "tests/wider_oracle.py",
           "profiles": {}}
    for profile in PROFILES:
        with tempfile.TemporaryDirectory() as tmp:
            main(["--data-dir", str(root), "wider-run", "-q", "-m", str(root / "models" / MODEL),
                  "--profile", profile, "--out", tmp, "--events", *SHARED_EVENTS])
            preds = read_prediction_dir(tmp, SHARED_EVENTS)
        res = wider_eval(gt, preds)
        doc["profiles"][profile] = {s: float(res[s]["ap"]) for s in ("easy", "medium", "hard")}
        print(profile, doc["profiles"][profile])
    return doc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    doc = pin(ap.parse_args().data_dir)
    TARGET.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {TARGET}")
