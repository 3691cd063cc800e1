"""Classification metrics from a confusion matrix: top-1, per-class precision, recall and F1
(seed 001 reports these for imbalanced ship classes), macro-F1; and mean / std over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(labels: Sequence[int], preds: Sequence[int], num_classes: int) -> np.ndarray:
    """K x K counts: row = true class, column = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(preds, np.int64)), 1)
    return cm


def _ratio(num: float, den: float) -> float:
    """num / den, 0 when den is 0 (a class never predicted has precision 0, as sklearn's
    ``zero_division=0``)."""
    return float(num / den) if den else 0.0


def classification_metrics(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """top-1, macro precision / recall / F1 and per-class P, R, F1 and support from ``cm``."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    per_class = {}
    for k, name in enumerate(class_names):
        p = _ratio(tp[k], predicted[k])
        r = _ratio(tp[k], support[k])
        f1 = _ratio(2 * p * r, p + r)
        per_class[name] = {
            "precision": p,
            "recall": r,
            "f1": f1,
            "support": int(support[k]),
        }
    n = int(cm.sum())
    return {
        "n": n,
        "top1": _ratio(tp.sum(), n),
        "macro_precision": float(np.mean([c["precision"] for c in per_class.values()])),
        "macro_recall": float(np.mean([c["recall"] for c in per_class.values()])),
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
        "per_class": per_class,
        "confusion": cm.tolist(),
    }


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single seed), as papers' "a +- b"."""
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()) if arr.size else math.nan, "std": std, "n": int(arr.size)}


def aggregate_seeds(
    results: Sequence[dict[str, Any]], class_names: Sequence[str]
) -> dict[str, Any]:
    """Mean and std over seeds of top-1, macro-F1 and each class's P / R / F1."""
    out: dict[str, Any] = {
        key: mean_std([r[key] for r in results])
        for key in ("top1", "macro_f1", "macro_precision", "macro_recall")
    }
    out["per_class"] = {
        name: {
            key: mean_std([r["per_class"][name][key] for r in results])
            for key in ("precision", "recall", "f1")
        }
        for name in class_names
    }
    return out
