"""The loss log of a fine-tuning run: ``loss.csv`` (step, epoch, loss, lr) and ``loss.png``."""

from __future__ import annotations

import csv
from pathlib import Path


def write_loss(history: list[dict[str, float]], out: Path) -> None:
    """Write ``loss.csv`` and the loss curve ``loss.png`` (raw and smoothed) into ``out``."""
    with open(out / "loss.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["step", "epoch", "loss", "lr"])
        w.writeheader()
        w.writerows(history)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    losses = [h["loss"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, losses, lw=0.8, alpha=0.5, label="loss per step")
    k = max(1, len(losses) // 20)
    if k > 1:
        smooth = [
            sum(losses[max(0, i - k + 1) : i + 1]) / len(losses[max(0, i - k + 1) : i + 1])
            for i in range(len(losses))
        ]
        ax.plot(steps, smooth, lw=1.5, label=f"mean of {k} steps")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png")
    plt.close(fig)
