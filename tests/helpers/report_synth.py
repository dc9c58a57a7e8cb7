"""Synthetic conformance report documents (the ``report.json`` shape) for the report.html
tests: devices with the levels the suite records, failing, inconclusive and hostile rows,
and pictures written as real PNG files (or left missing)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

HEADS = [f"{k}_{s}" for s in (8, 16, 32) for k in ("score", "bbox", "kps")]
HOSTILE = "<script>window.__pwned = 'script'</script>"
HOSTILE_IMG = "<img src=x onerror=\"window.__pwned='img'\">"


def row(level: str, gate: str, subject: str, value: Any, limit: float, passed: bool,
        why: str = "why", note: str = "", **extra: Any) -> dict[str, Any]:
    """One gate row as GateResult.to_dict writes it (plus evidence keys in ``extra``)."""
    return {"level": level, "gate": gate, "subject": subject, "value": value, "limit": limit,
            "passed": passed, "why": why, "note": note, **extra}


def heads_rows(fail_heads: int = 0) -> list[dict[str, Any]]:
    """Five gates per head; the first ``fail_heads`` heads fail cosine, SNR and within_tol."""
    rows = []
    for i, h in enumerate(HEADS):
        bad = i < fail_heads
        subject = f"{h} (worst image 19--Couple/19_Couple_Couple_19_{881 + i})"
        rows += [row("heads", "shape_ok_min", subject, 1.0, 1.0, True),
                 row("heads", "nonfinite_max", subject, 0.0, 0.0, True),
                 row("heads", "cosine_min", subject, 0.99812345 if bad else 0.99997123, 0.9995,
                     not bad, "fp16 keeps the heads' direction (obs 0.99997)"),
                 row("heads", "snr_db_min", subject, 31.10867674968943 if bad else 42.2345678,
                     35.0, not bad, "fp16 rounding noise ~40 dB under the signal (obs 42.2 dB)"),
                 row("heads", "within_tol_min", subject, 0.99512 if bad else 0.99988, 0.999,
                     not bad, "nearly every element inside the fp16 tolerance")]
    return rows


def ap_level(delta: float = 0.0, verdicts: dict[str, str] | None = None,
             intervals: bool = False) -> dict[str, Any]:
    """An AP level: device AP = reference AP - ``delta``; gate rows per setting."""
    ref = {"easy": 0.9382312421923871, "medium": 0.9223030209105154, "hard": 0.7291073846808874}
    dev = {s: v - delta for s, v in ref.items()}
    rows = []
    for s in ref:
        subject = f"{s} AP (device {dev[s]:.4f}, reference {ref[s]:.4f}, 344 images)"
        extra = {"verdict": verdicts[s]} if verdicts else {}
        rows += [row("ap", "abs_delta_max", subject, delta, 0.01, delta <= 0.01, **extra),
                 row("ap", "ratio_min", subject, dev[s] / ref[s], 0.99,
                     dev[s] / ref[s] >= 0.99, **extra)]
    metrics: dict[str, Any] = {"device": {**dev, "images": 344, "settings": list(ref)},
                               "reference": {**ref, "images": 344, "settings": list(ref)}}
    if intervals:
        metrics["intervals"] = {s: {"ratio": [dev[s] / ref[s] - 0.012, dev[s] / ref[s] + 0.004],
                                    "delta": [delta - 0.004, delta + 0.012]} for s in ref}
    return {"test": "conformance/test_ap.py::test_wider_ap_within_gate", "passed": delta <= 0.01,
            "gates": rows, "metrics": metrics}


def device(variant: str, backend: str, dtype: str, *, fail_heads: int = 0,
           detections_fail: bool = False, ap_delta: float = 0.0,
           artifacts: dict[str, str] | None = None) -> dict[str, Any]:
    """One device record with heads, detections, collapse and AP levels."""
    det_subject = "344 images, 1609 reference faces >= 0.5 (worst: 0--Parade/0_Parade_Parade_0_12)"
    det = [row("detections", "recall_min", det_subject, 0.9123 if detections_fail else 1.0, 0.97,
               not detections_fail, "int8 may lose borderline faces, few"),
           row("detections", "precision_min", det_subject, 0.91 if detections_fail else 0.9989,
               0.97, not detections_fail),
           row("detections", "mean_iou_min", det_subject, 0.9681051329904025, 0.92, True),
           row("detections", "landmark_err_px_max", det_subject, "nan", 2.0, True,
               note="not applicable: the model has no landmark heads")]
    levels = {
        "heads": {"test": "conformance/test_heads.py::test_heads_match_reference",
                  "passed": fail_heads == 0, "gates": heads_rows(fail_heads), "metrics": []},
        "detections": {"test": "conformance/test_detections.py::test_detections_match_reference",
                       "passed": not detections_fail, "gates": det, "metrics": {
                           "worst_images": [{"image": "0--Parade/0_Parade_marchingband_1_490",
                                             "ref_count": 45, "dev_count": 36, "found": 40,
                                             "precise": 36, "mean_iou": 0.9587925672531128,
                                             "mismatch": 6.3}]}},
        "collapse": {"test": "conformance/test_detections.py::test_no_score_collapse",
                     "passed": True, "metrics": {}, "gates": [
                         row("detections", "collapse_ratio_min", "faces >= 0.5 in 344 images: "
                             "device 2007 vs reference 2017", 0.9950421417947447, 0.9, True)]},
        "ap": ap_level(ap_delta),
    }
    return {"spec": {"variant": variant, "backend": backend, "dtype": dtype},
            "info": {"library": "onnxruntime", "version": "1.32.0", "dtype": dtype},
            "levels": levels, "passed": all(lv["passed"] for lv in levels.values()),
            "artifacts": artifacts or {}}


def write_png(path: Path, width: int = 320, height: int = 240, seed: int = 0) -> Path:
    """A real PNG picture: a gradient with a few boxes drawn on it."""
    rng = np.random.default_rng(seed)
    img = np.linspace(40, 220, width, dtype=np.float32)[None, :, None].repeat(height, 0)
    img = np.ascontiguousarray(img.repeat(3, 2).astype(np.uint8))
    for _ in range(6):
        x, y = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        colour = (0, 200, 0) if rng.random() < 0.5 else (0, 0, 255)
        cv2.rectangle(img, (x, y), (x + 40, y + 40), colour, 2)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def report(devices: dict[str, dict[str, Any]], **sections: Any) -> dict[str, Any]:
    """A whole report document."""
    return {"meta": {"profile": {"name": "widerface-eval", "input_size": [640, 640]},
                     "gates": "data/gates.toml", "images": 344,
                     "events": ["0--Parade", "19--Couple"],
                     "versions": {"scrfd_ref": "0.1.0", "numpy": "2.4.6"},
                     "written": "2026-12-02T07:37:09Z"},
            "devices": devices, "sections": sections}


def matrix(folder: Path, n: int = 20, *, failing: int = 3, pictures: bool = True
           ) -> dict[str, Any]:
    """``n`` devices over variants x backends x dtypes; the first ``failing`` fail (heads
    and detections), one is inconclusive on AP; pictures as PNG files in ``folder``."""
    combos = [(v, b, t) for v in ("500m_bnkps", "1g", "2.5g", "10g_bnkps", "34g")
              for b in ("ort", "opencv") for t in ("fp16", "int8")]
    devices = {}
    for i, (v, b, t) in enumerate(combos[:n]):
        did = f"{b}-{t}-{v}"
        arts = {}
        if pictures:
            arts = {"PR curves": str(write_png(folder / f"pr_{did}.png", 660, 550, i)),
                    "worst image": str(write_png(folder / f"worst_{did}.png", 1024, 768, i))}
        devices[did] = device(v, b, t, fail_heads=3 if i < failing else 0,
                              detections_fail=i < failing, artifacts=arts)
    if n > failing:
        inc = devices[next(iter(list(devices)[failing:]))]
        inc["levels"]["ap"] = ap_level(0.004, {"easy": "pass", "medium": "pass",
                                               "hard": "inconclusive"}, intervals=True)
        inc["levels"]["ap"]["gates"][-1].update(
            interval=[0.9861, 1.0023], images_to_decide=420,
            lack="faces in the hard setting")
    return report(devices, likely_causes={"devices": {
        d: ["1. fp16 rounding on score heads (gain 3.1 dB)", "   closest: bf16 storage"]
        for d in list(devices)[:failing]}, "markdown": "## Likely causes\n"})
