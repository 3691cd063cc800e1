"""Pixel confusion-matrix figure (PNG) for segmentation reports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def confusion_png(
    cm: np.ndarray | Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str
) -> Path:
    """Rows true, columns predicted; cells coloured and labelled by the row-normalised share of
    the true class's pixels (pixel counts are too large to read), rows annotated with their
    pixel count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(cm, dtype=np.int64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    size = max(4.0, 0.6 * k + 2.5)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    labels = [f"{n} ({int(c):,} px)" for n, c in zip(class_names, counts.sum(axis=1), strict=True)]
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (labelled pixels)")
    ax.set_title(title, fontsize=9)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{100 * rates[i, j]:.0f}%", ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
