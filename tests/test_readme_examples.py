"""The README's pipelines, run as written on the real data in ../shared/data: Sentinel-2
(EuroSAT-MS) through finetune, generate and evaluate, and RGB (EuroSAT-RGB) through train-clf.
The Sentinel-1 block runs in tests/test_real_sar.py. Two classes of each real set are used.

Each block is replayed from README.md itself (tests/doc_commands.py), so a README example that
stops working fails here; only what makes it cheap is added (the toy models of tests/conftest.py,
32 px, 2 steps, 2 images per class: :func:`~tests.doc_commands.cheap_options`). ``generate``
gets no ``--model``: it must take the LoRA card's."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from geosynth.data import open_dataset, read_raster
from tests.doc_commands import REPO, SHARED, all_steps, block_with, cheap_options, replay

README = REPO / "README.md"
#: two classes keep the pipelines cheap (generation and evaluation cost scale with them)
CLASSES = ("AnnualCrop", "SeaLake")


@pytest.fixture(scope="module")
def shared() -> Path:
    if not (SHARED / "eurosat-ms").is_dir() or not (SHARED / "eurosat-rgb").is_dir():
        pytest.skip(f"the real data of the README examples is not at {SHARED} (../shared/data)")
    return SHARED


def _jq(report: dict, path: str) -> object:
    """A ``jq .a.b`` path on a report (the subset of jq the docs use)."""
    cur: object = report
    for key in path.strip(".").split("."):
        assert isinstance(cur, dict) and key in cur, f"jq {path}: no key {key!r}"
        cur = cur[key]
    return cur


def test_readme_sentinel2_finetune_generate_evaluate(
    cli, shared, toy_models, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    steps = block_with(README, '"file_bands": "eurosat-ms"')
    runs = replay(cli, steps, cheap_options(toy_models, ",".join(CLASSES)))
    # generate took the base model from the LoRA card, and said so in one line
    said = [line for line in runs["generate"].err.splitlines() if line.startswith("model:")]
    assert said == [f"model: {toy_models['sd']} (the base model s2-lora's card records)"], said
    tif = read_raster(next(Path("s2-synth").rglob("*.tif")))
    assert tif.dtype == "uint16" and tif.band_names == ["B04", "B03", "B02"]
    report = json.loads(Path("s2-eval.json").read_text())
    # FID, PRDC and colour / amplitude metrics on generated B04, B03, B02 vs the 13-band real set
    overall = report["summary"]["overall"]
    for key in ("fid", "kid", "precision", "recall", "density", "coverage", "color_error",
                "amplitude_w1", "glcm_distance"):  # fmt: skip
        assert key in overall and math.isfinite(overall[key]), (key, overall.get(key))
    assert report["color"]["channels"] == ["B04", "B03", "B02"]
    assert report["amplitude"]["scale"]["bands"] == ["B04", "B03", "B02"]
    assert report["radiometry"]["from"].startswith("recorded by SYNTH")
    assert report["radiometry"]["real"]["band_count"] == 13  # the recorded spec, on REAL
    pool = open_dataset(shared / "eurosat-ms", "pool").select_classes(CLASSES)
    assert report["n_real"] == len(pool) and report["n_synthetic"] == 3 * len(CLASSES)
    # every `| jq FILTER` the docs apply to an evaluate report names a number in it
    filters = [s.jq for s in all_steps() if s.jq and s.words[0] == "evaluate"]
    assert filters
    for f in filters:
        assert isinstance(_jq(report, f), float), f"docs: jq {f} gives {_jq(report, f)!r}"


@pytest.mark.slow  # about 95 s on the loaded 2-core machine (4 model loads and a classifier)
def test_readme_rgb_pipeline_through_train_clf(
    cli, shared, toy_models, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The six-command pipeline on real EuroSAT-RGB: its placeholders become real folders (3
    shots per class for ``eurosat-16shot/``, small ``val/`` and ``test/`` subsets); rarity and
    cluster-plora are left out (no LAION shards or SAR ships here; tests/cli/test_rarity.py and
    tests/plora run them)."""
    monkeypatch.chdir(tmp_path)
    rgb = shared / "eurosat-rgb"
    for split, out in (("train", "shots"), ("val", "val"), ("test", "test")):
        res = cli(
            "data", "export", rgb, "--split", split, "--classes", ",".join(CLASSES),
            "--shots", "3", "--out", out,
        )  # fmt: skip
        assert res.code == 0, res.err
    runs = replay(
        cli,
        block_with(README, "geosynth train-clf synth/"),
        cheap_options(toy_models),
        substitute={"eurosat-16shot/": "shots"},
        skip={"laion-shards/": "no LAION shards here", "sar-ships/": "no SAR ship chips here"},
    )
    assert [why for _, why in runs["skipped"]] == ["no LAION shards here", "no SAR ship chips here"]
    assert open_dataset("synth").counts() == dict.fromkeys(CLASSES, 3)
    report = json.loads(Path("clf/report.json").read_text())
    assert 0.0 <= report["test"]["top1"]["mean"] <= 1.0, report["test"]
    confusion = np.asarray(report["test_confusion_summed"])
    assert confusion.shape == (2, 2) and confusion.sum() == len(open_dataset("test"))
