"""What ``report.html`` shows, built from the ``report.json`` document alone.

:func:`report_view` turns the document into plain values for the template
(``templates/report.html.j2``): the overall verdict, the variant x backend x dtype matrix,
each device's gate rows grouped by level and head (failures first, numbers rounded to what
the gate resolves), the AP table, the pictures (inlined), the likely causes, the AP
decomposition and the identities. Every string stays a string: the template escapes it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from scrfd_ref.report.format import (
    LEVEL_ORDER,
    combine,
    device_anchor,
    device_verdict,
    dtype_order,
    format_limit,
    format_number,
    judged_set,
    level_verdict,
    margin,
    ordered,
    picture,
    row_verdict,
    unit_of,
    variant_order,
)
from scrfd_ref.widerface.slices import SLICE_NAMES

_SEV = {"fail": 0, "inconclusive": 1, "pass": 2, "none": 3}
SETTINGS = ("easy", "medium", "hard", "all")


def split_subject(subject: str) -> tuple[str, str]:
    """``"score_8 (worst image x)"`` -> ``("score_8", "worst image x")``: the head (or
    bucket, AP setting) a row belongs to, and the rest of its subject."""
    i = subject.find(" (")
    if i > 0 and subject.endswith(")"):
        return subject[:i], subject[i + 2:-1]
    return subject, ""


def _interval(pair: Any, gate: str = "") -> str:
    if isinstance(pair, (list, tuple)) and len(pair) == 2:
        return f"[{format_number(pair[0], gate)}, {format_number(pair[1], gate)}]"
    return ""


def gate_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One gate row for the page."""
    gate = str(row.get("gate", "?"))
    note = str(row.get("note") or "")
    # a gate that does not apply to the device judged nothing: never counted as a pass
    verdict = "none" if note.startswith("not applicable") else row_verdict(row)
    head, detail = split_subject(str(row.get("subject", "")))
    op = "\u2265" if gate.endswith("_min") else "\u2264" if gate.endswith("_max") else "="
    unit = unit_of(gate)
    lack = row.get("lack")
    decide = row.get("images_to_decide")
    return {"gate": gate, "verdict": verdict, "head": head, "detail": detail, "note": note,
            "value": "" if note else format_number(row.get("value"), gate, row.get("limit")),
            "unit": unit, "limit": f"{op} {format_limit(row.get('limit'))}",
            "margin": None if note else margin(row.get("value"), gate, row.get("limit")),
            "why": str(row.get("why") or ""), "interval": _interval(row.get("interval"), gate),
            "images_to_decide": decide if isinstance(decide, int) else None,
            "lack": str(lack) if lack else ""}


def level_view(name: str, level: Mapping[str, Any]) -> dict[str, Any]:
    """One level of a device: its gate rows grouped by head, failures first."""
    rows = [gate_row(r) for r in level.get("gates") or []]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["head"], []).append(r)
    view_groups = []
    for head, members in groups.items():
        members = sorted(members, key=lambda r: _SEV[r["verdict"]])  # stable: declared order
        details = {r["detail"] for r in members}
        common = details.pop() if len(details) == 1 else ""
        view_groups.append({"head": head, "detail": common,
                            "verdict": combine(r["verdict"] for r in members),
                            "rows": [{**r, "detail": ""} if common else r for r in members]})
    view_groups.sort(key=lambda g: _SEV[g["verdict"]])
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("fail", "inconclusive", "pass")}
    verdict = level_verdict(level)
    shown = [g for g in view_groups if g["verdict"] != "pass"] if verdict != "pass" else []
    return {"name": name, "verdict": verdict, "groups": shown or view_groups,
            "passing": [g for g in view_groups if g["verdict"] == "pass"] if shown else [],
            "counts": counts, "rows": len(rows), "test": str(level.get("test") or "")}


