"""Conformance reports: ``report.json``, ``report.md``, PR curves and worst-image overlays.

The suite records, per device and level, the measured metrics and the gate rows
(:class:`~scrfd_ref.conformance.gates.GateResult`). :class:`ConformanceReport` collects them;
:meth:`ConformanceReport.write` produces the files. Under pytest-xdist each worker saves
its records as ``.partial-<worker>.json`` and the controller merges them.
"""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scrfd_ref import __version__
from scrfd_ref.conformance.gates import GateResult
from scrfd_ref.formats.files import atomic_write, write_bytes, write_text

LEVEL_ORDER = ("heads", "detections", "ap", "collapse")


def library_versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    import cv2
    import onnx
    import onnxruntime
    import scipy

    return {"scrfd_ref": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__, "opencv": cv2.__version__, "scipy": scipy.__version__,
            "platform": platform.platform()}


def _clean(x: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, non-finite floats to strings."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


@dataclass
class ConformanceReport:
    """Everything the conformance tests measured in one session."""

    meta: dict[str, Any] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)

    def device(self, device_id: str, spec: dict[str, Any] | None = None,
               info: dict[str, Any] | None = None) -> dict[str, Any]:
        """The record of one device (created on first use)."""
        rec = self.devices.setdefault(device_id, {"spec": {}, "info": {}, "levels": {}})
        if spec:
            rec["spec"] = spec
        if info:
            rec["info"] = info
        return rec

    def record(self, device_id: str, level: str, gates: Sequence[GateResult],
               metrics: Any, *, spec: dict[str, Any] | None = None,
               info: dict[str, Any] | None = None, test: str | None = None) -> None:
        """Store one level's metrics and gate rows for a device."""
        rec = self.device(device_id, spec, info)
        rec["levels"][level] = {"test": test, "passed": all(g.passed for g in gates),
                                "gates": [g.to_dict() for g in gates], "metrics": _clean(metrics)}

    def add_artifact(self, device_id: str, kind: str, path: Path) -> None:
        """Remember a picture written for a device (PR curve, overlay)."""
        self.artifacts.setdefault(device_id, {})[kind] = str(path)

    def to_dict(self) -> dict[str, Any]:
        """The whole report as a JSON-ready dict."""
        devices = {}
        for k, rec in sorted(self.devices.items()):
            levels = rec["levels"]
            devices[k] = {**rec, "passed": all(lv["passed"] for lv in levels.values()),
                          "artifacts": self.artifacts.get(k, {})}
        return _clean({"meta": self.meta, "devices": devices, "sections": self.sections})

    def merge(self, other: dict[str, Any]) -> None:
        """Fold in a partial report written by another xdist worker."""
        for k, rec in other.get("devices", {}).items():
            mine = self.device(k, rec.get("spec"), rec.get("info"))
            mine["levels"].update(rec.get("levels", {}))
            self.artifacts.setdefault(k, {}).update(rec.get("artifacts", {}))
        self.sections.update(other.get("sections", {}))

    def write(self, folder: str | Path) -> tuple[Path, Path]:
        """Write ``report.json`` and ``report.md`` into ``folder``; return their paths."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        for part in sorted(out.glob(".partial-*.json")):
            self.merge(json.loads(part.read_text()))
            part.unlink()
        self.meta.setdefault("written", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        doc = self.to_dict()
        js = write_text(out / "report.json", json.dumps(doc, indent=1) + "\n")
        md = write_text(out / "report.md", render_markdown(doc))
        return js, md

    def write_partial(self, folder: str | Path, worker: str) -> Path:
        """Write this worker's records for the controller to merge."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        return write_text(out / f".partial-{worker}.json", json.dumps(self.to_dict()))


