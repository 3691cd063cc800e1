"""Colour fidelity: per-class channel statistics of synthetic versus real images.

A class's statistic is the mean over its images of each image's channel mean (and the std of
those per-image means across the class): the low-frequency colour that signal leakage distorts
and leak-aligned noise is meant to restore (seed 000). The same is done in the VAE latent space
the UNet sees (per-image pixel-averaged latents, as ``geosynth channel-means`` computes them), so
the report shows the quantity leak-aligned noise sets directly.

The per-class error is signed, ``synthetic - real``, per channel: +0.08 in R means synthetic
images of that class are redder by 8% of full scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def class_stats(
    per_image: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per class present in ``labels``: image count, mean and std (over images) of the per-image
    channel vectors (N x C)."""
    out: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(class_names):
        rows = per_image[labels == c]
        if len(rows):
            out[name] = {"n": len(rows), "mean": rows.mean(0), "std": rows.std(0)}
    return out


def compare_class_stats(
    real: dict[str, dict[str, Any]],
    synthetic: dict[str, dict[str, Any]],
    classes: Sequence[str],
    channels: Sequence[str],
) -> dict[str, Any]:
    """Per-class real and synthetic means and stds with the signed error (synthetic - real), and
    summaries: mean absolute error over classes and channels, and the worst class."""
    per_class: dict[str, Any] = {}
    abs_errors = []
    for name in classes:
        r, s = real[name], synthetic[name]
        err = s["mean"] - r["mean"]
        abs_errors.append(np.abs(err))
        per_class[name] = {
            "n_real": r["n"],
            "n_synthetic": s["n"],
            "real_mean": _r(r["mean"]),
            "synthetic_mean": _r(s["mean"]),
            "error": _r(err),
            "abs_error": float(np.abs(err).mean()),
            "real_std": _r(r["std"]),
            "synthetic_std": _r(s["std"]),
            "std_error": _r(s["std"] - r["std"]),
        }
    summary: dict[str, Any] = {"channels": list(channels)}
    if abs_errors:
        stacked = np.stack(abs_errors)
        summary["mean_abs_error"] = float(stacked.mean())
        summary["mean_abs_error_per_channel"] = _r(stacked.mean(0))
        worst = int(stacked.mean(1).argmax())
        summary["worst_class"] = list(classes)[worst]
    summary["per_class"] = per_class
    return summary


def _r(v: np.ndarray) -> list[float]:
    return [float(x) for x in np.ravel(v)]
