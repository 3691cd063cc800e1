"""embed / rarity / rarity-correlate from the command line, including their bad-input errors."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from geosynth.artifacts import Embeddings, Provenance, save_embeddings
from geosynth.data.shards import subsample
from tests.data.test_shards import make_shards


def _emb(path: Path, x: np.ndarray, labels=None, names=None, model="m") -> Path:
    emb = Embeddings(
        torch.from_numpy(x.astype(np.float32)),
        None if labels is None else torch.tensor(labels),
        names,
        {"feature_model": model},
    )
    return save_embeddings(path, emb, provenance=Provenance.start("test"))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))


def test_real_eurosat_embed_then_rarity_report(cli, eurosat, toy_models, tmp_path) -> None:
    model = str(toy_models["dinov2"])
    res = cli(
        "embed",
        eurosat,
        "--split",
        "train",
        "--features",
        model,
        "--out",
        tmp_path / "t.safetensors",
    )
    assert res.code == 0, res.err
    report_path = tmp_path / "report.json"
    res = cli(
        "rarity",
        tmp_path / "t.safetensors",
        eurosat,
        "--reference-split",
        "val",
        "--features",
        model,
        "--by-class",
        "--out",
        report_path,
        "--json",
    )
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert report == json.loads(report_path.read_text())
    assert (report["n_reference"], report["n_target"], report["k"], report["rarity_k"]) == (
        500,
        160,
        5,
        3,
    )
    assert report["feature_model"] == model and report["preprocessing"]["processor"]
    assert set(report["per_class"]) == {p.name for p in (eurosat / "train").iterdir()}
    for key in ("precision", "density", "coverage", "recall", "rarity_fraction_inside"):
        assert 0 <= report["metrics"][key] <= (5 if key == "density" else 1)
    # The second run reads the reference embeddings from the cache.
    res = cli(
        "rarity",
        tmp_path / "t.safetensors",
        eurosat,
        "--reference-split",
        "val",
        "--features",
        model,
    )
    assert res.code == 0 and "cached" in res.err and "precision" in res.out


def test_shard_reference_through_cli(cli, toy_models, toy_data, tmp_path) -> None:
    shards = make_shards(tmp_path / "laion", n_shards=2, per_shard=8)
    res = cli(
        "rarity",
        toy_data,
        shards,
        "--features",
        str(toy_models["dinov2"]),
        "--limit",
        "12",
        "--json",
    )
    assert res.code == 0, res.err
    # --limit picks 12 samples from the tar headers; a corrupt one among them is skipped.
    chosen = subsample(sorted(shards.glob("*.tar")), 12, seed=0)
    corrupt_chosen = int("000010002" in chosen["00001.tar"])
    assert json.loads(res.out)["n_reference"] == 12 - corrupt_chosen


def test_methods_agree_and_approximate_is_labelled(cli, tmp_path) -> None:
    rng = np.random.default_rng(1)
    t = _emb(tmp_path / "t.safetensors", rng.normal(size=(300, 8)))
    r = _emb(tmp_path / "r.safetensors", rng.normal(size=(900, 8)))
    blocked = json.loads(cli("rarity", t, r, "--json").out)
    lifted = json.loads(cli("rarity", t, r, "--method", "lifted", "--json").out)
    assert blocked["metrics"] == lifted["metrics"]
    assert not blocked["approximate"] and "exact" in lifted["method"]
    res = cli("rarity", t, r, "--approximate", "--nprobe", "2", "--json")
    approx = json.loads(res.out)
    assert res.code == 0 and approx["approximate"] and "APPROXIMATE" in approx["method"]
    assert abs(approx["metrics"]["density"] - blocked["metrics"]["density"]) < 0.2


def test_bad_inputs_exit_2_with_one_line(cli, tmp_path) -> None:
    rng = np.random.default_rng(0)
    a = _emb(tmp_path / "a.safetensors", rng.normal(size=(20, 4)))
    b = _emb(tmp_path / "b.safetensors", rng.normal(size=(20, 5)))
    nan = rng.normal(size=(20, 4))
    nan[[2, 7], 1] = np.nan
    nan[9, 0] = np.inf
    c = _emb(tmp_path / "c.safetensors", nan)
    small = _emb(tmp_path / "s.safetensors", rng.normal(size=(4, 4)))
    empty = _emb(tmp_path / "e.safetensors", np.zeros((0, 4)))
    other = _emb(tmp_path / "o.safetensors", rng.normal(size=(20, 4)), model="other")
    cases = [
        ((a, b), "feature dimensions differ"),
        ((c, a), "has 3 NaN or infinite value(s)"),
        ((small, a), "--k 5 must be smaller than the set size (4)"),
        ((empty, a), "the set is empty"),
        ((a, other), "feature models differ"),
    ]
    for (target, reference), needle in cases:
        res = cli("rarity", target, reference)
        errors = [line for line in res.err.splitlines() if line.startswith("error")]
        assert res.code == 2 and len(errors) == 1 and needle in errors[0], (needle, res.err)
        assert "Traceback" not in res.err
    res = cli("rarity", a, a, "--by-class")
    assert res.code == 2 and "no labels" in res.err


def test_rarity_correlate(cli, tmp_path) -> None:
    xs = {"eurosat": 18.8, "dtd": 18.5, "cars": 11.2, "pets": 14.5, "patternnet": 21.0}
    gaps = {"eurosat": 20.1, "dtd": 15.0, "cars": 1.0, "pets": 4.0, "patternnet": 25.0}
    reports = []
    for name, x in xs.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"metrics": {"rarity_mean": x}}))
        reports.append(path)
    with (tmp_path / "gaps.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["dataset", "gap"])
        w.writerows(gaps.items())
    res = cli(
        "rarity-correlate",
        *reports,
        "--gaps",
        tmp_path / "gaps.csv",
        "--plot",
        tmp_path / "plot.png",
        "--json",
    )
    assert res.code == 0, res.err
    out = json.loads(res.out)
    expected = np.corrcoef(list(xs.values()), [gaps[k] for k in xs])[0, 1]
    assert out["pearson_r"] == pytest.approx(expected) and 0 < out["p_value"] < 0.05
    assert (tmp_path / "plot.png").stat().st_size > 1000
    (tmp_path / "gaps.csv").write_text("dataset,gap\neurosat,1\n")
    res = cli("rarity-correlate", *reports, "--gaps", tmp_path / "gaps.csv")
    assert res.code == 2 and "no row for dataset" in res.err
