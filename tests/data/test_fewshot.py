"""Few-shot sampling on the real EuroSAT folder: stratified, reproducible, independent of order."""

import random
from pathlib import Path

import pytest

from geosynth.data import few_shot_indices, load_dataset
from geosynth.errors import GeosynthError


def _files(root: Path, split: str, shots: int, seed: int) -> list[str]:
    return load_dataset(root, split=split, shots=shots, seed=seed).keys


def test_same_seed_same_files_and_exactly_k_per_class(eurosat: Path) -> None:
    a = _files(eurosat, "pool", 16, seed=0)
    assert a == _files(eurosat, "pool", 16, seed=0)
    ds = load_dataset(eurosat, split="pool", shots=16, seed=0)
    assert set(ds.counts().values()) == {16} and len(ds.class_names) == 10
    assert a != _files(eurosat, "pool", 16, seed=1)


def test_smaller_k_is_a_subset_of_larger_k(eurosat: Path) -> None:
    assert set(_files(eurosat, "pool", 4, 7)) <= set(_files(eurosat, "pool", 16, 7))


def test_draw_does_not_depend_on_listing_order_or_other_classes(eurosat: Path) -> None:
    ds = load_dataset(eurosat, split="pool")
    order = list(range(len(ds)))
    random.Random(0).shuffle(order)
    shuffled = ds.subset(order)
    picked = sorted(
        shuffled.keys[i]
        for i in few_shot_indices(shuffled.labels, shuffled.keys, shuffled.class_names, 5, seed=3)
    )
    assert picked == sorted(load_dataset(eurosat, split="pool", shots=5, seed=3).keys)
    only_forest = load_dataset(eurosat, split="pool", classes=["Forest"], shots=5, seed=3).keys
    full = load_dataset(eurosat, split="pool", shots=5, seed=3).keys
    assert set(only_forest) == {k for k in full if k.startswith("Forest/")}


def test_shots_larger_than_a_class_names_the_class(eurosat: Path) -> None:
    with pytest.raises(GeosynthError, match=r"^shots=17: class 'AnnualCrop' has only 16 images"):
        load_dataset(eurosat, split="train", shots=17)
