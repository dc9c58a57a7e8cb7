"""A small, complete workspace for command-line tests, built from synthetic data only.

``build_workspace(root)`` makes, under ``root``:

- ``images/<event>/<name>.jpg``: three small WIDER-style images in two events;
- ``model.onnx`` / ``model_b.onnx``: two synthetic SCRFD-shaped models (dynamic input,
  landmarks) with different weights; ``fixed.onnx``: one with a fixed 640x640 input;
- ``gt/wider_face_val_bbx_gt.txt``: a text ground truth for the images (no setting lists);
- ``pred/``: ``wider-run`` predictions of ``model.onnx`` (with its manifest);
- ``npz/`` + ``datalist.txt``: ``image2npz`` of the images;
- ``dump/``: ``dump`` of the datalist through ``model.onnx`` (device layout, fp32 files);
- ``cache/``: the model cache those commands used (``SCRFD_CACHE``).

Everything is made through the package's own commands, so the workspace is what a user
would have after running them.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from scrfd_ref.device.synthetic import write_synthetic_model

IMAGES = {("1--A", "1_a_1"): (96, 128), ("1--A", "1_a_2"): (160, 120),
          ("2--B", "2_b_1"): (100, 100)}


def _image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.kron(base, np.ones((8, 8, 1), np.uint8))[:h, :w])


def build_workspace(root: Path) -> Path:
    """Build the workspace under ``root`` (see the module docstring); return ``root``."""
    from scrfd_ref.cli import main

    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SCRFD_CACHE", str(root / "cache"))
    for i, ((event, name), (h, w)) in enumerate(IMAGES.items()):
        folder = root / "images" / event
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{name}.jpg"), _image(h, w, i))
    write_synthetic_model(root / "model.onnx", seed=1)
    write_synthetic_model(root / "model_b.onnx", seed=2)
    write_synthetic_model(root / "fixed.onnx", seed=1, input_size=(640, 640))
    gt = root / "gt"
    gt.mkdir(exist_ok=True)
    lines = []
    for (event, name), (h, w) in IMAGES.items():
        lines += [f"{event}/{name}.jpg", "1", f"{w // 4} {h // 4} {w // 2} {h // 2} 0 0 0 0 0 0"]
    (gt / "wider_face_val_bbx_gt.txt").write_text("\n".join(lines) + "\n")
    common = ["--data-dir", str(root / "nodata")]
    env_cache = os.environ.get("SCRFD_CACHE")
    os.environ["SCRFD_CACHE"] = str(root / "cache")
    try:
        assert main([*common, "wider-run", "-q", "-m", str(root / "model.onnx"), "--images",
                     str(root / "images"), "--out", str(root / "pred"), "--score-thr",
                     "0.3"]) == 0
        assert main([*common, "image2npz", "-q", "--dataset-path", str(root / "images"),
                     "--target-path", str(root / "npz"), "--text-path",
                     str(root / "datalist.txt")]) == 0
        assert main([*common, "dump", "-q", "-m", str(root / "model.onnx"), "--datalist",
                     str(root / "datalist.txt"), "--out", str(root / "dump")]) == 0
    finally:
        if env_cache is None:
            os.environ.pop("SCRFD_CACHE", None)
        else:
            os.environ["SCRFD_CACHE"] = env_cache
    return root
