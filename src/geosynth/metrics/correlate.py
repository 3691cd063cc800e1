"""Correlation of a rarity metric with accuracy gaps across datasets (seed 000, Figures 1a and 5)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from geosynth.artifacts import atomic_path
from geosynth.errors import GeosynthError


def _read_gaps(path: Path) -> dict[str, float]:
    if not path.is_file():
        raise GeosynthError(
            f"gaps_csv={str(path)!r}: no such file (expected a CSV with dataset,gap)"
        )
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"dataset", "gap"} <= set(rows[0]):
        raise GeosynthError(
            f"gaps_csv={str(path)!r}: expected a header with columns 'dataset' and 'gap'"
        )
    try:
        return {r["dataset"].strip(): float(r["gap"]) for r in rows}
    except ValueError as exc:
        raise GeosynthError(f"gaps_csv={str(path)!r}: non-numeric gap ({exc})") from None


def correlate_reports(
    reports: list[Path], gaps_csv: Path, *, metric: str = "rarity_mean", plot: Path | None = None
) -> dict[str, Any]:
    """Pearson R and two-sided p-value of ``metric`` against the gaps, and an optional scatter."""
    from scipy.stats import pearsonr

    gaps = _read_gaps(gaps_csv)
    points = []
    for path in reports:
        try:
            report = json.loads(Path(path).read_text())
            value = report["metrics"][metric]
            x = math.nan if value is None else float(value)  # None: undefined for that set
        except FileNotFoundError:
            raise GeosynthError(f"{path}: no such report") from None
        except (ValueError, KeyError, TypeError):
            raise GeosynthError(f"{path}: not a rarity report with metric '{metric}'") from None
        name = Path(path).stem
        if name not in gaps:
            raise GeosynthError(
                f"gaps_csv={str(gaps_csv)!r}: no row for dataset '{name}' (from {path})"
            )
        if not math.isnan(x):
            points.append({"dataset": name, "x": x, "gap": gaps[name]})
    if len(points) < 3:
        raise GeosynthError(f"need at least 3 datasets with a finite {metric}, got {len(points)}")
    r, p = pearsonr([q["x"] for q in points], [q["gap"] for q in points])
    result = {
        "metric": metric,
        "n": len(points),
        "pearson_r": float(r),
        "p_value": float(p),
        "points": points,
    }
    if plot is not None:
        _scatter(points, metric, float(r), float(p), plot)
        result["plot"] = str(plot)
    return result


def _scatter(points: list[dict[str, Any]], metric: str, r: float, p: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    xs = np.array([q["x"] for q in points])
    ys = np.array([q["gap"] for q in points])
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    ax.scatter(xs, ys)
    for q in points:
        ax.annotate(
            q["dataset"], (q["x"], q["gap"]), textcoords="offset points", xytext=(4, 3), fontsize=8
        )
    slope, intercept = np.polyfit(xs, ys, 1)
    grid = np.linspace(xs.min(), xs.max(), 50)
    ax.plot(grid, slope * grid + intercept, linestyle="--")
    ax.set_xlabel(metric.replace("_", " "))
    ax.set_ylabel("accuracy gap (real - synthetic)")
    ax.set_title(f"Pearson R = {r:.2f}, p = {p:.2g}")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")  # annotations at the edge stay whole
    plt.close(fig)
