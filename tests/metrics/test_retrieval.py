"""The metadata retrieval rank against ranks computed by sorting, and its refusals to guess."""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch

from geosynth.artifacts.typed import Embeddings
from geosynth.metrics.retrieval import retrieval_section


def test_ranks_match_a_sort(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    real = Embeddings(
        torch.randn(9, 5, generator=g),
        labels=torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2]),
        class_names=["a", "b", "c"],
        ids=[f"r{i}.tif" for i in range(9)],
    )
    synth = Embeddings(torch.randn(6, 5, generator=g), ids=[f"s{i}.png" for i in range(6)])
    pair = [0, 4, 8, 2, 3, 99]  # the last one's pair is not in REAL
    rows = [
        {"file_name": f"s{i}.png", "metadata_from": f"r{p}.tif", "metadata_shuffled": True}
        for i, p in enumerate(pair)
    ]
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = retrieval_section(SimpleNamespace(source=tmp_path), synth, real)
    assert got is not None and got["images"] == 5 and got["unpaired"] == 1 and got["shuffled"]
    want, want_class = [], []
    for i, p in enumerate(pair[:5]):
        sims = torch.nn.functional.cosine_similarity(real.embeddings, synth.embeddings[i : i + 1])
        order = sorted(range(9), key=lambda j: -float(sims[j]))
        want.append(order.index(p) + 1)
        same = [j for j in order if real.labels[j] == real.labels[p]]
        want_class.append(same.index(p) + 1)
    assert got["all"]["mean_rank"] == sum(want) / 5
    assert got["all"]["top1"] == sum(r == 1 for r in want) / 5
    assert got["all"]["chance_mean_rank"] == 5.0
    assert got["within_class"]["mean_rank"] == sum(want_class) / 5
    assert got["within_class"]["chance_mean_rank"] == 2.0


def test_sets_without_pairs_get_no_section(tmp_path) -> None:
    e = Embeddings(torch.ones(2, 3), ids=["a", "b"])
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a", "label": 0}\n')
    assert retrieval_section(SimpleNamespace(source=tmp_path), e, e) is None
