"""A segmentation dataset as distributed (images/ + masks/, colour masks with unlabelled pixels)
is a map set for seed 004: ``finetune --condition`` trains on its masks and ``generate --maps``
follows them; ignored pixels are no class to the map encoder and stay ignored in the output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geosynth.data import load_dataset
from geosynth.diffusion.mapcond import one_hot
from geosynth.toy.paired import toy_legend, toy_pair

CLASSES = ["water", "forest", "desert"]


@pytest.fixture(scope="module")
def seg_pairs(tmp_path_factory) -> Path:
    """Six toy pairs in the layout segmentation datasets ship in: RGB masks in legend colours,
    a black unlabelled corner in each, black mapped to ignore in legend.json."""
    root = tmp_path_factory.mktemp("seg") / "pairs"
    legend = toy_legend(CLASSES)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(6):
        img, classes = toy_pair(i, CLASSES, 32, seed=0)
        rgb = np.array(legend.render(classes))
        rgb[:4, :4] = 0
        img.save(root / "images" / f"{i}.jpg")
        Image.fromarray(rgb).save(root / "masks" / f"{i}.png")
    (root / "legend.json").write_text(json.dumps({**legend.to_dict(), "ignore": ["#000000"]}))
    return root


def test_ignored_pixels_are_no_class_to_the_map_encoder() -> None:
    hot = one_hot(torch.tensor([[[0, 2, -1, 255]]]), 3)
    assert hot[0, :, 0, 0].tolist() == [1, 0, 0] and hot[0, :, 0, 1].tolist() == [0, 0, 1]
    assert hot[0, :, 0, 2].sum() == 0 and hot[0, :, 0, 3].sum() == 0


def test_finetune_and_generate_from_a_segmentation_dataset(seg_pairs, toy_models, tmp_path, cli):
    sd = str(toy_models["sd"])
    config = json.loads((toy_models["sd"] / "unet" / "config.json").read_text())
    unet_config = tmp_path / "unet.json"
    unet_config.write_text(json.dumps({k: v for k, v in config.items() if not k.startswith("_")}))
    model = tmp_path / "model"
    r = cli("finetune", seg_pairs, "--model", sd, "--condition", "concat", "--init", "scratch",
            "--unet-config", unet_config, "--train-text-encoder", "frozen", "--max-steps", "1",
            "--batch-size", "2", "--out", model)  # fmt: skip
    assert r.code == 0, r.err
    card = json.loads((model / "geosynth.json").read_text())
    assert [c["name"] for c in card["map_condition"]["legend"]["classes"]] == CLASSES
    gen = tmp_path / "gen"
    r = cli("generate", "--model", sd, "--lora", model, "--maps", seg_pairs, "--per-map", "1",
            "--steps", "2", "--out", gen)  # fmt: skip
    assert r.code == 0, r.err
    from geosynth.data.paired import attach_maps

    synth = attach_maps(load_dataset(gen))
    assert len(synth) == 6
    source = load_dataset(seg_pairs)
    for i in range(len(synth)):
        # <landscape>/masks__<map>_<k>.png: the map's path, then the image's index
        src = Path(synth.samples[i].key).stem.split("__")[1].rsplit("_", 1)[0]
        want = source.map(source.keys.index(f"images/{src}.jpg"))
        assert np.array_equal(synth.map(i), want)  # same size: the masks as they were
        assert (synth.map(i)[:4, :4] == -1).all()
