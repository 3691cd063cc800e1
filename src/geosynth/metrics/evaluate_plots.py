"""Figures of an evaluation report: per-class bars of every per-class metric, the per-class colour
error by channel, and side-by-side grids of real and synthetic images per class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from geosynth.metrics.pixels import PixelScan
from geosynth.viz import image_grid

#: labels of the per-class bar panels (summary keys)
PANEL_TITLES = {
    "fid": "FID (lower is better)",
    "kid": "KID (lower is better)",
    "density": "density (higher is closer)",
    "coverage": "coverage",
    "rarity": "rarity (lower is closer)",
    "color_error": "mean |colour error|",
    "latent_color_error": "mean |latent channel error|",
    "amplitude_w1": "amplitude W1",
    "amplitude_kl": "KL log-amplitude",
    "glcm_distance": "GLCM distance",
    "clip_score": "CLIP score (synthetic)",
}


def plot_per_class_bars(report: dict[str, Any], path: Path) -> Path | None:
    """One bar panel per per-class metric in the summary; None when there is no class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_class = report["summary"]["per_class"]
    classes = list(per_class)
    keys = [
        k for k in PANEL_TITLES if classes and any(per_class[c].get(k) is not None for c in classes)
    ]
    if not keys:
        return None
    cols = min(3, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    x = np.arange(len(classes))
    for ax, key in zip(axes.flat, keys, strict=False):
        vals = [per_class[c].get(key) for c in classes]
        ax.bar(x, [np.nan if v is None else v for v in vals], color="#4c72b0")
        ax.set_title(PANEL_TITLES[key], fontsize=10)
        ax.set_xticks(x, classes, rotation=45, ha="right", fontsize=8)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # long class names are not cut
    plt.close(fig)
    return path


def plot_color_errors(report: dict[str, Any], path: Path, section: str = "color") -> Path | None:
    """Grouped bars of the signed per-class error (synthetic - real) per channel."""
    sec = report.get(section)
    if not sec or not sec.get("per_class"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(sec["per_class"])
    channels = sec["channels"]
    errs = np.array([sec["per_class"][c]["error"] for c in classes])
    colours = {"R": "#d62728", "G": "#2ca02c", "B": "#1f77b4", "grey": "#7f7f7f"}
    width = 0.8 / len(channels)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(classes) + 2), 3.4))
    x = np.arange(len(classes))
    for j, ch in enumerate(channels):
        ax.bar(x + (j - (len(channels) - 1) / 2) * width, errs[:, j], width, label=ch,
               color=colours.get(ch))  # fmt: skip
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, classes, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("synthetic - real")
    ax.set_title(f"per-class {section.replace('_', ' ')} error ({sec['space'].split(',')[0]})")
    ax.legend(fontsize=8, ncols=min(4, len(channels)))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # long class names are not cut
    plt.close(fig)
    return path


def real_synthetic_grid(
    scans: dict[str, PixelScan], classes: list[str], path: Path, per_row: int = 8
) -> Path | None:
    """Two rows per class: real examples, then synthetic ones."""
    r, s = scans.get("real"), scans.get("synthetic")
    if r is None or s is None or not classes:
        return None
    rows, labels = [], []
    for name in classes:
        rows.append(r.examples.get(r.class_names.index(name), [])[:per_row])
        labels.append(f"{name} real")
        rows.append(s.examples.get(s.class_names.index(name), [])[:per_row])
        labels.append(f"{name} synth")
    image_grid(rows, labels, label_width=130).save(path)
    return path


def write_plots(report: dict[str, Any], scans: dict[str, PixelScan], out: Path) -> list[Path]:
    """Every figure that the report's contents allow, into directory ``out``; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    made = [
        plot_per_class_bars(report, out / "per-class.png"),
        plot_color_errors(report, out / "color-error.png"),
        plot_color_errors(report, out / "latent-color-error.png", "latent_color"),
        real_synthetic_grid(scans, report["classes"]["compared"], out / "real-vs-synthetic.png"),
    ]
    return [p for p in made if p is not None]
