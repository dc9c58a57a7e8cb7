"""Conformance reports: ``report.json``, ``report.md``, ``report.html`` (one self-contained
page, :mod:`scrfd_ref.report.html`); the pictures they link come from
:mod:`scrfd_ref.report.pictures`.

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
from scrfd_ref.conformance.gates import GateResult, worst_verdict
from scrfd_ref.formats.files import write_text
from scrfd_ref.report.slices import markdown_section

LEVEL_ORDER = ("heads", "detections", "ap", "collapse", "slices")


#: the version of report.json's layout (``meta.report_format``); readers refuse newer ones
REPORT_FORMAT = 1

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
    #: the session verdict (:class:`~scrfd_ref.conformance.session_verdict.SessionVerdict`
    #: as a dict), set once the session has ended
    session: dict[str, Any] | None = None

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
        verdict = worst_verdict([g.verdict for g in gates])
        rec["levels"][level] = {"test": test, "verdict": verdict, "passed": verdict == "pass",
                                "gates": [g.to_dict() for g in gates], "metrics": _clean(metrics)}

    def add_artifact(self, device_id: str, kind: str, path: Path) -> None:
        """Remember a picture written for a device (PR curve, overlay)."""
        self.artifacts.setdefault(device_id, {})[kind] = str(path)

    def to_dict(self) -> dict[str, Any]:
        """The whole report as a JSON-ready dict."""
        devices = {}
        for k, rec in sorted(self.devices.items()):
            levels = rec["levels"]
            verdict = worst_verdict([lv.get("verdict") or ("pass" if lv["passed"] else "fail")
                                     for lv in levels.values()])
            devices[k] = {**rec, "verdict": verdict, "passed": verdict == "pass",
                          "artifacts": self.artifacts.get(k, {})}
        doc = {"meta": {**self.meta, "report_format": REPORT_FORMAT}, "devices": devices,
               "sections": self.sections}
        if self.session is not None:
            doc["session"] = self.session
        return _clean(doc)

    def collect_partials(self, folder: str | Path) -> None:
        """Fold in (and remove) the partial reports xdist workers saved in ``folder``."""
        for part in sorted(Path(folder).glob(".partial-*.json")):
            self.merge(json.loads(part.read_text()))
            part.unlink()

    def merge(self, other: dict[str, Any]) -> None:
        """Fold in a partial report written by another xdist worker."""
        for k, rec in other.get("devices", {}).items():
            mine = self.device(k, rec.get("spec"), rec.get("info"))
            mine["levels"].update(rec.get("levels", {}))
            self.artifacts.setdefault(k, {}).update(rec.get("artifacts", {}))
        self.sections.update(other.get("sections", {}))

    def write(self, folder: str | Path) -> tuple[Path, Path, Path]:
        """Write ``report.json``, ``report.md`` and ``report.html`` (rendered from the same
        document, pictures inlined) into ``folder``; return their paths."""
        from scrfd_ref.report.html import render_report_html

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        self.collect_partials(out)
        self.meta.setdefault("written", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        doc = self.to_dict()
        text = json.dumps(doc, indent=1) + "\n"
        js = write_text(out / "report.json", text)
        md = write_text(out / "report.md", render_markdown(doc))
        # from the JSON text itself, so report.html shows exactly what report.json holds
        html = write_text(out / "report.html", render_report_html(json.loads(text), out))
        return js, md, html

    def write_partial(self, folder: str | Path, worker: str) -> Path:
        """Write this worker's records for the controller to merge."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        return write_text(out / f".partial-{worker}.json", json.dumps(self.to_dict()))


