"""``geosynth filter``'s other criteria: a train-clf classifier drops off-class samples, the
per-class budget keeps the most confident, real k-NN balls drop off-manifold samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geosynth.artifacts import Provenance
from geosynth.data import load_dataset
from geosynth.data.writer import ImageFolderWriter
from geosynth.features.spec import create_extractor
from geosynth.toy import make_toy_dataset, make_toy_dinov2, make_toy_timm

CLASSES = ["forest", "water"]  # far apart in colour: a tiny probe gets them right
MANIFOLD_CLASSES = ["forest", "water", "urban"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, cli_module) -> dict[str, Path]:
    """A timm classifier trained on toy shots, and a 'generated' set in which four forest
    images are labelled water (off-class) beside correctly labelled samples."""
    root = tmp_path_factory.mktemp("filter-criteria")
    train = make_toy_dataset(root / "train", per_class=12, seed=1, classes=CLASSES)
    val = make_toy_dataset(root / "val", per_class=4, seed=2, classes=CLASSES)
    timm = make_toy_timm(root / "timm")
    args = [
        "train-clf", train, "--val", val, "--test", val, "--out", root / "clf", "--workers", "0",
        "--backbone", f"timm:local-dir:{timm}", "--resolution", "32", "--head-only", "--lr", "0.1",
        "--epochs", "12", "--seeds", "0",
    ]  # fmt: skip
    assert cli_module(*args) == 0
    gen = load_dataset(make_toy_dataset(root / "gen", per_class=10, seed=7, classes=CLASSES))
    with ImageFolderWriter(root / "synth", CLASSES, Provenance.start("test")) as w:
        for i, lab in enumerate(gen.labels):
            idx = sum(1 for j in range(i) if gen.labels[j] == lab)
            if lab == 0 and idx >= 6:  # forest images, labelled water
                w.add(gen.image(i), 1, image_id=f"offclass-{idx}")
            else:
                w.add(gen.image(i), lab, image_id=f"genuine-{idx}")
    return {"root": root, "train": train, "clf": root / "clf", "synth": root / "synth"}


@pytest.fixture(scope="module")
def cli_module():
    from geosynth.cli.main import main

    return lambda *args: main([str(a) for a in args])


def _records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "filter.jsonl").read_text().splitlines()]


@pytest.mark.slow  # trains the toy classifier (~40-70 s on a busy 2-core machine)
def test_classifier_drops_off_class_samples(cli, setup):
    out = setup["root"] / "kept-clf"
    res = cli("filter", setup["synth"], "--classifier", f"clf:{setup['clf']}", "--out", out)
    assert res.code == 0, res.err
    recs = _records(out)
    off = [r for r in recs if "offclass" in r["file_name"]]
    assert len(off) == 4
    for r in off:  # forest images labelled water: the classifier sees forest, they go
        assert r["class_name"] == "water" and r["predicted"] == "forest"
        assert not r["kept"] and r["reason"] == "off-class"
    genuine = [r for r in recs if "genuine" in r["file_name"]]
    # the toy classifier is right about (nearly) every correctly labelled sample
    assert sum(r["kept"] for r in genuine) >= len(genuine) - 1
    for r in genuine:
        assert r["kept"] is (r["predicted"] == r["class_name"])
    kept = load_dataset(out)
    assert not any("offclass" in k for k in kept.keys)


@pytest.mark.slow  # trains the toy classifier (~40-70 s on a busy 2-core machine)
def test_per_class_budget_keeps_the_most_confident(cli, setup):
    out = setup["root"] / "kept-budget"
    res = cli(
        "filter", setup["synth"], "--classifier", f"clf:{setup['clf']}",
        "--min-confidence", "0", "--per-class", "3", "--out", out,
    )  # fmt: skip
    assert res.code == 0, res.err
    recs = _records(out)
    assert load_dataset(out).counts() == dict.fromkeys(CLASSES, 3)
    for c in CLASSES:
        mine = [r for r in recs if r["class_name"] == c]
        kept = [r["confidence"] for r in mine if r["kept"]]
        dropped = [r["confidence"] for r in mine if not r["kept"]]
        assert {r["reason"] for r in mine if not r["kept"]} == {"budget"}
        assert min(kept) >= max(dropped)


@pytest.mark.slow  # trains the toy classifier (~40-70 s on a busy 2-core machine)
def test_classifier_of_other_classes_is_refused(cli, setup):
    root = setup["root"]
    other = make_toy_dataset(root / "desert", per_class=3, seed=5, classes=["desert"])
    res = cli("filter", other, "--classifier", f"clf:{setup['clf']}", "--out", root / "x")
    assert res.code == 2 and "--classifier" in res.err and "no class in common" in res.err
    assert len(res.err.strip().splitlines()) == 1 and not (root / "x").exists()
    mixed = make_toy_dataset(root / "mixed", per_class=3, seed=5, classes=["forest", "desert"])
    res = cli("filter", mixed, "--classifier", f"clf:{setup['clf']}", "--out", root / "y")
    assert res.code == 2 and "does not know class(es) desert" in res.err
    res = cli("filter", setup["synth"], "--min-confidence", "0.5", "--out", root / "z")
    assert res.code == 2 and "--min-confidence" in res.err and "--classifier" in res.err


def test_off_manifold_samples_are_dropped(cli, tmp_path, monkeypatch):
    """Generated images far from their class's real images (here: urban images labelled
    forest) lie outside every real k-NN ball; the ratio matches a direct computation."""
    root = tmp_path
    monkeypatch.setenv("GEOSYNTH_CACHE", str(root / "cache"))
    dino = make_toy_dinov2(root / "dino")
    real = make_toy_dataset(root / "real", per_class=8, seed=11, classes=MANIFOLD_CLASSES)
    gen = load_dataset(
        make_toy_dataset(root / "gen2", per_class=4, seed=12, classes=MANIFOLD_CLASSES)
    )
    with ImageFolderWriter(root / "synth2", MANIFOLD_CLASSES, Provenance.start("test")) as w:
        for i, lab in enumerate(gen.labels):
            w.add(gen.image(i), 0 if lab == 2 else lab, image_id=f"{lab}-{i}")
    out = root / "kept-manifold"
    args = ["filter", root / "synth2", "--real", real, "--features", str(dino), "--k", "3"]
    res = cli(*args, "--out", out)
    assert res.code == 0, res.err
    recs = _records(out)
    # reference: min over same-class real images of distance / that image's 3-NN radius
    ext = create_extractor(str(dino), device="cpu", precision="fp32")
    rds, sds = load_dataset(real), load_dataset(root / "synth2")
    with torch.no_grad():
        re_ = ext(torch.stack([ext.transform(rds.image(i)) for i in range(len(rds))])).double()
        se = ext(torch.stack([ext.transform(sds.image(i)) for i in range(len(sds))])).double()
    for i, r in enumerate(recs):
        mine = re_[[j for j, lab in enumerate(rds.labels) if lab == sds.labels[i]]]
        radius = torch.cdist(mine, mine).sort(dim=1).values[:, 3]
        want = (torch.cdist(se[i : i + 1], mine)[0] / radius).min().item()
        assert r["manifold_ratio"] == pytest.approx(want, rel=1e-3, abs=1e-4)
        assert r["kept"] is (want <= 1.0)
    urban_as_forest = [r for r in recs if r["file_name"].startswith("forest/2-")]
    assert urban_as_forest and not any(r["kept"] for r in urban_as_forest)
