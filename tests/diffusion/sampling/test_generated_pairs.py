"""``generate --maps`` writes a segmentation dataset (images/ + masks/, legend.json, metadata),
which geosynth and ``datasets.load_dataset`` read back with the masks it followed; a killed
run resumed, and two shards, give the same files as one uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geosynth import faults
from geosynth.data import load_dataset
from geosynth.data.paired import attach_maps, read_map
from geosynth.toy.paired import make_toy_paired_dataset

CLASSES = ["water", "desert"]


@pytest.fixture(scope="module")
def map_model(toy_models, tmp_path_factory) -> dict[str, Path]:
    """Six toy maps and a map-conditioned UNet trained one step from scratch (the outputs'
    layout and bytes are under test here, not what the model learnt)."""
    from geosynth.diffusion.mapcond import MapCondition
    from geosynth.diffusion.training.finetune import finetune
    from geosynth.diffusion.training.recipe import Recipe

    root = tmp_path_factory.mktemp("gp")
    pairs = make_toy_paired_dataset(root / "pairs", n=6, seed=0, classes=CLASSES)
    config = json.loads((toy_models["sd"] / "unet" / "config.json").read_text())
    cfg = root / "unet.json"
    cfg.write_text(json.dumps({k: v for k, v in config.items() if not k.startswith("_")}))
    recipe = Recipe(unet="full", text_encoder="frozen", init="scratch", unet_config=str(cfg),
                    max_steps=1, batch_size=2, maps=MapCondition())  # fmt: skip
    model = root / "model"
    finetune(attach_maps(load_dataset(pairs)), model, recipe, model=str(toy_models["sd"]),
             log=lambda s: None)  # fmt: skip
    return {"pairs": pairs, "model": model, "sd": toy_models["sd"]}


def _args(m: dict[str, Path], out: Path, *extra: str) -> list[str | Path]:
    return ["generate", "--model", m["sd"], "--lora", m["model"], "--maps", m["pairs"],
            "--per-map", "1", "--steps", "2", "--batch-size", "2", "--out", out, *extra]  # fmt: skip


def _files(out: Path) -> dict[str, bytes]:
    """Every file of an output but its provenance (which records times)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "provenance.json"
    }


@pytest.fixture(scope="module")
def reference(map_model, tmp_path_factory) -> Path:
    from geosynth.diffusion.sampling.step import generate

    out = tmp_path_factory.mktemp("ref") / "gen"
    generate(out, maps=map_model["pairs"], model=str(map_model["sd"]),
             loras=[map_model["model"]], per_map=1, steps=2, batch_size=2)  # fmt: skip
    return out


def test_output_is_a_segmentation_dataset_with_the_maps(map_model, reference, tmp_path) -> None:
    from datasets import load_dataset as hf_load

    synth = load_dataset(reference)
    source = attach_maps(load_dataset(map_model["pairs"]))
    assert len(synth) == 6 and synth.legend.names == source.legend.names
    assert (reference / "images").is_dir() and (reference / "masks").is_dir()
    rows = [json.loads(x) for x in (reference / "metadata.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["file_name"].replace("images/", "masks/", 1) == row["mask_file_name"]
        followed = read_map(Path(row["source_map"]), source.legend)  # 32 px, as generated
        assert np.array_equal(synth.map(synth.keys.index(row["file_name"])), followed)
        # the landscape folder is the mask's dominant class
        assert row["class_name"] == CLASSES[int(np.bincount(followed.ravel()).argmax())]
    # a cache of its own: datasets' default cache can answer for another run's folder
    hf = hf_load(str(reference), split="train", cache_dir=str(tmp_path / "hf"))
    assert set(hf.column_names) >= {"image", "mask", "label"}
    for k in (0, 5):
        mask = np.array(Image.open(reference / rows[k]["mask_file_name"]))
        assert np.array_equal(np.array(hf[k]["mask"]), mask)


def test_killed_run_resumes_to_the_same_bytes(
    map_model, reference, tmp_path, cli, monkeypatch
) -> None:
    want = _files(reference)
    out = tmp_path / "killed"
    monkeypatch.setenv(faults.MODE_ENV, "raise")
    monkeypatch.setenv(faults.ENV, "generate:pair:file_name@4")  # the 4th pair's image written
    faults.reset()
    with pytest.raises(faults.Killed):
        cli(*_args(map_model, out))
    monkeypatch.delenv(faults.ENV)
    assert not (out / "metadata.jsonl").exists()
    r = cli(*_args(map_model, out))
    assert r.code == 2 and "resume" in r.err, r.err
    r = cli(*_args(map_model, out, "--resume"))
    assert r.code == 0, r.err
    assert "3 new image/mask pairs" in r.err + r.out
    assert _files(out) == want
    r = cli(*_args(map_model, out, "--resume", "--steps", "3"))
    assert r.code == 2 and "steps" in r.err, r.err


# Two more generate runs; make test checks shards through class generation's store (the same
# plan, lock and rows code) in tests/diffusion/sampling/test_generate.py.
@pytest.mark.slow
def test_two_shards_give_the_same_bytes(map_model, reference, tmp_path, cli) -> None:
    want = _files(reference)
    sharded = tmp_path / "sharded"
    for i in (1, 0):
        r = cli(*_args(map_model, sharded, "--shard", f"{i}/2"))
        assert r.code == 0, r.err
    assert _files(sharded) == want