def _mark(record: dict[str, Any] | None) -> str:
    """The verdict word of a level or device record (``-``: not judged)."""
    if record is None:
        return "-"
    verdict = record.get("verdict") or ("pass" if record.get("passed") else "fail")
    return {"pass": "pass", "fail": "**FAIL**", "inconclusive": "*inconclusive*"}[verdict]


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _number(v: Any) -> str:
    """A gate value as a person reads it: 4 significant digits (no 17-digit floats)."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _gate_line(device: str, g: dict[str, Any]) -> str:
    """One failed or inconclusive gate row as a Markdown list item."""
    op = ">=" if g["gate"].endswith("_min") else "<="
    value = g.get("note") or _number(g["value"])
    iv = g.get("interval")
    if iv:
        value += f" [{_number(iv[0])}, {_number(iv[1])}]"
    if g.get("images_to_decide"):
        value += f"; about {g['images_to_decide']} images would decide it"
    return (f"- `{device}` {g['level']}/{g['gate']} on **{g['subject']}**: {value} "
            f"(needs {op} {_number(g['limit'])}) - {g['why']}")


def _disclosure_lines(meta: dict[str, Any]) -> list[str]:
    """The gates used (banner, sha256, every limit that differs from the shipped file) and
    the run itself (command line, verdict-changing options, exit status, host, commit)."""
    lines: list[str] = []
    gates = meta.get("gates_disclosure")
    if isinstance(gates, dict):
        lines.append(f"- gates: `{gates.get('path')}` (sha256 {str(gates.get('sha256'))[:16]}): "
                     f"**{gates.get('banner')}**")
        lines += [f"  - {c['gate']}: {_number(c['shipped'])} -> {_number(c['used'])} "
                  f"({c['direction']})" for c in gates.get("changes", [])]
    run = meta.get("run")
    if isinstance(run, dict):
        host = run.get("host") or {}
        lines += [f"- command: `{' '.join(str(a) for a in run.get('command', []))}`",
                  "- verdict-changing options: " + (", ".join(
                      f"`{k}`" + (f" {v}" if v is not True else "")
                      for k, v in (run.get("verdict_options") or {}).items()) or "none"),
                  f"- exit status: {run.get('exit_status', '?')}; {run.get('started', '?')} to "
                  f"{run.get('finished', '?')}",
                  f"- host: {host.get('cpu', '?')}, {host.get('cores', '?')} cores, features "
                  f"{' '.join(host.get('features') or []) or 'none of note'}; scrfd-ref "
                  f"{run.get('scrfd_ref', '?')}, commit {run.get('git_commit') or 'unknown'}"]
    return lines + ([""] if lines else [])


def _judged(devices: dict[str, Any], meta: dict[str, Any]) -> str:
    """The images the devices were judged on (not the data folder's): ``4 images from
    19--Couple`` or ``79-344 images from 5 events (per device below)``."""
    from scrfd_ref.report.format import judged_set

    counts, events = judged_set(devices)
    if not counts:
        return f"no image (the data folder holds {meta.get('images', '?')})"
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    where = ", ".join(events) if len(events) <= 3 else f"{len(events)} events"
    return f"{n} images from {where}" + (" (per device below)" if len(counts) > 1 else "")


def _device_lines(devices: dict[str, Any]) -> list[str]:
    """Per device: where its outputs came from and the images it was judged on."""
    lines = []
    for k, rec in devices.items():
        spec = rec.get("spec", {})
        prov = spec.get("provenance") or {}
        events = ", ".join(spec.get("events") or [])
        left = spec.get("left_out") or {}
        lines.append(f"- `{k}`: {prov.get('label', 'provenance not recorded')}; judged on "
                     f"{spec.get('images', '?')} images" + (f" from {events}" if events else "")
                     + (f"; left out {left['count']}: {left.get('why', '')}" if left else ""))
    return lines + ([""] if lines else [])


def render_markdown(doc: dict[str, Any]) -> str:
    """The human summary: per-device gate table, AP table, failed gates, worst images."""
    meta = doc.get("meta", {})
    lines = ["# scrfd-ref conformance report", ""]
    session = doc.get("session")
    if isinstance(session, dict) and session.get("verdict"):
        lines += [f"**Verdict: {session.get('headline', session['verdict'])}**: "
                  f"{session.get('reason', '')}", ""]
        for d in session.get("devices", []):
            if d.get("state") in ("error", "not run"):
                lines.append(f"- `{d['device']}` **{d['state'].upper()}**: "
                             + "; ".join(d.get("reasons") or ["no reason recorded"]))
        if session.get("accepted_inconclusive"):
            lines.append("- accepted by --accept-inconclusive (not evidence of conformance): "
                         + ", ".join(f"`{x}`" for x in session["accepted_inconclusive"]))
        for x in session.get("left_out", []):
            lines.append(f"- left out by the plan: {x}")
        lines.append("")
    lines += _disclosure_lines(meta)
    if meta:
        lines += [f"- profile: `{meta.get('profile', {}).get('name', '?')}`, gates: "
                  f"`{meta.get('gates', '?')}`, judged: {_judged(doc.get('devices', {}), meta)}",
                  "- versions: " + ", ".join(f"{k} {v}" for k, v in
                                               meta.get("versions", {}).items() if k != "platform"),
                  ""]
    devices = doc.get("devices", {})
    lines += _device_lines(devices)
    lines += ["## Summary", "", "| variant | backend | dtype | heads | detections | collapse | AP | "
              "slices | overall |", "|---|---|---|---|---|---|---|---|---|"]
    for k, rec in devices.items():
        spec, lv = rec.get("spec", {}), rec.get("levels", {})
        cells = [_mark(lv.get(level))
                 for level in ("heads", "detections", "collapse", "ap", "slices")]
        lines.append(f"| {spec.get('variant', '?')} | {spec.get('backend', '?')} | "
                     f"{spec.get('dtype', '?')} | " + " | ".join(cells) +
                     f" | {_mark(rec)} |")
    ap_rows = [(k, rec["levels"]["ap"]["metrics"]) for k, rec in devices.items()
               if "ap" in rec.get("levels", {})]
    if ap_rows:
        boot = next((m["bootstrap"] for _, m in ap_rows if m.get("bootstrap")), None)
        lines += ["", "## WIDER FACE AP (device vs fp32 reference, same profile)", "",
                  "Per setting: device AP / reference AP, then the ratio device / reference "
                  + (f"with its {100 * boot['confidence']:g}% interval (paired image bootstrap "
                     f"over the device's images, {boot['resamples']} resamples, seed "
                     f"{boot['seed']}; the gates pass or "
                     "fail only when the whole interval is on one side of the limit)."
                     if boot else "."), "",
                  "| device | easy | medium | hard |", "|---|---|---|---|"]
        for k, m in ap_rows:
            dev, ref = m.get("device", {}), m.get("reference", {})
            cells = []
            for s in ("easy", "medium", "hard"):
                if s not in ref:
                    cells.append("-")
                    continue
                ratio = dev.get(s, 0) / ref[s] if ref.get(s) else float("nan")
                iv = (m.get("intervals") or {}).get(s, {}).get("ratio")
                cells.append(f"{_fmt(dev.get(s))} / {_fmt(ref.get(s))}: x{ratio:.4f}"
                             + (f" [{_fmt(iv[0])}, {_fmt(iv[1])}]" if iv else ""))
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += markdown_section(devices)
    for verdict, title in (("fail", "Failed gates"),
                           ("inconclusive", "Inconclusive gates (the images cannot decide)")):
        rows = [(k, g) for k, rec in devices.items() for lv in rec.get("levels", {}).values()
                for g in lv.get("gates", [])
                if (g.get("verdict") or ("pass" if g["passed"] else "fail")) == verdict]
        if verdict == "inconclusive" and not rows:
            continue
        lines += ["", f"## {title}", ""]
        lines += [_gate_line(k, g) for k, g in rows] or ["none"]
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
