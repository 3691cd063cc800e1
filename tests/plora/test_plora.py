"""pLoRA: bias-score weights, seeded K-Means, and cluster -> train -> generate end to end."""

import json

import numpy as np
import pytest

from geosynth.data import load_dataset
from geosynth.errors import GeosynthError
from geosynth.plora import bias_weights, count_table, kmeans, uniform_weights
from geosynth.toy import make_toy_lora


def test_weights_on_a_hand_computed_table() -> None:
    labels = [0] * 8 + [1] * 2 + [2] * 2
    clusters = [0] * 6 + [1] * 2 + [1] * 2 + [0] * 2
    counts = count_table(labels, clusters, 3, 2)
    np.testing.assert_array_equal(counts, [[6, 2], [0, 2], [2, 0]])
    b, w = bias_weights(counts)
    # Column sums 8 and 4: b = [[6/8, 2/4], [0, 2/4], [2/8, 0]]; rows then sum to one.
    np.testing.assert_allclose(b, [[0.75, 0.5], [0.0, 0.5], [0.25, 0.0]])
    np.testing.assert_allclose(w, [[0.6, 0.4], [0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(uniform_weights(3, 4), np.full((3, 4), 0.25))


def _blobs(n_per: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0], [5, 0, 0], [0, 5, 0], [0, 0, 5]], dtype=np.float32)
    return np.concatenate([c + rng.normal(0, 1.0, (n_per, 3)) for c in centres]).astype(np.float32)


def test_kmeans_is_seeded_partitions_and_keeps_the_best_restart() -> None:
    x = _blobs()
    a = kmeans(x, 4, seed=3)
    b = kmeans(x, 4, seed=3)
    np.testing.assert_array_equal(a.assignments, b.assignments)
    assert a.assignments.shape == (len(x),) and set(a.assignments.tolist()) == {0, 1, 2, 3}
    d = ((x[:, None, :] - a.centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(a.assignments, d.argmin(1))  # each sample in its nearest cluster
    assert a.inertia == pytest.approx(float(d.min(1).sum()), rel=1e-4)
    single = [kmeans(x, 4, seed=s, restarts=1).inertia for s in range(5)]
    assert kmeans(x, 4, seed=0, restarts=10).inertia <= max(single) + 1e-3


def test_kmeans_bad_input() -> None:
    x = _blobs(2)
    with pytest.raises(GeosynthError, match="larger than the number of samples"):
        kmeans(x, 9)
    dup = np.repeat(np.eye(3, dtype=np.float32)[:2], 5, axis=0)  # 2 distinct points
    with pytest.raises(GeosynthError, match="only 2 distinct points"):
        kmeans(dup, 3)


def test_cluster_train_generate_end_to_end(
    cli, toy_models, toy_data, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))
    sd = str(toy_models["sd"])
    out = tmp_path / "plora"
    args = ["cluster-plora", toy_data, "--k", "3", "--features", toy_models["dinov2"], "--out", out]
    args += ["--model", sd, "--max-steps", "2", "--resolution", "32", "--batch-size", "4"]
    stage1 = make_toy_lora(sd, tmp_path / "stage1")  # 2LoRA: cluster LoRAs train on top of it
    args += ["--init-lora", stage1]
    res = cli(*args, "--json")
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert len(report["commands"]) == 3 and all(
        "geosynth finetune" in c for c in report["commands"]
    )
    assert report["trained"] == []

    # Every sample in exactly one cluster; cluster datasets keep their class labels.
    ds = load_dataset(toy_data)
    assignments = json.loads((out / "assignments.json").read_text())
    assert sorted(s["key"] for s in assignments["samples"]) == sorted(s.key for s in ds.samples)
    total = 0
    for j in range(3):
        part = load_dataset(out / "clusters" / f"cluster_{j}")
        total += len(part)
        mine = [s for s in assignments["samples"] if s["cluster"] == j]
        assert sorted(part.class_names[s.label] for s in part.samples) == sorted(
            s["class"] for s in mine
        )
    assert total == len(ds)
    weights = json.loads((out / "weights.json").read_text())
    counts = np.array(
        [[weights["counts"][c][f"cluster_{j}"] for j in range(3)] for c in ds.class_names]
    )
    _, w = bias_weights(counts)
    for i, c in enumerate(ds.class_names):
        assert [weights["weights"][c][f"cluster_{j}"] for j in range(3)] == pytest.approx(w[i])
    # Same seed, same clusters.
    again = cli(
        "cluster-plora",
        toy_data,
        "--k",
        "3",
        "--features",
        toy_models["dinov2"],
        "--out",
        tmp_path / "again",
    )
    assert again.code == 0, again.err
    assert (
        json.loads((tmp_path / "again" / "assignments.json").read_text())["samples"]
        == assignments["samples"]
    )

    res = cli(*args, "--train-loras", "--resume")
    assert res.code == 0, res.err
    for j in range(3):
        assert (out / "loras" / f"cluster_{j}" / "pytorch_lora_weights.safetensors").is_file()
    gen = tmp_path / "gen"
    res = cli(
        "generate",
        "--model",
        sd,
        "--lora-weights",
        out / "weights.json",
        "--per-class",
        "1",
        "--steps",
        "2",
        "--out",
        gen,
    )
    assert res.code == 0, res.err
    rows = [json.loads(line) for line in (gen / "metadata.jsonl").read_text().splitlines()]
    assert sorted(r["class_name"] for r in rows) == sorted(ds.class_names)
    mixes = {r["class_name"]: {n: v["weight"] for n, v in r["loras"].items()} for r in rows}
    for c in ds.class_names:
        expected = {n: v for n, v in weights["weights"][c].items() if v}
        assert mixes[c] == pytest.approx({"stage1": 1.0, **expected})  # stage 1 for every class
    assert len({json.dumps(m, sort_keys=True) for m in mixes.values()}) > 1  # mixtures differ

    # A weights file naming an unknown class or LoRA.
    bad = dict(weights, weights={**weights["weights"], "volcano": {"cluster_0": 1.0}})
    (out / "bad.json").write_text(json.dumps(bad))
    res = cli(
        "generate", "--model", sd, "--lora-weights", out / "bad.json", "--out", tmp_path / "g2"
    )
    assert res.code == 2 and "unknown class 'volcano'" in res.err
    bad = dict(weights, weights={"water": {"cluster_9": 1.0}}, class_names=["water"])
    (out / "bad2.json").write_text(json.dumps(bad))
    res = cli(
        "generate", "--model", sd, "--lora-weights", out / "bad2.json", "--out", tmp_path / "g3"
    )
    assert res.code == 2 and "cluster_9" in res.err


def test_cluster_plora_bad_input(cli, toy_data, tmp_path) -> None:
    import torch

    from geosynth.artifacts import Embeddings, save_embeddings

    ds = load_dataset(toy_data)
    emb = tmp_path / "e.safetensors"
    from geosynth.artifacts import Provenance

    save_embeddings(emb, Embeddings(torch.zeros(len(ds), 4)), provenance=Provenance.start("test"))
    res = cli("cluster-plora", toy_data, "--k", "2", "--embeddings", emb, "--out", tmp_path / "o")
    assert res.code == 2 and "distinct points" in res.err and not (tmp_path / "o").exists()
    res = cli("cluster-plora", toy_data, "--k", "99", "--embeddings", emb, "--out", tmp_path / "o")
    assert res.code == 2 and "--k 99" in res.err
    short = tmp_path / "short.safetensors"
    save_embeddings(short, Embeddings(torch.randn(3, 4)), provenance=Provenance.start("test"))
    res = cli("cluster-plora", toy_data, "--embeddings", short, "--out", tmp_path / "o")
    assert res.code == 2 and "3 embeddings for 30 images" in res.err