def _flat(value: Any, key: str = "") -> list[tuple[str, str]]:
    """``{"a": {"b": 1}}`` -> ``[("a.b", "1")]``; lists joined with commas."""
    if isinstance(value, Mapping):
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out += _flat(v, f"{key}.{k}" if key else str(k))
        return out
    if isinstance(value, (list, tuple)):
        if all(not isinstance(v, (Mapping, list, tuple)) for v in value):
            return [(key, ", ".join(str(v) for v in value))]
        return [(key, json.dumps(value))]
    return [(key, "\u2013" if value is None else str(value))]


def _worst_images(level: Mapping[str, Any]) -> list[dict[str, Any]]:
    metrics = level.get("metrics")
    if not isinstance(metrics, Mapping):
        return []
    out = []
    for r in (metrics.get("worst_images") or [])[:5]:
        if not isinstance(r, Mapping):
            continue
        ref, dev = r.get("ref_count", 0), r.get("dev_count", 0)
        out.append({"image": str(r.get("image", "?")), "ref": ref, "dev": dev,
                    "missed": ref - r.get("found", 0), "extra": dev - r.get("precise", 0),
                    "iou": format_number(r.get("mean_iou"), "mean_iou_min", 0.9),
                    "mismatch": format_number(r.get("mismatch"))})
    return out


def device_view(device_id: str, rec: Mapping[str, Any], folder: Path,
                causes: Mapping[str, Any], thumbnails: bool = False) -> dict[str, Any]:
    """One device: identity, verdict, levels, worst images, pictures (``thumbnails``:
    small ones linking the full files), likely causes."""
    spec = rec.get("spec") or {}
    levels = rec.get("levels") or {}
    views = [level_view(n, levels[n]) for n in ordered(levels, LEVEL_ORDER)]
    counts = {v: sum(lv["counts"][v] for lv in views) for v in ("fail", "inconclusive", "pass")}
    found = causes.get(device_id)
    return {"id": device_id, "anchor": device_anchor(device_id), "verdict": device_verdict(rec),
            "variant": str(spec.get("variant", "?")), "backend": str(spec.get("backend", "?")),
            "dtype": str(spec.get("dtype", "?")), "info": _flat(rec.get("info") or {}),
            "levels": views, "level_verdicts": {lv["name"]: lv["verdict"] for lv in views},
            "counts": counts,
            "worst_images": _worst_images(levels.get("detections") or {}),
            "pictures": [picture(folder, str(k), str(p), thumbnail=thumbnails)
                         for k, p in (rec.get("artifacts") or {}).items()],
            "causes": _cause_lines(found), "evidence": _evidence(spec, levels),
            "provenance": _provenance(spec.get("provenance"))}


def _evidence(spec: Mapping[str, Any], levels: Mapping[str, Any]) -> str:
    """``4 images from 19--Couple; heads 2.1 s, detections 0.4 s``: what a device was
    judged on and how long each level took."""
    events = [str(e) for e in spec.get("events") or []]
    text = f"{spec.get('images', '?')} images" + (f" from {', '.join(events[:4])}"
                                                  + (" ..." if len(events) > 4 else "")
                                                  if events else "")
    times = [f"{n} {float(lv['seconds']):.1f} s" for n, lv in levels.items()
             if isinstance(lv, Mapping) and isinstance(lv.get("seconds"), (int, float))]
    left = spec.get("left_out")
    if isinstance(left, Mapping) and left.get("count"):
        text += f"; left out {left['count']}: {left.get('why', '')}"
    return text + (f"; {', '.join(times)}" if times else "")


def _provenance(prov: Any) -> dict[str, Any] | None:
    """Where a device's outputs came from: its label and the manifest's fields."""
    if not isinstance(prov, Mapping):
        return None
    fields = [(str(k), str(v)) for k, v in _flat({k: v for k, v in prov.items()
                                                   if k not in ("label",)})]
    return {"label": str(prov.get("label", "")), "fields": fields,
            "fault": bool(prov.get("fault")), "ours": bool(prov.get("made_by_scrfd_ref"))}


def _cause_lines(found: Any) -> list[str]:
    if found is None:
        return []
    if isinstance(found, str):
        return [found]
    if isinstance(found, Mapping):
        return [f"{k}: {v}" for k, v in _flat(found)]
    return [line.strip() if isinstance(line, str) else json.dumps(line) for line in found]


