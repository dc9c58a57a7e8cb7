"""What ``localize judge`` leaves for a reader: the SNR-by-stage plot and ``report.html``.

The plot draws, per stage in run order, the band honest devices of the dtype reach (the
shaded region above each stage's lower bound), the device's segment SNR and worst channel
SNR (the stage's own error) and, when the device returned prefixes, the prefix SNR (how the
damage grows from the image to that stage). The named stage is marked.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from scrfd_ref.report.html import render_template
from scrfd_ref.report.inline import inline_picture
from scrfd_ref.report.pictures import save_figure

PLOT_NAME = "localize.png"


def plot_localize(result: Mapping[str, Any], path: str | Path) -> Path:
    """SNR by stage (``result``: :meth:`~scrfd_ref.diagnose.localize.LocalizeResult.
    to_dict`) as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    stages = result["stages"]
    x = np.arange(len(stages))
    exact = 190.0   # a bit-exact output (200 dB) is drawn at the top edge
    seg = [s["snr_db"] for s in stages]
    chan = [s["channel_snr_db"] for s in stages]
    band = [s["band"]["snr_db"] for s in stages]
    fig, ax = plt.subplots(figsize=(max(6.5, 0.6 * len(stages) + 2), 4.8))
    pre = [s.get("prefix_snr_db") for s in stages]
    shown = [v for v in [*seg, *chan, *band, *(p for p in pre if p is not None)] if abs(v) < exact]
    top = 10.0 * np.ceil((max(shown, default=100.0) + 8.0) / 10.0)
    seg, chan = [min(v, top) for v in seg], [min(v, top) for v in chan]
    pre = [None if v is None else min(v, top) for v in pre]
    ax.fill_between(x, band, top, step="mid", color="tab:green", alpha=0.12,
                    label=f"honest {result['dtype']} band (segment SNR)")
    ax.step(x, band, where="mid", color="tab:green", lw=1)
    ax.step(x, [s["band"]["channel_snr_db"] for s in stages], where="mid", color="tab:purple",
            lw=1, ls=":", label="honest band (worst channel)")
    ax.plot(x, seg, "o-", color="tab:blue", label="device: segment SNR (own error)")
    ax.plot(x, chan, "v", color="tab:purple", ms=5, label="device: worst channel SNR")
    if any(v is not None for v in pre):
        ax.plot(x, [np.nan if v is None else v for v in pre], "s--", color="tab:gray", ms=4,
                label="device: prefix SNR (image -> stage)")
    for i, s in enumerate(stages):
        if s["name"] == result.get("named_stage"):
            ax.axvline(i, color="tab:red", lw=1.5, alpha=0.7)
            ax.annotate("first stage outside its band", (i, top), xytext=(4, -12),
                        textcoords="offset points", color="tab:red", fontsize=8)
    ax.set_xticks(x, [s["name"] for s in stages], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("SNR vs fp32 golden (dB)")
    ax.set_ylim(min(-5.0, *(max(v, -60.0) - 5 for v in chan)), top + 1)
    ax.grid(alpha=0.3)
    ax.set_title(f"localize: {result['device']} ({result['dtype']}, {result['images']} images)",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=3,
              frameon=False)
    return save_figure(fig, path)


def render_localize_html(result: Mapping[str, Any], lines: list[str], folder: str | Path,
                         context: Mapping[str, Any]) -> str:
    """``report.html`` of a judged device: the verdict lines, the plot (inlined from
    ``folder``), every stage's scores against its band and where the inputs came from."""
    return render_template("localize.html.j2", result=result, lines=lines,
                           picture=inline_picture(folder, PLOT_NAME), context=context)


__all__ = ["PLOT_NAME", "plot_localize", "render_localize_html"]
