"""``build_plora``: cluster-plora as one library call (cluster, per-cluster LoRAs, mixing
weights, resume), the same clusters as the command, and its output feeding generation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from geosynth.artifacts import Embeddings, Provenance, save_embeddings
from geosynth.data import load_dataset
from geosynth.diffusion import load_generation
from geosynth.diffusion.loras import LoraWeights
from geosynth.diffusion.training.recipe import Recipe
from geosynth.errors import GeosynthError
from geosynth.plora import build_plora


def test_cluster_train_mix_and_resume(cli, toy_models, toy_data, tmp_path) -> None:
    ds = load_dataset(toy_data)
    # Two well separated groups of classes: K-Means with k=2 finds them.
    rng = np.random.default_rng(0)
    centre = {c: (0.0 if i < 2 else 8.0) for i, c in enumerate(ds.class_names)}
    x = np.stack([centre[ds.class_names[s.label]] + rng.normal(0, 0.1, 4) for s in ds.samples])
    emb = save_embeddings(
        tmp_path / "e.safetensors",
        Embeddings(torch.tensor(x, dtype=torch.float32)),
        provenance=Provenance.start("t"),
    )
    out = tmp_path / "plora"
    sd = str(toy_models["sd"])
    recipe = Recipe(rank=4, alpha=4.0, max_steps=1, resolution=32, batch_size=4)
    logged: list[str] = []
    result = build_plora(toy_data, out, k=2, embeddings=emb, model=sd, recipe=recipe)
    summary = result["summary"]
    assert result["trained"] == [] and summary["k"] == 2
    assert sorted(map(sum, zip(*summary["counts"], strict=True))) == [12, 18]
    # The command clusters the same way; a speed switch reaches the printed finetune commands.
    args = ["cluster-plora", toy_data, "--k", "2", "--embeddings", emb, "--out", tmp_path / "c"]
    res = cli(*args, "--compile", "--json")
    assert res.code == 0, res.err
    commands = json.loads(res.out)["commands"]
    assert len(commands) == 2 and all(c.split()[-3] == "--compile" for c in commands)
    assert (out / "assignments.json").read_text() == (
        tmp_path / "c" / "assignments.json"
    ).read_text()
    assert (out / "weights.json").read_text() == (tmp_path / "c" / "weights.json").read_text()

    with pytest.raises(GeosynthError, match=r"^out='.*plora': already exists.*resume=True"):
        build_plora(toy_data, out, k=2, embeddings=emb)
    result = build_plora(
        toy_data, out, train_loras=True, resume=True, model=sd, recipe=recipe, log=logged.append
    )
    assert result["summary"] is None and f"keeping the clusters in {out}" in logged
    assert result["trained"] == [str(out / "loras" / f"cluster_{j}") for j in range(2)]
    mix = LoraWeights.read(out / "weights.json")  # the cluster LoRAs now exist
    assert mix.classes == ds.class_names and set(mix.loras) == {"cluster_0", "cluster_1"}

    gen = load_generation(
        model=sd, lora_weights=out / "weights.json", per_class=1, steps=1, device="cpu"
    )
    assert gen.spec.classes == ds.class_names
    gen.run(tmp_path / "gen")
    rows = [json.loads(r) for r in (tmp_path / "gen" / "metadata.jsonl").read_text().splitlines()]
    for r in rows:
        weights = {n: v["weight"] for n, v in r["loras"].items()}
        expected = {n: w for n, w in mix.weights[r["class_name"]].items() if w}
        assert weights == pytest.approx(expected)
