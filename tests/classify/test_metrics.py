"""Metrics from the confusion matrix against a direct count over the predictions."""

from __future__ import annotations

import numpy as np
import pytest

from geosynth.classify.metrics import (
    aggregate_seeds,
    classification_metrics,
    confusion_matrix,
    mean_std,
)


def _direct(labels: list[int], preds: list[int], k: int) -> dict[str, list[float]]:
    """Precision, recall, F1 per class by counting prediction pairs (no matrix)."""
    out: dict[str, list[float]] = {"p": [], "r": [], "f": []}
    for c in range(k):
        tp = sum(1 for y, p in zip(labels, preds, strict=True) if y == c and p == c)
        fp = sum(1 for y, p in zip(labels, preds, strict=True) if y != c and p == c)
        fn = sum(1 for y, p in zip(labels, preds, strict=True) if y == c and p != c)
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        out["p"].append(p)
        out["r"].append(r)
        out["f"].append(2 * p * r / (p + r) if p + r else 0.0)
    return out


def test_metrics_match_direct_counts() -> None:
    rng = np.random.default_rng(0)
    k = 4
    labels = rng.integers(0, k, 300).tolist()
    # Mostly right, some noise, and class 3 never predicted (precision 0 by convention).
    preds = [y if rng.random() < 0.7 else int(rng.integers(0, 3)) for y in labels]
    preds = [2 if p == 3 else p for p in preds]
    names = ["a", "b", "c", "d"]
    m = classification_metrics(confusion_matrix(labels, preds, k), names)
    ref = _direct(labels, preds, k)
    assert m["top1"] == pytest.approx(np.mean(np.array(labels) == np.array(preds)))
    for i, n in enumerate(names):
        assert m["per_class"][n]["precision"] == pytest.approx(ref["p"][i])
        assert m["per_class"][n]["recall"] == pytest.approx(ref["r"][i])
        assert m["per_class"][n]["f1"] == pytest.approx(ref["f"][i])
        assert m["per_class"][n]["support"] == labels.count(i)
    assert m["per_class"]["d"]["precision"] == 0.0
    assert m["macro_f1"] == pytest.approx(np.mean(ref["f"]))
    assert m["n"] == 300


def test_confusion_rows_are_true_classes() -> None:
    cm = confusion_matrix([0, 0, 1, 2], [0, 1, 1, 1], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_seed_aggregation_uses_sample_std() -> None:
    assert mean_std([0.8, 0.9, 1.0]) == pytest.approx({"mean": 0.9, "std": 0.1, "n": 3})
    assert mean_std([0.5])["std"] == 0.0
    names = ["a", "b"]
    runs = [
        classification_metrics(confusion_matrix([0, 1, 1], p, 2), names)
        for p in ([0, 1, 1], [0, 0, 1])
    ]
    agg = aggregate_seeds(runs, names)
    assert agg["top1"]["mean"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert agg["top1"]["std"] == pytest.approx(np.std([1.0, 2 / 3], ddof=1))
    assert agg["per_class"]["b"]["recall"]["mean"] == pytest.approx(0.75)
