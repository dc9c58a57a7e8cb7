"""The slice level in reports: a table of the per-slice AP and recall deltas with their
intervals, and a forest plot of the deltas (:mod:`scrfd_ref.widerface.slice_eval`).

Both read the JSON form (:meth:`~scrfd_ref.widerface.slice_eval.PairedSlices.to_dict`), so
report.json replays them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from scrfd_ref.report.pictures import save_figure


def _iv(iv: Sequence | None, digits: int = 4) -> str:
    if not iv or iv[0] is None or iv[1] is None:
        return "n/a"
    return f"[{iv[0]:+.{digits}f}, {iv[1]:+.{digits}f}]"


def _num(x: Any, fmt: str = "+.4f") -> str:
    return "n/a" if x is None else format(x, fmt)


def slice_table(doc: Mapping[str, Any], verdicts: Mapping[str, str] | None = None) -> list[str]:
    """Markdown rows: per slice the faces, both APs, the AP delta with its interval and
    corrected interval, both recalls and the recall delta likewise, and the verdict.

    Args:
        doc: ``PairedSlices.to_dict()``.
        verdicts: slice name -> verdict word (optional column).
    """
    pct = f"{100 * doc['confidence']:g}%"
    fam = doc["correction"]
    head = (f"| slice | faces | AP ref | AP dev | AP delta | {pct} | corrected | "
            f"recall@{doc['operating_score']:g} ref | dev | recall delta | {pct} | corrected |")
    rows = [head + (" verdict |" if verdicts else ""),
            "|" + "---|" * (12 + bool(verdicts))]
    for name, c in doc["slices"].items():
        cells = [f"`{name}`", str(c["faces"]), _num(c["ap_a"], ".4f"), _num(c["ap_b"], ".4f"),
                 _num(c["ap_delta"]), _iv(c["ap_interval"]), _iv(c["ap_corrected"]),
                 _num(c["recall_a"], ".4f"), _num(c["recall_b"], ".4f"),
                 _num(c["recall_delta"]), _iv(c["recall_interval"]),
                 _iv(c["recall_corrected"])]
        if verdicts:
            cells.append(verdicts.get(name, ""))
        rows.append("| " + " | ".join(cells) + " |")
    rows += ["", f"Deltas are device - reference over {doc['images']} images (paired image "
                 f"bootstrap, {doc['resamples']} resamples, seed {doc['seed']}); 'corrected': "
                 f"Bonferroni over the {fam['family']} judged quantities (family confidence "
                 f"{100 * fam['family_confidence']:.3g}%); a slice's faces are those 'hard' "
                 "counts with that label, every other face ignored."]
    return rows


def slice_verdicts(level: Mapping[str, Any]) -> dict[str, str]:
    """Slice name -> its verdict (the worst of its two gate rows) from a recorded slice
    level (``report.json``'s ``levels.slices``)."""
    order = {"fail": 0, "inconclusive": 1, "pass": 2}
    out: dict[str, str] = {}
    for g in level.get("gates") or []:
        words = str(g.get("subject", "")).split()
        if len(words) < 2 or words[0] != "slice":
            continue
        v = g.get("verdict") or ("pass" if g.get("passed") else "fail")
        if words[1] not in out or order.get(v, 0) < order.get(out[words[1]], 0):
            out[words[1]] = v
    return out


def markdown_section(devices: Mapping[str, Any]) -> list[str]:
    """The report.md section: a device x slice matrix of the recall and AP deltas with
    their verdicts, then the full table of every device whose slice level did not pass."""
    recs = [(k, rec["levels"]["slices"]) for k, rec in devices.items()
            if "slices" in (rec.get("levels") or {})]
    if not recs:
        return []
    docs = [(k, lv, (lv.get("metrics") or {}).get("slices")) for k, lv in recs]
    names = next((list(d["slices"]) for _, _, d in docs if d), [])
    mark = {"pass": "", "fail": " **FAIL**", "inconclusive": " *inc.*"}
    lines = ["", "## WIDER FACE per face attribute (device vs fp32 reference)", "",
             "Per slice (a value of a WIDER FACE face label, or a scale of the WIDER paper: "
             "the faces 'hard' counts with it, every other face ignored): recall delta at the "
             "operating point / AP delta, device - reference. A slice passes when the 95% "
             "interval of each drop is inside its limit, fails only when the "
             "Bonferroni-corrected interval is beyond it.", ""]
    if names:
        lines += ["| device | " + " | ".join(f"`{n}`" for n in names) + " |",
                  "|---|" + "---|" * len(names)]
        for k, lv, d in docs:
            if not d:
                lines.append(f"| {k} | " + " | ".join("n/a" for _ in names) + " |")
                continue
            v = slice_verdicts(lv)
            cells = [f"{_num(d['slices'][n]['recall_delta'], '+.3f')} / "
                     f"{_num(d['slices'][n]['ap_delta'], '+.3f')}{mark.get(v.get(n, ''), '')}"
                     for n in names]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
    for k, lv, d in docs:
        if lv.get("verdict") == "pass":
            continue
        lines += ["", f"### `{k}`: slices {lv.get('verdict', '?').upper()}", ""]
        lines += slice_table(d, slice_verdicts(lv)) if d else \
            [str((lv.get("metrics") or {}).get("missing") or "no slice measured")]
    return lines


def plot_forest(doc: Mapping[str, Any], path: str | Path, title: str,
                limits: Mapping[str, float] | None = None) -> Path:
    """Forest plot: per slice the AP delta and the recall delta (device - reference) with
    the plain interval (thick) and the corrected one (thin), the gates' limits dashed.

    Args:
        doc: ``PairedSlices.to_dict()``.
        path: PNG to write.
        title: figure title.
        limits: ``{"ap": limit, "recall": limit}`` drops allowed (drawn at ``-limit``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(doc["slices"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.32 * len(names) + 1.4), sharey=True)
    for ax, metric, label in ((axes[0], "ap", "AP delta"),
                              (axes[1], "recall", f"recall@{doc['operating_score']:g} delta")):
        for y, name in enumerate(names):
            c = doc["slices"][name]
            point = c[f"{metric}_delta"]
            if point is None:
                continue
            for key, width, alpha in ((f"{metric}_corrected", 1.0, 0.6),
                                      (f"{metric}_interval", 3.5, 1.0)):
                iv = c[key]
                if iv and iv[0] is not None and iv[1] is not None:
                    ax.plot(iv, [y, y], color="tab:blue", lw=width, alpha=alpha,
                            solid_capstyle="butt")
            ax.plot([point], [y], "o", color="black", ms=4)
        ax.axvline(0.0, color="grey", lw=0.8)
        if limits and limits.get(metric) is not None:
            ax.axvline(-limits[metric], color="tab:red", ls="--", lw=1,
                       label=f"limit -{limits[metric]:g}")
            ax.legend(fontsize=7, loc="lower left")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(range(len(names)))
    axes[0].set_yticklabels([f"{n} ({doc['slices'][n]['faces']})" for n in names], fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


__all__ = ["markdown_section", "plot_forest", "slice_table", "slice_verdicts"]
