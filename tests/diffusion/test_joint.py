"""SatSynth's joint image + mask generation: mask bits (encode/decode, invalid codes to ignore),
the widened UNet that starts as the base model, and ``finetune --joint-masks`` then ``generate``
on the toy pipeline writing a segmentation dataset with the palette."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geosynth.data import load_dataset
from geosynth.diffusion.joint import (
    bit_count,
    decode_bits,
    encode_bits,
    prepare_joint_unet,
    to_image_grid,
    to_latent_grid,
)
from geosynth.errors import GeosynthError
from geosynth.toy.paired import toy_legend, toy_pair

CLASSES = ["water", "forest", "desert"]


@pytest.mark.parametrize(("k", "bits"), [(1, 1), (2, 1), (3, 2), (4, 2), (6, 3), (8, 3), (9, 4)])
def test_bits_round_trip_every_class(k: int, bits: int) -> None:
    assert bit_count(k) == bits
    classes = torch.arange(k).view(1, 1, k)
    x = encode_bits(classes, k)
    assert x.shape == (1, bits, 1, k) and set(x.unique().tolist()) <= {-1.0, 1.0}
    back, invalid = decode_bits(x, k)
    assert torch.equal(back, classes) and invalid == 0
    # class 5 of 6 is 101, most significant bit first
    if k == 6:
        assert x[0, :, 0, 5].tolist() == [1.0, -1.0, 1.0]


def test_invalid_codes_become_ignore_and_are_counted() -> None:
    # K = 6 in 3 bits: codes 6 (110) and 7 (111) name no class
    cells = torch.tensor([[1, 1, -1], [1, 1, 1], [-1, 1, 0.5], [0.3, -0.2, 0.1]])  # 6 7 3 5
    back, invalid = decode_bits(cells.T.reshape(1, 3, 1, 4), 6)
    assert back.tolist() == [[[-1, -1, 3, 5]]] and invalid == 2
    # an ignored cell is written as the spare code (7 here), so it decodes to ignore
    enc = encode_bits(torch.tensor([[[-1, 2]]]), 6)
    assert decode_bits(enc, 6)[0].tolist() == [[[-1, 2]]]
    # with no spare code (K = 4) an ignored cell carries no bit
    assert encode_bits(torch.tensor([[[-1]]]), 4).abs().sum() == 0


def test_latent_grid_takes_each_cells_majority_and_repeats_back() -> None:
    classes = np.full((4, 4), 1)
    classes[:2, :2] = [[0, 0], [0, 2]]  # cell (0, 0): class 0 by 3 to 1
    classes[2:, 2:] = -1  # all ignored
    classes[:2, 2:] = [[-1, -1], [-1, 2]]  # ignored pixels do not vote
    grid = to_latent_grid(classes, 2, 3)
    assert grid.tolist() == [[0, 2], [1, -1]]
    assert to_image_grid(grid, 2).shape == (4, 4) and to_image_grid(grid, 2)[3, 3] == -1


def test_widened_unet_starts_as_the_base_model(toy_models) -> None:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(toy_models["sd"], subfolder="unet").eval()
    x, t, c = torch.randn(2, 4, 16, 16), torch.tensor([10, 500]), torch.randn(2, 77, 32)
    with torch.no_grad():
        before = unet(x, t, c).sample
        assert prepare_joint_unet(unet, 4, 6) == 3
        after = unet(torch.cat([x, torch.randn(2, 3, 16, 16)], 1), t, c).sample
    assert unet.config.in_channels == 7 and unet.config.out_channels == 7
    assert torch.allclose(after[:, :4], before, atol=1e-5)
    assert after[:, 4:].abs().max() == 0
    with pytest.raises(GeosynthError, match="need 8"):
        prepare_joint_unet(unet, 4, 16)


@pytest.fixture(scope="module")
def seg_pairs(tmp_path_factory) -> Path:
    """Six toy pairs as segmentation datasets ship: images/ + masks/, RGB masks, black ignored."""
    root = tmp_path_factory.mktemp("joint") / "pairs"
    legend = toy_legend(CLASSES)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(6):
        img, classes = toy_pair(i, CLASSES, 32, seed=0)
        rgb = np.array(legend.render(classes))
        rgb[:8, :8] = 0
        img.save(root / "images" / f"{i}.png")
        Image.fromarray(rgb).save(root / "masks" / f"{i}.png")
    (root / "legend.json").write_text(json.dumps({**legend.to_dict(), "ignore": ["#000000"]}))
    return root


def test_finetune_joint_then_generate_pairs(seg_pairs, toy_models, tmp_path, cli) -> None:
    from datasets import load_dataset as hf_load

    sd = str(toy_models["sd"])
    model = tmp_path / "joint"
    r = cli("finetune", seg_pairs, "--model", sd, "--joint-masks", "--max-steps", "2",
            "--batch-size", "2", "--out", model)  # fmt: skip
    assert r.code == 0, r.err
    card = json.loads((model / "geosynth.json").read_text())
    assert card["joint_masks"]["bits"] == 2 and card["joint_masks"]["num_classes"] == 3
    assert json.loads((model / "unet" / "config.json").read_text())["out_channels"] == 6
    gen = tmp_path / "gen"
    r = cli("generate", "--model", sd, "--lora", model, "--per-class", "3", "--steps", "2",
            "--batch-size", "2", "--json", "--out", gen)  # fmt: skip
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["pairs"] == 3 and report["complete"]
    synth = load_dataset(gen)
    assert len(synth) == 3 and synth.legend.names == CLASSES
    assert [c["color"] for c in synth.legend.to_dict()["classes"]] == [
        c["color"] for c in toy_legend(CLASSES).to_dict()["classes"]
    ]
    rows = [json.loads(x) for x in (gen / "metadata.jsonl").read_text().splitlines()]
    ignored = sum(int((synth.map(i) == -1).sum()) for i in range(len(synth)))
    # every ignored pixel came from a code >= K, and every such code was counted
    assert ignored == report["invalid_pixels"] == sum(r["invalid_pixels"] for r in rows)
    assert synth.map(0).shape == (32, 32)
    hf = hf_load(str(gen), split="train", cache_dir=str(tmp_path / "hf"))
    assert set(hf.column_names) >= {"image", "mask", "label"} and len(hf) == 3
    # a joint model cannot follow leak-aligned noise: refused by name, nothing written
    r = cli("generate", "--model", sd, "--lora", model, "--noise", "leak-aligned",
            "--channel-means", tmp_path / "m.safetensors", "--out", tmp_path / "g2")  # fmt: skip
    assert r.code == 2 and not (tmp_path / "g2").exists()