def ap_row(dev: Mapping[str, Any]) -> dict[str, Any] | None:
    """A device's line of the AP table (``None`` without an AP level)."""
    raw = dev["_levels"].get("ap")
    if not raw:
        return None
    metrics = raw.get("metrics") if isinstance(raw.get("metrics"), Mapping) else {}
    d, r = metrics.get("device") or {}, metrics.get("reference") or {}
    settings = r.get("settings") or [s for s in SETTINGS if s in r]
    intervals = metrics.get("intervals") or raw.get("intervals") or {}
    intervals = intervals if isinstance(intervals, Mapping) else {}
    rows = [gate_row(g) for g in raw.get("gates") or []]
    cells = {}
    for s in settings:
        da, ra = d.get(s), r.get(s)
        ok = isinstance(da, (int, float)) and isinstance(ra, (int, float))
        iv = intervals.get(s) if isinstance(intervals.get(s), Mapping) else {}
        cells[s] = {
            "setting": s,
            "verdict": combine(x["verdict"] for x in rows if x["head"] == f"{s} AP"),
            "device": format_number(da, "ratio"), "reference": format_number(ra, "ratio"),
            "delta": f"{da - ra:+.4f}" if ok else "\u2013",
            "ratio": format_number(da / ra, "ratio") if ok and ra else "\u2013",
            "ratio_interval": _interval(iv.get("ratio"), "ratio_min"),
            "delta_interval": _interval(iv.get("delta"), "abs_delta_max")}
    return {"id": dev["id"], "anchor": dev["anchor"], "verdict": dev["level_verdicts"]["ap"],
            "images": r.get("images", ""), "cells": cells}


def slice_row(dev: Mapping[str, Any]) -> dict[str, Any] | None:
    """A device's line of the face-attribute table (``None`` without a slice level): per
    slice the recall and AP deltas, their intervals and the slice's verdict."""
    from scrfd_ref.report.slices import slice_verdicts

    raw = dev["_levels"].get("slices")
    if not raw:
        return None
    doc = (raw.get("metrics") or {}).get("slices") if isinstance(raw.get("metrics"),
                                                                  Mapping) else None
    verdicts = slice_verdicts(raw)
    cells = {}
    for name, c in ((doc or {}).get("slices") or {}).items():
        rec, ap = c.get("recall_delta"), c.get("ap_delta")
        cells[name] = {"verdict": verdicts.get(name, "none"), "faces": c.get("faces", ""),
                       "recall": "\u2013" if rec is None else f"{rec:+.3f}",
                       "ap": "\u2013" if ap is None else f"{ap:+.3f}",
                       "title": f"{name}: {c.get('faces')} faces; recall delta "
                                f"{_interval(c.get('recall_interval'))} corrected "
                                f"{_interval(c.get('recall_corrected'))}; AP delta "
                                f"{_interval(c.get('ap_interval'))} corrected "
                                f"{_interval(c.get('ap_corrected'))}"}
    return {"id": dev["id"], "anchor": dev["anchor"], "verdict": dev["level_verdicts"]["slices"],
            "cells": cells, "missing": str((raw.get("metrics") or {}).get("missing") or "")}


def _slice_header(names: list[str]) -> dict[str, Any]:
    """The slice table's two header rows: attributes spanning their values."""
    groups: list[dict[str, Any]] = []
    for n in names:
        attr = n.split("=", 1)[0]
        if groups and groups[-1]["name"] == attr:
            groups[-1]["count"] += 1
        else:
            groups.append({"name": attr, "count": 1, "first": n})
    return {"slice_names": names, "slice_attributes": groups,
            "slice_firsts": {g["first"] for g in groups}}


