"""Toy train / val / test splits for the classifier tests (different seeds: disjoint images)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geosynth.classify import Splits
from geosynth.data import load_dataset
from geosynth.toy import make_toy_clip, make_toy_dataset, make_toy_timm


@pytest.fixture(scope="session")
def toy_splits_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """5 toy classes: 12 training, 6 validation and 8 test images per class, 32 px."""
    root = tmp_path_factory.mktemp("clf-toy")
    return {
        "train": make_toy_dataset(root / "train", per_class=12, seed=1),
        "val": make_toy_dataset(root / "val", per_class=6, seed=2),
        "test": make_toy_dataset(root / "test", per_class=8, seed=3),
    }


@pytest.fixture
def toy_splits(toy_splits_dirs: dict[str, Path]) -> Splits:
    return Splits(*(load_dataset(toy_splits_dirs[k]) for k in ("train", "val", "test")))


@pytest.fixture(scope="session")
def clf_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny open_clip CLIP and timm EfficientNet of geosynth.toy (without the SD pipeline
    that the shared ``toy_models`` fixture also trains, which these tests do not need)."""
    root = tmp_path_factory.mktemp("clf-models")
    return {"clip": make_toy_clip(root / "clip"), "timm": make_toy_timm(root / "timm")}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these models are tiny, and on a shared 2-core machine a second
    OpenMP thread mostly waits for a busy core (10x slower steps under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
