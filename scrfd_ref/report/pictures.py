"""The pictures a conformance report shows per device: the PR curves of the device against
the reference and an overlay of both detection sets on the worst image, written as PNG.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from scrfd_ref.formats.files import atomic_write, write_bytes


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
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically (with the user's umask) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    p = Path(path)
    with atomic_write(p, "wb") as handle:
        fig.savefig(handle, format="png", dpi=dpi)
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
