"""``report.html`` of the int8 commands, in the conformance report's style (same base
template, same escaping and Content-Security-Policy):

- :func:`render_int8_ap_html`: ``scrfd-ref int8-ap --out DIR``, from its ``table.json`` rows
  (AP and ratio to fp32 per recipe, int8 MAC share, nodes kept in float);
- :func:`render_quantize_html`: ``scrfd-ref quantize --report DIR``, from its
  ``report.json`` conversion record (settings, the mixed-precision search, the sensitivity
  of every weighted node).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from scrfd_ref.report.format import format_number
from scrfd_ref.report.html import render_template

SETTINGS = ("easy", "medium", "hard")


def _num(v: Any, spec: str) -> str:
    return "\u2013" if not isinstance(v, (int, float)) or isinstance(v, bool) else format(v, spec)


def _interval(iv: Any) -> str:
    if not isinstance(iv, (list, tuple)) or len(iv) != 2 or None in iv:
        return ""
    return f"[{format_number(iv[0], 'ratio')}, {format_number(iv[1], 'ratio')}]"


def int8_ap_view(rows: Sequence[Mapping[str, Any]],
                 differences: Sequence[Mapping[str, Any]] = (),
                 bootstrap: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The int8-ap table for the template: per model, its recipes with AP and ratio per
    setting (with the ratio's interval when measured); the recipe keeping the most AP of
    each setting marked; every pair of recipes' difference with its interval, marked
    significant when the interval excludes 0."""
    models: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        ap, ratio = r.get("ap") or {}, r.get("ratio") or {}
        share = r.get("int8_mac_share")
        models.setdefault(str(r.get("model", "?")), []).append({
            "recipe": str(r.get("recipe", "?")),
            "cells": {s: {"ap": format_number(ap.get(s), "ratio"),
                          "ratio": format_number(ratio.get(s), "ratio"),
                          "interval": _interval((r.get("ratio_interval") or {}).get(s))
                          if r.get("recipe") != "fp32" else "",
                          "raw": ratio.get(s) if r.get("recipe") != "fp32" else None,
                          "best": False} for s in SETTINGS},
            "share": "\u2013" if share is None else f"{100 * share:.1f}%",
            "float_nodes": [str(n) for n in r.get("float_nodes") or []],
            "images": r.get("images", ""), "convert_s": _num(r.get("convert_s"), ".1f")})
    for recipes in models.values():
        for s in SETTINGS:
            vals = [c["cells"][s]["raw"] for c in recipes
                    if isinstance(c["cells"][s]["raw"], (int, float))]
            for c in recipes:
                c["cells"][s]["best"] = bool(vals) and c["cells"][s]["raw"] == max(vals)
    diffs = [{"model": str(d.get("model", "?")), "a": str(d.get("a", "?")),
              "b": str(d.get("b", "?")),
              "cells": {s: {"delta": format_number((d.get("delta") or {}).get(s), "ratio"),
                            "interval": _interval((d.get("interval") or {}).get(s)),
                            "significant": bool((d.get("significant") or {}).get(s))}
                        for s in SETTINGS}} for d in differences]
    return {"models": [{"name": m, "recipes": rs} for m, rs in models.items()],
            "settings": SETTINGS, "differences": diffs, "bootstrap": dict(bootstrap or {}),
            "images": next((r.get("images") for r in rows if r.get("images")), "?")}


def render_int8_ap_html(table: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    """``report.html`` of ``scrfd-ref int8-ap`` from its ``table.json`` (``rows``,
    ``differences``, ``bootstrap``; a bare list of rows is read too)."""
    if isinstance(table, Mapping):
        view = int8_ap_view(table.get("rows") or [], table.get("differences") or [],
                            table.get("bootstrap"))
    else:
        view = int8_ap_view(table)
    return render_template("int8_ap.html.j2", **view)


def quantize_view(record: Mapping[str, Any], model: str = "") -> dict[str, Any]:
    """The conversion record for the template."""
    s = record.get("settings") or {}
    method = str(s.get("calibrate_method", "?"))
    if "percentile" in s:
        method += f" {s['percentile']}"
    search = record.get("search") or None
    lat = record.get("latency_ms") or None
    summary = [
        ("calibration", f"{method}, {'per-channel' if s.get('per_channel') else 'per-tensor'} "
                        f"weights ({s.get('weight_type')}), activations "
                        f"{s.get('activation_type')}"),
        ("input", "x".join(str(v) for v in s.get("input_size") or []) or "\u2013"),
        ("int8 share of the MACs", f"{100 * (record.get('int8_mac_share') or 0):.1f}%"),
        ("head outputs", "float (the head convs compute in int8; their output is not "
                         "re-quantized)")]
    if search:
        summary.append(("kept in float (search)",
                        f"{', '.join(search.get('float_nodes') or []) or 'none'} (target "
                        f"agreement {search.get('target')}, "
                        f"{'met' if search.get('met') else 'NOT met'})"))
    elif record.get("search_skipped"):
        summary.append(("mixed-precision search", f"skipped: {record['search_skipped']}"))
    if not search and s.get("float_nodes"):
        summary.append(("kept in float (recipe)", ", ".join(map(str, s["float_nodes"]))))
    if lat:
        summary.append(("latency (ORT CPU, median)",
                        f"fp32 {_num(lat.get('fp32'), '.2f')} ms, all-int8 "
                        f"{_num(lat.get('all_int8'), '.2f')} ms, this model "
                        f"{_num(lat.get('chosen'), '.2f')} ms"))
    steps = [{"i": i, "chosen": search and i == search.get("chosen"),
              "nodes": ", ".join(st.get("float_nodes") or []) or "\u2013",
              "agreement": _num(st.get("agreement"), ".4f"),
              "share": f"{100 * (st.get('int8_mac_share') or 0):.1f}%"}
             for i, st in enumerate((search or {}).get("steps") or [])]
    sens = record.get("sensitivity") or []
    top = max((r.get("lost_db") or 0 for r in sens if isinstance(r.get("lost_db"), (int, float))),
              default=0) or 1.0
    nodes = [{"name": str(r.get("name", "?")), "lost": _num(r.get("lost_db"), ".2f"),
              "bar": max(0.0, min(1.0, (r.get("lost_db") or 0) / top))
              if isinstance(r.get("lost_db"), (int, float)) else 0.0,
              "out": _num(r.get("out_sqnr_db"), ".2f"),
              "weight": _num(r.get("weight_sqnr_db"), ".2f"),
              "macs": f"{100 * (r.get('macs_share') or 0):.2f}%", "int8": bool(r.get("int8"))}
             for r in sens]
    return {"model": model, "summary": summary, "steps": steps, "nodes": nodes}


def render_quantize_html(record: Mapping[str, Any], model: str = "") -> str:
    """``report.html`` of ``scrfd-ref quantize --report`` from its conversion record."""
    return render_template("quantize.html.j2", **quantize_view(record, model))