def _matrix(devices: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows variants, columns backend x dtype, cells the device verdicts."""
    backends = sorted({d["backend"] for d in devices})
    dtypes = dtype_order(d["dtype"] for d in devices)
    columns = [(b, t) for b in backends for t in dtypes
               if any(d["backend"] == b and d["dtype"] == t for d in devices)]
    by_key = {(d["variant"], d["backend"], d["dtype"]): d for d in devices}
    rows = []
    for v in variant_order(d["variant"] for d in devices):
        rows.append({"variant": v, "cells": [by_key.get((v, b, t)) for b, t in columns]})
    groups = [{"backend": b, "span": sum(1 for c in columns if c[0] == b)} for b in backends]
    return {"columns": [{"backend": b, "dtype": t} for b, t in columns], "groups": groups,
            "rows": rows}


def _decomposition(section: Any) -> dict[str, Any] | None:
    if not isinstance(section, Mapping) or not isinstance(section.get("steps"), list):
        return None
    steps, prev = [], None
    for s in section["steps"]:
        if not isinstance(s, Mapping):
            continue
        profile = s.get("profile")
        name = profile.get("name", "?") if isinstance(profile, Mapping) else str(profile)
        aps = {k: s.get(k) for k in ("easy", "medium", "hard")}
        delta = {k: (f"{aps[k] - prev[k]:+.4f}" if prev and isinstance(aps[k], (int, float))
                     and isinstance(prev[k], (int, float)) else "") for k in aps}
        steps.append({"label": str(s.get("label", "")), "dtype": str(s.get("dtype", "")),
                      "profile": name,
                      "ap": {k: format_number(v, "ratio") for k, v in aps.items()},
                      "delta": delta})
        prev = aps
    return {"variant": str(section.get("variant", "")), "steps": steps}


def _interval_label(devices: Mapping[str, Any]) -> str:
    """What the AP intervals are: ``95 % paired image bootstrap, 1000 resamples, seed 0``
    (empty when no AP level carries one)."""
    for rec in devices.values():
        ap = ((rec.get("levels") or {}).get("ap") or {}) if isinstance(rec, Mapping) else {}
        boot = (ap.get("metrics") or {}).get("bootstrap") if isinstance(ap, Mapping) else None
        if isinstance(boot, Mapping):
            return (f"intervals: {100 * float(boot.get('confidence', 0)):g} % paired image "
                    f"bootstrap, {boot.get('resamples')} resamples, seed {boot.get('seed')}, "
                    "over each device's images")
    return ""


def _judged_set(devices: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The images the devices were judged on (not the data folder's contents): ``images``
    (a count, or a range when devices differ) and ``events``."""
    counts, events = judged_set(devices)
    if not counts:
        return {"images": meta.get("images", "?"), "events": len(meta.get("events") or [])}
    return {"images": str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}",
            "events": len(events)}


def _gates_banner(disclosure: Any) -> dict[str, Any] | None:
    """The gates disclosure for the page: the banner words, the file's sha256 and each
    limit that differs from the shipped file."""
    if not isinstance(disclosure, Mapping):
        return None
    changes = [c for c in disclosure.get("changes") or [] if isinstance(c, Mapping)]
    return {"text": str(disclosure.get("banner", "")), "shipped": bool(disclosure.get("shipped")),
            "looser": int(disclosure.get("looser") or 0), "sha256": str(disclosure.get("sha256", "")),
            "changes": [{"gate": str(c.get("gate")), "shipped": format_number(c.get("shipped")),
                         "used": format_number(c.get("used")),
                         "direction": str(c.get("direction"))} for c in changes]}


#: bytes of full-size pictures a page inlines (failing devices first); past it, thumbnails
FULL_PICTURE_BYTES = 1_500_000

#: the colour (CSS class) of each session verdict: only PASS is green
SESSION_CSS = {"PASS": "pass", "INCONCLUSIVE": "inconclusive"}


