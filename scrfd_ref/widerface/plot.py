"""PR-curve figure of a WIDER FACE evaluation: every setting in one PNG.

Uses matplotlib's object API with the Agg canvas directly (no pyplot, no global backend
switch), so it works headless and leaves the caller's matplotlib state alone.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from scrfd_ref.widerface.evaluate import WiderResult

_COLOURS = {"easy": "tab:green", "medium": "tab:orange", "hard": "tab:red", "all": "tab:blue"}


def curve_points(result: WiderResult, setting: str) -> tuple[np.ndarray, np.ndarray]:
    """``(recall, precision)`` of one setting at the thresholds with at least one proposal."""
    c = result.curves[setting]
    keep = c.proposals > 0
    return c.recall[keep], c.precision[keep]


def plot_pr_curves(result: WiderResult, path: str | Path, *, title: str | None = None,
                   dpi: int = 120) -> Path:
    """Draw precision over recall for every setting (AP in the legend) and save a PNG.

    Args:
        result: the evaluation to draw.
        path: output ``.png`` (parent folders are created).
        title: figure title (default: images / predictions summary).
        dpi: resolution.

    Returns:
        The written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from scrfd_ref.formats.files import atomic_write

    out = Path(path)
    fig = Figure(figsize=(6.4, 5.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for s in result.settings:
        rec, prec = curve_points(result, s)
        ax.plot(rec, prec, linewidth=2.0, color=_COLOURS.get(s),
                label=f"{s}: AP {result.ap[s]:.4f} ({result.faces[s]} faces)")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title(title or f"WIDER FACE val PR: {result.images} images, "
                          f"{result.predictions} predictions")
    fig.tight_layout()
    with atomic_write(out, "wb") as handle:
        fig.savefig(handle, format="png", dpi=dpi)
    return out
