from pathlib import Path

import numpy as np
import pytest

from geosynth.data import load_dataset, open_dataset
from geosynth.errors import GeosynthError
from geosynth.toy import toy_hf_dataset, toy_image


def test_saved_dataset_round_trip(tmp_path: Path) -> None:
    ds = toy_hf_dataset(per_class=3, classes=["forest", "water"])
    ds.save_to_disk(str(tmp_path / "hf"))
    back = open_dataset(tmp_path / "hf")
    assert back.kind == "hf"
    assert back.class_names == ["forest", "water"]
    assert back.labels == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(np.asarray(back.image(4)), np.asarray(toy_image("water", 1)))


def test_dataset_dict_needs_a_split(tmp_path: Path) -> None:
    import datasets

    dd = datasets.DatasetDict(
        train=toy_hf_dataset(per_class=2, classes=2), test=toy_hf_dataset(per_class=1, classes=2)
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(GeosynthError, match="splits train, test; choose one with `split`"):
        open_dataset(tmp_path / "dd")
    assert len(load_dataset(tmp_path / "dd", split="test")) == 2
    assert load_dataset(tmp_path / "dd", split="train", shots=1, seed=0).counts() == {
        "water": 1,
        "forest": 1,
    }


def test_hub_id_offline_is_a_clear_error() -> None:
    with pytest.raises(GeosynthError, match=r"dataset 'someone/eurosat'.*hub"):
        open_dataset("someone/eurosat")
