"""The int8 conversion report: which nodes lose accuracy, what stayed float, what it costs.

:func:`report_markdown` renders the sidecar record a conversion writes beside an int8 model
(:func:`scrfd_ref.quantize.int8_build.write_int8`: settings, per-node sensitivity, the
mixed-precision search, the int8 MAC share, latencies) as ``report.md``;
``scrfd-ref quantize --report DIR`` writes it with the record as ``report.json``.
"""
from __future__ import annotations

from typing import Any, Mapping

#: sensitivity rows shown in the Markdown report (report.json has them all)
TOP_NODES = 15


def _fmt(v: Any, spec: str = ".2f") -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return format(v, spec)


def report_markdown(record: Mapping[str, Any], model: str = "") -> str:
    """``report.md`` for one int8 conversion record."""
    s = record.get("settings", {})
    method = s.get("calibrate_method", "?")
    if "percentile" in s:
        method += f" {s['percentile']}"
    out = [f"# int8 conversion report{f': {model}' if model else ''}", "",
           f"- calibration: {method}, {'per-channel' if s.get('per_channel') else 'per-tensor'}"
           f" weights ({s.get('weight_type')}), activations {s.get('activation_type')}, input "
           f"{'x'.join(str(v) for v in s.get('input_size', []))}",
           f"- int8 share of the MACs: {100 * record.get('int8_mac_share', 0):.1f}%",
           "- head outputs: float (the head convs compute in int8; their output is not "
           "re-quantized)"]
    search = record.get("search")
    if search:
        nodes = ", ".join(search["float_nodes"]) or "none"
        out += [f"- kept in float by the mixed-precision search: {nodes} (target agreement "
                f"{search['target']}, {'met' if search['met'] else 'NOT met'})"]
    elif record.get("search_skipped"):
        out += [f"- mixed-precision search skipped: {record['search_skipped']}"]
    if not search and s.get("float_nodes"):
        out += [f"- kept in float by the recipe: {', '.join(s['float_nodes'])}"]
    lat = record.get("latency_ms")
    if lat:
        out += [f"- latency (ONNX Runtime CPU, one image, median): fp32 {lat['fp32']:.2f} ms, "
                f"all-int8 {lat['all_int8']:.2f} ms, this model {lat['chosen']:.2f} ms "
                f"(float nodes cost {lat['chosen'] - lat['all_int8']:+.2f} ms)"]
    if search:
        out += ["", "## Mixed-precision search", "",
                "Agreement: AP of the int8 detections against the fp32 detections (score "
                ">= 0.3) on the calibration images; 1.0 reproduces fp32.", "",
                "| step | float nodes | agreement | int8 MACs |", "|---|---|---|---|"]
        for i, st in enumerate(search["steps"]):
            mark = " (chosen)" if i == search["chosen"] else ""
            out.append(f"| {i}{mark} | {', '.join(st['float_nodes']) or '-'} | "
                       f"{st['agreement']:.4f} | {100 * st['int8_mac_share']:.1f}% |")
    rows = record.get("sensitivity", [])
    out += ["", "## Sensitivity (per weighted node, ranked)", "",
            "SQNR of the node's output in the int8 model against fp32, over calibration "
            "images; `lost` = input SQNR - output SQNR, the error the node itself adds.", "",
            "| node | lost dB | out SQNR dB | weight SQNR dB | MACs | int8 |",
            "|---|---|---|---|---|---|"]
    for r in rows[:TOP_NODES]:
        out.append(f"| {r['name']} | {_fmt(r['lost_db'])} | {_fmt(r['out_sqnr_db'])} | "
                   f"{_fmt(r['weight_sqnr_db'])} | {100 * r['macs_share']:.2f}% | "
                   f"{'yes' if r['int8'] else 'no'} |")
    if len(rows) > TOP_NODES:
        out.append(f"\n({len(rows) - TOP_NODES} more nodes in report.json)")
    return "\n".join(out) + "\n"
