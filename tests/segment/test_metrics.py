"""Segmentation metrics against torchmetrics on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geosynth.segment.metrics import aggregate_seeds, confusion, segmentation_metrics


def test_miou_and_per_class_iou_agree_with_torchmetrics() -> None:
    from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

    k = 5
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (4, 24, 24), generator=g)  # classes 3 and 4 never true ...
    pred = torch.where(torch.rand(4, 24, 24, generator=g) < 0.7, target,
                       torch.randint(0, 4, (4, 24, 24), generator=g))  # fmt: skip
    target[:, :3] = -1  # ... and unlabelled rows; class 4 is never predicted either
    cm = confusion(pred, target, k)
    assert cm.sum() == int((target >= 0).sum())
    m = segmentation_metrics(cm, list("abcde"))
    miou = MulticlassJaccardIndex(num_classes=k, ignore_index=-1, average="macro")(pred, target)
    assert m["miou"] == pytest.approx(float(miou), abs=1e-6)
    per = MulticlassJaccardIndex(num_classes=k, ignore_index=-1, average="none")(pred, target)
    for c, name in enumerate("abcd"):
        assert m["per_class"][name]["iou"] == pytest.approx(float(per[c]), abs=1e-6)
    assert m["per_class"]["e"]["iou"] is None and m["classes_scored"] == 4
    acc = MulticlassAccuracy(num_classes=k, ignore_index=-1, average="micro")(pred, target)
    assert m["pixel_accuracy"] == pytest.approx(float(acc), abs=1e-6)


def test_seed_aggregation_skips_classes_a_seed_could_not_score() -> None:
    names = ["a", "b"]
    one = segmentation_metrics(np.array([[5, 1], [0, 0]]), names)  # b: predicted once, never true
    two = segmentation_metrics(np.array([[6, 0], [0, 0]]), names)  # b absent: no IoU
    agg = aggregate_seeds([one, two], names)
    assert agg["per_class"]["b"]["iou"] == {"mean": 0.0, "std": 0.0, "n": 1}
    assert agg["miou"]["n"] == 2 and agg["miou"]["mean"] == pytest.approx((5 / 6 / 2 + 1) / 2)
