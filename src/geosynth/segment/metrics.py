"""Segmentation metrics from a pixel confusion matrix: IoU per class, mIoU, pixel accuracy and
mean class accuracy; mean and spread over seeds.

Ignored pixels (mask value -1) never enter the matrix. A class with no pixel in the ground
truth and none predicted has no IoU (``None``) and is left out of the mean, as torchmetrics'
``MulticlassJaccardIndex(average="macro")`` leaves it out (checked against it in the tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from geosynth.classify.metrics import mean_std


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> np.ndarray:
    """K x K pixel counts (row: true class, column: predicted); target -1 is ignored."""
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    keep = (t >= 0) & (t < num_classes)
    idx = t[keep] * num_classes + p[keep]
    counts = torch.bincount(idx.cpu(), minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).numpy().astype(np.int64)


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def segmentation_metrics(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """mIoU, pixel accuracy, mean accuracy and per-class IoU / precision / recall / pixels."""
    cm = np.asarray(cm, np.int64)
    tp = np.diag(cm).astype(np.float64)
    truth, predicted = cm.sum(1), cm.sum(0)
    union = truth + predicted - tp
    per_class = {
        name: {
            "iou": _ratio(tp[k], union[k]),
            "precision": _ratio(tp[k], predicted[k]),
            "recall": _ratio(tp[k], truth[k]),
            "pixels": int(truth[k]),
        }
        for k, name in enumerate(class_names)
    }
    ious = [c["iou"] for c in per_class.values() if c["iou"] is not None]
    recalls = [c["recall"] for c in per_class.values() if c["recall"] is not None]
    n = int(cm.sum())
    return {
        "pixels": n,
        "miou": float(np.mean(ious)) if ious else None,
        "pixel_accuracy": _ratio(tp.sum(), n),
        "mean_accuracy": float(np.mean(recalls)) if recalls else None,
        "classes_scored": len(ious),
        "per_class": per_class,
        "confusion": cm.tolist(),
    }


def _stat(values: Sequence[float | None]) -> dict[str, Any]:
    present = [v for v in values if v is not None]
    return mean_std(present) if present else {"mean": None, "std": None, "n": 0}


def aggregate_seeds(
    results: Sequence[dict[str, Any]], class_names: Sequence[str]
) -> dict[str, Any]:
    """Mean and sample std (ddof 1) over seeds of mIoU, pixel and mean accuracy and each class's
    IoU (seeds where a class has no IoU do not count for it: ``n`` says how many did)."""
    out: dict[str, Any] = {
        key: _stat([r[key] for r in results]) for key in ("miou", "pixel_accuracy", "mean_accuracy")
    }
    out["per_class"] = {
        name: {key: _stat([r["per_class"][name][key] for r in results]) for key in ("iou",)}
        for name in class_names
    }
    return out
