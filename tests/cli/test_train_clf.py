"""``geosynth train-clf`` from the command line: outputs that load back, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geosynth.classify import load_classifier
from geosynth.data import load_dataset
from geosynth.toy import make_toy_clip, make_toy_dataset, make_toy_timm


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train-clf-cli")
    return {
        "train": make_toy_dataset(root / "train", per_class=8, seed=1, classes=3),
        "val": make_toy_dataset(root / "val", per_class=4, seed=2, classes=3),
        "test": make_toy_dataset(root / "test", per_class=4, seed=3, classes=3),
        "clip": make_toy_clip(root / "clip"),
        "timm": make_toy_timm(root / "timm"),
        "root": root,
    }


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared machine: see tests/classify/conftest.py
    yield
    torch.set_num_threads(before)


def _base(s: dict[str, Path], out: Path, *extra: str) -> list[str | Path]:
    return [
        "train-clf",
        s["train"],
        "--val",
        s["val"],
        "--test",
        s["test"],
        "--out",
        out,
        "--workers",
        "0",
        *extra,
    ]


def _timm(s: dict[str, Path]) -> list[str]:
    return ["--backbone", f"timm:local-dir:{s['timm']}", "--resolution", "32", "--head-only"]


def _plain_folder(src: Path, dst: Path, rename: dict[str, str] | None = None) -> Path:
    """Copy a dataset as a plain image folder, optionally renaming classes."""
    ds = load_dataset(src)
    for i, sample in enumerate(ds.samples):
        name = ds.class_names[sample.label]
        d = dst / (rename or {}).get(name, name)
        d.mkdir(parents=True, exist_ok=True)
        ds.image(i).save(d / f"{i}.png")
    return dst


def test_json_report_and_files(cli, setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "clf"
    r = cli(*_base(setup, out, *_timm(setup), "--epochs", "2", "--seeds", "0,1", "--json"))
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["seeds"] == [0, 1]
    assert set(report["test"]) >= {"top1", "macro_f1", "per_class"}
    assert len(report["test_confusion_summed"]) == 3
    assert sum(map(sum, report["test_confusion_summed"])) == 2 * 12
    assert json.loads((out / "report.json").read_text())["test"] == report["test"]
    assert (out / "provenance.json").is_file()
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    model = load_classifier(out / "seed-1" / "model.safetensors")
    assert model.class_names == report["class_names"]
    # The table form names the metrics.
    r = cli(*_base(setup, tmp_path / "t", *_timm(setup), "--epochs", "1"))
    assert r.code == 0, r.err
    assert "TEST top-1" in r.out and "precision" in r.out


def test_classes_subset_applies_to_every_split(cli, setup: dict[str, Path], tmp_path: Path) -> None:
    names = load_dataset(setup["train"]).class_names[:2]
    args = _base(setup, tmp_path / "o", *_timm(setup), "--epochs", "1", "--json")
    r = cli(*args, "--classes", ",".join(names))
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["class_names"] == names
    assert report["runs"][0]["test"]["n"] == 8


def test_zero_shot(cli, setup: dict[str, Path], tmp_path: Path) -> None:
    r = cli(*_base(setup, tmp_path / "zs", "--clip-model", setup["clip"], "--zero-shot", "--json"))
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["zero_shot"] is True
    assert report["runs"][0]["selected_epoch"] == 0
    assert report["runs"][0]["test"]["n"] == 12


def test_class_sets_must_match_or_be_mapped(cli, setup: dict[str, Path], tmp_path: Path) -> None:
    names = load_dataset(setup["test"]).class_names
    renamed = _plain_folder(setup["test"], tmp_path / "renamed", {names[0]: "Lake"})
    args = _base(setup, tmp_path / "o", *_timm(setup), "--epochs", "1")
    args[args.index("--test") + 1] = renamed
    r = cli(*args)
    assert r.code == 2
    assert "--test" in r.err and "Lake" in r.err and "--class-map" in r.err
    cmap = tmp_path / "map.json"
    cmap.write_text(json.dumps({"Lake": names[0]}))
    r = cli(*args, "--class-map", cmap, "--json")
    assert r.code == 0, r.err
    # Matched by name: the renamed class is scored as its TRAIN class.
    assert json.loads(r.out)["runs"][0]["test"]["per_class"][names[0]]["support"] == 4


def test_bad_input_exits_2(cli, setup: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    args = _base(setup, tmp_path / "o", *_timm(setup), "--epochs", "1")
    r = cli(*[empty if a == setup["val"] else a for a in args])
    assert r.code == 2 and "no class sub-folders" in r.err and str(empty) in r.err

    broken = _plain_folder(setup["train"], tmp_path / "broken")
    bad = next(broken.rglob("*.png"))
    bad.write_bytes(b"not a png")
    r = cli(*[broken if a == setup["train"] else a for a in args])
    assert r.code == 2 and bad.name in r.err and "cannot read image" in r.err
    assert not (tmp_path / "o.parts").exists()  # nothing to resume: no state left behind

    r = cli(*_base(setup, tmp_path / "o", *_timm(setup), "--zero-shot"))
    assert r.code == 2 and "--zero-shot" in r.err
    r = cli(*args, "--full")
    assert r.code == 2 and "--head-only" in r.err
    r = cli(*args, "--seeds", "0,x")
    assert r.code == 2 and "--seeds" in r.err

    parts = tmp_path / "o.parts"
    parts.mkdir()
    r = cli(*args)
    assert r.code == 2 and "--resume" in r.err
