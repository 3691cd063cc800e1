"""The demo's train-clf step on its own (stand-in inputs), so the whole demo need not run."""

import json
from pathlib import Path

import pytest
import torch

from geosynth.demo import DemoRun, step_train_clf
from geosynth.toy import make_toy_clip, make_toy_dataset


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_step_train_clf_reports_top1(tmp_path: Path) -> None:
    run = DemoRun(out=tmp_path, log=lambda _: None)
    run.paths.update(
        pool=make_toy_dataset(tmp_path / "pool", per_class=24, seed=0, classes=3),
        fewshot=make_toy_dataset(tmp_path / "fewshot", per_class=8, seed=0, classes=3),
        model_clip=make_toy_clip(tmp_path / "clip"),
    )
    run.paths["synth_leak-aligned"] = make_toy_dataset(
        tmp_path / "s1", per_class=4, seed=5, classes=3
    )
    run.paths["synth_gaussian"] = make_toy_dataset(tmp_path / "s2", per_class=4, seed=6, classes=3)
    step_train_clf(run)
    top1 = run.metrics["train_clf_test_top1"]
    assert set(top1) == {
        "zero-shot",
        "synthetic, leak-aligned",
        "synthetic, Gaussian",
        "real 8-shot",
    }
    assert all(0.0 <= v <= 1.0 for v in top1.values())
    assert "## Classifier" in run.sections[-1] and (tmp_path / "clf-confusion.png").is_file()
    report = json.loads((tmp_path / "clf-real-8-shot" / "report.json").read_text())
    # 24 per class minus the 8-shot draw: 12 VAL and 4 TEST images per class.
    assert report["data"]["val"]["images"] == 36 and report["data"]["test"]["images"] == 12
