"""A generated dataset is read by torchvision's ImageFolder, timm and HF datasets with exactly
the classes and counts of the run (issue 19): the contact sheets live beside it, and its card
makes `label` a ClassLabel with the class names."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from geosynth.cli.main import main
from geosynth.diffusion.sampling.generate import previews_dir

# Not in sorted order, and one name with a space: the readers' numbering differs from ours.
CLASSES = ["water", "annual crop", "desert"]
PER_CLASS = 3


@pytest.fixture(scope="module")
def generated(toy_models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("readers") / "synth"
    args = ["generate", "--model", str(toy_models["sd"]), "--classes", ",".join(CLASSES)]
    args += ["--per-class", str(PER_CLASS), "--steps", "2", "--batch-size", "3"]
    assert main([*args, "--out", str(out)]) == 0
    return out


def test_torchvision_imagefolder_sees_exactly_the_classes(generated: Path) -> None:
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(generated))
    assert ds.classes == sorted(CLASSES)
    assert Counter(ds.classes[t] for t in ds.targets) == dict.fromkeys(CLASSES, PER_CLASS)
    image, _ = ds[0]
    assert image.size == (32, 32)
    # The contact sheets are beside the dataset, not a class in it.
    assert sorted(p.name for p in previews_dir(generated).iterdir()) == sorted(
        f"{c}.png" for c in CLASSES
    )


def test_timm_sees_exactly_the_classes(generated: Path) -> None:
    from timm.data import create_dataset

    ds = create_dataset("", root=str(generated))
    class_to_idx = ds.reader.class_to_idx
    assert sorted(class_to_idx) == sorted(CLASSES)
    names = {i: c for c, i in class_to_idx.items()}
    assert Counter(names[t] for _, t in ds.reader.samples) == dict.fromkeys(CLASSES, PER_CLASS)


def test_hf_datasets_reads_label_as_class_label_with_names(generated: Path, tmp_path: Path) -> None:
    import datasets

    ds = datasets.load_dataset(str(generated), split="train", cache_dir=str(tmp_path))
    label = ds.features["label"]
    assert isinstance(label, datasets.ClassLabel) and label.names == CLASSES
    assert Counter(label.int2str(x) for x in ds["label"]) == dict.fromkeys(CLASSES, PER_CLASS)
    # Every row's label is the name of its class (ours, in the run's class order).
    assert [label.int2str(x) for x in ds["label"]] == ds["class_name"]
    rows = [json.loads(x) for x in (generated / "metadata.jsonl").read_text().splitlines()]
    assert ds["seed"] == [r["seed"] for r in rows] and ds["prompt"] == [r["prompt"] for r in rows]
    assert ds[0]["image"].size == (32, 32)


def test_written_image_folders_read_the_same_way(tmp_path: Path) -> None:
    """`toy data` (and every ImageFolderWriter output: data export, k-shot splits) carries the
    same card."""
    import datasets
    from torchvision.datasets import ImageFolder

    out = tmp_path / "toy"
    assert main(["toy", "data", "--out", str(out), "--per-class", "2", "--size", "16"]) == 0
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    names = sorted({(r["label"], r["class_name"]) for r in rows})
    hf = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert hf.features["label"].names == [n for _, n in names]
    assert hf.num_rows == len(rows) == len(ImageFolder(str(out)))


def test_previews_of_another_run_are_not_mixed_in(generated: Path, toy_models, cli) -> None:
    """A new run whose OUT.previews already holds another run's sheets is refused (they would
    be mixed or overwritten), before anything is written."""
    import shutil

    out = generated.parent / "again"
    shutil.copytree(previews_dir(generated), previews_dir(out))
    before = sorted(p.name for p in previews_dir(out).iterdir())
    res = cli(
        "generate", "--model", toy_models["sd"], "--classes", "water", "--per-class", "1",
        "--steps", "2", "--out", out,
    )  # fmt: skip
    said = " ".join(res.err.split())  # the message may be wrapped at the terminal width
    assert res.code == 2 and "previews folder" in said and "again.previews" in said, res.err
    assert not out.exists() and sorted(p.name for p in previews_dir(out).iterdir()) == before
