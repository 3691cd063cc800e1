"""embed and rarity: kills at every stage boundary, then the same command again (both resume by
themselves from their work folder / the cache) gives the same bytes; the embedding cache follows
the weights and every setting that changes the numbers."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from geosynth.features.resolve import resolve_embeddings
from geosynth.toy.data import make_toy_shards
from tests.reliability.conftest import leftovers


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_toy_shards(
        tmp_path_factory.mktemp("rel-shards") / "shards", n_shards=3, per_shard=4
    )


@pytest.mark.parametrize("stage", ["embed:shard@1", "embed:shard@2", "embed:output"])
def test_embed_killed_at_any_stage_resumes_to_the_same_bytes(
    stage, shards, toy_models, killed, cli, tmp_path
) -> None:
    args = ["embed", shards, "--features", toy_models["dinov2"], "--batch-size", "3"]
    ref = tmp_path / "ref" / "feats.safetensors"
    assert cli(*args, "--out", ref).code == 0
    out = tmp_path / "run" / "feats.safetensors"
    killed(stage, *args, "--out", out)
    res = cli(*args, "--out", out)
    assert res.code == 0, res.err
    assert out.read_bytes() == ref.read_bytes()
    assert leftovers(tmp_path / "run") == [] and not out.with_name(out.name + ".parts").exists()


@pytest.mark.parametrize("stage", ["embed:part@2", "embed:output"])
def test_dataset_embed_killed_resumes_at_its_first_unfinished_part(
    stage, toy_data, toy_models, killed, cli, tmp_path
) -> None:
    args = ["embed", toy_data, "--features", toy_models["dinov2"], "--batch-size", "4"]
    args += ["--part-size", "8"]  # 30 images: parts of 8, 8, 8 and 6 rows
    ref = tmp_path / "ref" / "feats.safetensors"
    assert cli(*args, "--out", ref).code == 0
    out = tmp_path / "run" / "feats.safetensors"
    killed(stage, *args, "--out", out)
    res = cli(*args, "--out", out)
    assert res.code == 0, res.err
    assert out.read_bytes() == ref.read_bytes()
    if stage == "embed:part@2":
        assert "resuming: 2 of 4 parts already embedded" in res.err
    assert leftovers(tmp_path / "run") == [] and not out.with_name(out.name + ".parts").exists()


@pytest.mark.parametrize("stage", ["embed:shard@2", "embed:output"])
def test_rarity_killed_while_embedding_resumes_to_the_same_report(
    stage, shards, toy_data, toy_models, killed, cli, tmp_path, monkeypatch
) -> None:
    args = ["rarity", toy_data, shards, "--features", toy_models["dinov2"], "--k", "2"]
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache-ref"))
    assert cli(*args, "--out", tmp_path / "ref.json").code == 0
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))
    killed(stage, *args, "--out", tmp_path / "run.json")
    res = cli(*args, "--out", tmp_path / "run.json")
    assert res.code == 0, res.err
    assert (tmp_path / "run.json").read_bytes() == (tmp_path / "ref.json").read_bytes()
    assert leftovers(tmp_path / "cache") == []
    assert not list((tmp_path / "cache").rglob("*.parts"))


def test_cache_follows_replaced_weights_and_precision(toy_data, toy_models, tmp_path, monkeypatch):
    """Defect 5: the cache was keyed by the model spec string, so replacing a local checkpoint
    returned the old model's embeddings."""
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "dinov2"
    shutil.copytree(toy_models["dinov2"], model)
    first = resolve_embeddings(str(toy_data), features=str(model), device="cpu").embeddings
    weights = load_file(model / "model.safetensors")
    name = "layernorm.weight"  # the final norm: every output feature depends on it
    weights[name] = weights[name] * 1.5 + 0.1  # same size, new content: a retrained checkpoint
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})
    second = resolve_embeddings(str(toy_data), features=str(model), device="cpu").embeddings
    fresh = resolve_embeddings(
        str(toy_data), features=str(model), device="cpu", use_cache=False
    ).embeddings
    assert not torch.equal(first, second)
    assert torch.equal(second, fresh)
    resolve_embeddings(str(toy_data), features=str(model), device="cpu", precision="bf16")
    entries = sorted((tmp_path / "cache" / "embeddings").glob("*.safetensors"))
    assert len(entries) == 3  # old weights, new weights, new weights in bf16
