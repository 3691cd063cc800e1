"""The dataset card's features: scalar columns typed from their values, nested or always-null
ones left to metadata.jsonl, and explicit types where a run's values cannot tell."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from geosynth.data.card import card_features, write_dataset_card


def test_features_from_values_and_explicit_types() -> None:
    rows = [
        {"file_name": "a/0.png", "label": 0, "n": 1, "x": 1, "s": "u", "nested": {"k": 1}},
        {"file_name": "b/0.png", "label": 1, "n": None, "x": 2.5, "s": "v", "nested": {}},
    ]
    rows[0]["always_null"] = None
    got = {f["name"]: f["dtype"] for f in card_features(["a", "b"], rows)}
    assert got == {
        "image": "image",
        "label": {"class_label": {"names": {"0": "a", "1": "b"}}},
        "n": "int64",
        "x": "float64",  # ints and floats together are floats
        "s": "string",
    }
    typed = card_features(["a", "b"], rows, {"always_null": "float64", "s": None})
    assert {f["name"]: f["dtype"] for f in typed}["always_null"] == "float64"
    assert "s" not in {f["name"] for f in typed}


def test_hf_datasets_reads_the_card(tmp_path: Path) -> None:
    import datasets

    root = tmp_path / "data"
    rows = []
    for label, name in enumerate(["river", "forest"]):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((4, 4, 3), 40 * i, np.uint8)).save(root / name / f"{i}.png")
            rows.append(
                {"file_name": f"{name}/{i}.png", "label": label, "class_name": name, "gain": None}
            )
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_dataset_card(root, ["river", "forest"], rows, "t", {"gain": "float64"})
    ds = datasets.load_dataset(str(root), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.features["label"].names == ["river", "forest"]
    assert ds["label"] == [0, 0, 1, 1] and ds["gain"] == [None] * 4
    assert ds.features["gain"] == datasets.Value("float64")
