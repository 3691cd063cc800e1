"""Webdataset shards (img2dataset layout) built here: streaming, corrupt samples, --limit, resume."""

from pathlib import Path

import pytest
import torch

from geosynth.artifacts import Provenance, load_embeddings
from geosynth.data.shards import subsample
from geosynth.features import create_extractor
from geosynth.features.shard_embed import embed_shards
from geosynth.toy import make_toy_shards


def make_shards(root: Path, n_shards: int = 3, per_shard: int = 6) -> Path:
    """Shards with one broken JPEG: sample 2 of shard 1 (key 000010002)."""
    return make_toy_shards(
        root, classes=3, n_shards=n_shards, per_shard=per_shard, corrupt=[(1, 2)]
    )


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    return make_shards(tmp_path / "laion")


def test_stream_skips_corrupt_samples_and_counts_them(shards, toy_models, tmp_path) -> None:
    ex = create_extractor(str(toy_models["dinov2"]), device="cpu")
    report = embed_shards(
        ex, shards, tmp_path / "f.safetensors", provenance=Provenance.start("e"), batch_size=4
    )
    assert report["samples"] == 17 and report["corrupt_skipped"] == 1
    emb = load_embeddings(tmp_path / "f.safetensors")
    assert emb.embeddings.shape == (17, 32) and emb.labels is None
    assert not (tmp_path / "f.safetensors.parts").exists()


def test_limit_is_deterministic_and_independent_of_resume(shards, toy_models, tmp_path) -> None:
    ex = create_extractor(str(toy_models["dinov2"]), device="cpu")
    first = subsample(sorted(shards.glob("*.tar")), 7, seed=3)
    assert sum(len(v) for v in first.values()) == 7
    assert first == subsample(sorted(shards.glob("*.tar")), 7, seed=3)
    assert first != subsample(sorted(shards.glob("*.tar")), 7, seed=4)

    full = tmp_path / "full.safetensors"
    embed_shards(ex, shards, full, provenance=Provenance.start("e"), limit=7, seed=3)

    # A run killed after its first shard: the shard's part exists, the output does not.
    killed = tmp_path / "resumed.safetensors"
    calls = {"n": 0}
    real_call = type(ex).__call__

    def dying(self, pixels):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return real_call(self, pixels)

    type(ex).__call__ = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            embed_shards(
                ex, shards, killed, provenance=Provenance.start("e"), limit=7, seed=3, batch_size=64
            )
    finally:
        type(ex).__call__ = real_call
    assert not killed.exists() and (tmp_path / "resumed.safetensors.parts").is_dir()
    logs: list[str] = []
    embed_shards(
        ex, shards, killed, provenance=Provenance.start("e"), limit=7, seed=3, log=logs.append
    )
    assert any("resuming: 1 of 3" in line for line in logs)
    torch.testing.assert_close(load_embeddings(killed).embeddings, load_embeddings(full).embeddings)