def _mark(passed: bool | None) -> str:
    return "-" if passed is None else ("pass" if passed else "**FAIL**")


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def render_markdown(doc: dict[str, Any]) -> str:
    """The human summary: per-device gate table, AP table, failed gates, worst images."""
    meta = doc.get("meta", {})
    lines = ["# scrfd-ref conformance report", ""]
    if meta:
        lines += [f"- profile: `{meta.get('profile', {}).get('name', '?')}`, gates: "
                  f"`{meta.get('gates', '?')}`, images: {meta.get('images', '?')} "
                  f"({', '.join(meta.get('events', []))})",
                  "- versions: " + ", ".join(f"{k} {v}" for k, v in
                                               meta.get("versions", {}).items() if k != "platform"),
                  ""]
    devices = doc.get("devices", {})
    lines += ["## Summary", "", "| variant | backend | dtype | heads | detections | collapse | AP | overall |",
              "|---|---|---|---|---|---|---|---|"]
    for k, rec in devices.items():
        spec, lv = rec.get("spec", {}), rec.get("levels", {})
        cells = [_mark(lv[level]["passed"]) if level in lv else "-"
                 for level in ("heads", "detections", "collapse", "ap")]
        lines.append(f"| {spec.get('variant', '?')} | {spec.get('backend', '?')} | "
                     f"{spec.get('dtype', '?')} | " + " | ".join(cells) +
                     f" | {_mark(rec.get('passed'))} |")
    ap_rows = [(k, rec["levels"]["ap"]["metrics"]) for k, rec in devices.items()
               if "ap" in rec.get("levels", {})]
    if ap_rows:
        lines += ["", "## WIDER FACE AP (device vs fp32 reference, same profile)", "",
                  "Deltas are device minus reference (negative: the device lost AP); the ratio "
                  "is device / reference.", "",
                  "| device | easy | medium | hard | ref easy | ref medium | ref hard | worst delta | worst ratio |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for k, m in ap_rows:
            dev, ref = m.get("device", {}), m.get("reference", {})
            settings = [s for s in ("easy", "medium", "hard", "all") if s in ref]
            deltas = [dev.get(s, 0) - ref.get(s, 0) for s in settings]
            ratios = [dev.get(s, 0) / ref[s] if ref.get(s) else float("nan") for s in settings]
            lines.append(f"| {k} | " + " | ".join(_fmt(dev.get(s)) for s in settings)
                         + " | " + " | ".join(_fmt(ref.get(s)) for s in settings)
                         + f" | {min(deltas):+.4f} | {min(ratios):.4f} |")
    failed = [(k, g) for k, rec in devices.items() for lv in rec.get("levels", {}).values()
              for g in lv.get("gates", []) if not g["passed"]]
    lines += ["", "## Failed gates", ""]
    if failed:
        for k, g in failed:
            op = ">=" if g["gate"].endswith("_min") else "<="
            value = g.get("note") or g["value"]
            lines.append(f"- `{k}` {g['level']}/{g['gate']} on **{g['subject']}**: {value} "
                         f"(needs {op} {g['limit']}) - {g['why']}")
    else:
        lines.append("none")
    worst = [(k, rec["levels"]["detections"]["metrics"].get("worst_images", []))
             for k, rec in devices.items() if "detections" in rec.get("levels", {})]
    if any(w for _, w in worst):
        lines += ["", "## Worst images (detection level)", "",
                  "Ranked by mismatch = reference faces missed + device faces unmatched + "
                  "sum of (1 - IoU) over matched pairs, at the detection gate's operating "
                  "point; images where neither side has a face, and perfect ones, are "
                  "never listed.", "",
                  "| device | image | ref faces | device faces | missed | extra | mean IoU | mismatch |",
                  "|---|---|---|---|---|---|---|---|"]
        for k, rows in worst:
            for r in rows[:3]:
                missed = r["ref_count"] - r.get("found", 0)
                extra = r["dev_count"] - r.get("precise", 0)
                iou = "-" if r.get("mean_iou") is None else _fmt(r["mean_iou"], 3)
                lines.append(f"| {k} | {r['image']} | {r['ref_count']} | {r['dev_count']} | "
                             f"{missed} | {extra} | {iou} | {_fmt(r.get('mismatch', 0.0), 2)} |")
    for name, section in doc.get("sections", {}).items():
        if isinstance(section, dict) and "markdown" in section:
            lines += ["", section["markdown"].rstrip()]
    arts = [(k, rec.get("artifacts", {})) for k, rec in devices.items() if rec.get("artifacts")]
    if arts:
        lines += ["", "## Pictures", ""]
        for k, a in arts:
            lines.append(f"- `{k}`: " + ", ".join(f"[{kind}]({Path(p).name})" for kind, p in a.items()))
    return "\n".join(lines) + "\n"


def plot_pr_comparison(reference: Any, device: Any, path: str | Path, title: str) -> Path:
    """Reference (dashed) and device (solid) PR curves of the three settings in one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for s, colour in zip(reference.settings, ("tab:green", "tab:orange", "tab:red")):
        for res, style, who in ((reference, "--", "fp32 ref"), (device, "-", "device")):
            c = res.curves[s]
            ax.plot(c.recall, c.precision, style, color=colour,
                    label=f"{s} {who} AP {res.ap[s]:.4f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    p = Path(path)
    with atomic_write(p, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
    return p


def overlay_picture(image_path: str | Path, reference: Any, device: Any, path: str | Path,
                    caption: str) -> Path:
    """The image with reference boxes (green) and device boxes (red) drawn, as PNG."""
    import cv2

    from scrfd_ref.formats.images import encode_image, read_image
    from scrfd_ref.formats.pictures import draw_detections

    img = draw_detections(read_image(image_path), reference, colour=(0, 200, 0), label=False)
    img = draw_detections(img, device, colour=(0, 0, 255), label=False)
    cv2.putText(img, caption, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
    return write_bytes(Path(path), encode_image(img, ".png"))