def session_view(session: Any) -> dict[str, Any] | None:
    """The session verdict for the banner (None for a report written without one): the
    word, its colour, the headline and reason, and every device not judged or not passed
    with its reason."""
    if not isinstance(session, Mapping) or "verdict" not in session:
        return None
    word = str(session["verdict"])
    unjudged = [{"id": str(d.get("device", "?")), "state": str(d.get("state", "?")),
                 "reasons": [str(r) for r in d.get("reasons") or []]}
                for d in session.get("devices") or []
                if isinstance(d, Mapping) and d.get("state") in ("error", "not run")]
    return {"word": word, "css": SESSION_CSS.get(word, "fail"),
            "headline": str(session.get("headline", word)),
            "reason": str(session.get("reason", "")), "unjudged": unjudged,
            "left_out": [str(x) for x in session.get("left_out") or []],
            "accepted": [str(x) for x in session.get("accepted_inconclusive") or []]}


def report_view(doc: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """Everything ``report.html.j2`` renders, from the ``report.json`` document."""
    meta = doc.get("meta") or {}
    sections = doc.get("sections") or {}
    likely = sections.get("likely_causes") or {}
    causes = likely.get("devices") or {} if isinstance(likely, Mapping) else {}
    devices = []
    budget = FULL_PICTURE_BYTES
    # failing devices first: their pictures are inlined in full while the budget lasts;
    # a passing device's, and any beyond the budget, are thumbnails linking the file
    records = sorted((doc.get("devices") or {}).items(),
                     key=lambda kv: _SEV[device_verdict(kv[1])])
    for k, rec in records:
        full = device_verdict(rec) != "pass" and budget > 0
        view = device_view(str(k), rec, folder, causes, thumbnails=not full)
        budget -= sum(len(p["uri"] or "") for p in view["pictures"]) if full else 0
        view["_levels"] = rec.get("levels") or {}
        devices.append(view)
    vrank = {v: i for i, v in enumerate(variant_order(d["variant"] for d in devices))}
    drank = {t: i for i, t in enumerate(dtype_order(d["dtype"] for d in devices))}
    devices.sort(key=lambda d: (_SEV[d["verdict"]], vrank[d["variant"]], d["backend"],
                                drank[d["dtype"]], d["id"]))
    levels = ordered([lv["name"] for d in devices for lv in d["levels"]], LEVEL_ORDER)
    tally = {v: sum(d["verdict"] == v for d in devices) for v in _SEV}
    ap_rows = [r for r in (ap_row(d) for d in devices) if r is not None]
    slice_rows = [r for r in (slice_row(d) for d in devices) if r is not None]
    profile = meta.get("profile")
    others = [{"name": str(n), "markdown": str(s.get("markdown", ""))}
              for n, s in sections.items() if n not in ("likely_causes", "decomposition")
              and isinstance(s, Mapping) and s.get("markdown")]
    session = session_view(doc.get("session"))
    verdict = combine(d["verdict"] for d in devices) if devices else "none"
    return {
        "verdict": session["css"] if session else verdict, "session": session,
        "filters": [(key, sorted({str(d[key]) for d in devices}))
                    for key in ("verdict", "backend", "dtype", "variant")],
        "tally": tally, "devices": devices, "levels": levels, "matrix": _matrix(devices),
        "ap_rows": ap_rows,
        "ap_settings": ordered([c for r in ap_rows for c in r["cells"]], SETTINGS),
        "ap_images": sorted({str(r["images"]) for r in ap_rows}),
        "ap_intervals": _interval_label(doc.get("devices") or {}),
        "slice_rows": slice_rows,
        **_slice_header(ordered([c for r in slice_rows for c in r["cells"]], SLICE_NAMES)),
        "causes": [d for d in devices if d["causes"]],
        "decomposition": _decomposition(sections.get("decomposition")),
        "other_sections": others,
        "profile_name": str(profile.get("name", "?")) if isinstance(profile, Mapping) else "?",
        "gates_file": str(meta.get("gates", "?")), **_judged_set(doc.get("devices") or {}, meta),
        "gates_banner": _gates_banner(meta.get("gates_disclosure")),
        "written": str(meta.get("written", "")),
        "identity": [(k, v) for k, v in _flat({k: v for k, v in meta.items()
                                                if k not in ("versions",)})],
        "versions": _flat(meta.get("versions") or {}),
        "device_info": [(d["id"], d["anchor"], d["info"]) for d in devices if d["info"]],
    }
