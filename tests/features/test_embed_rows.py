"""Embedding files other tools can use: every row carries the key of its source image (joinable
back to the files or to a webdataset's sample keys), and the metadata is JSON all through."""

import json
from pathlib import Path

import torch

from geosynth.artifacts import decode_strings, encode_strings, load_embeddings, load_tensors
from geosynth.data import load_dataset
from tests.data.test_shards import make_shards


def test_string_tensors_round_trip() -> None:
    words = ["a", "", "forêt/0001.png", "x" * 300]
    blob, offsets = encode_strings(words)
    assert blob.dtype == torch.uint8 and offsets.tolist()[-1] == blob.numel()
    assert decode_strings(blob, offsets) == words
    assert decode_strings(*encode_strings([])) == []


def test_dataset_rows_carry_their_file_keys(cli, toy_data: Path, toy_models, tmp_path) -> None:
    out = tmp_path / "e.safetensors"
    res = cli("embed", toy_data, "--features", toy_models["dinov2"], "--out", out, "--shots", "2")
    assert res.code == 0, res.err
    emb = load_embeddings(out)
    ds = load_dataset(toy_data, shots=2)
    assert emb.ids == [s.key for s in ds.samples]
    assert all((toy_data / key).is_file() for key in emb.ids)
    # every label matches the class folder the id points into
    assert [emb.class_names[int(i)] for i in emb.labels] == [k.split("/")[0] for k in emb.ids]
    # metadata is JSON all through: no Python reprs (e.g. transformers' SizeDict)
    prep = json.loads(load_tensors(out).metadata["preprocessing"])
    assert isinstance(prep["size"], dict) and "SizeDict" not in json.dumps(prep)


def test_shard_rows_carry_their_sample_keys(cli, toy_models, tmp_path: Path) -> None:
    shards = make_shards(tmp_path / "shards")
    out = tmp_path / "s.safetensors"
    res = cli("embed", shards, "--features", toy_models["dinov2"], "--out", out)
    assert res.code == 0, res.err
    emb = load_embeddings(out)
    assert emb.ids is not None and len(emb.ids) == emb.embeddings.shape[0]
    assert len(set(emb.ids)) == len(emb.ids) == 17  # 3 shards x 6, one corrupt sample skipped
    assert "000010002" not in emb.ids and "000010003" in emb.ids
