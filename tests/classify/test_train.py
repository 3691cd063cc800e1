"""Training on toy data: learns, aggregates seeds, resumes exactly, and never selects on TEST."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

import geosynth.classify.run as run_module
import geosynth.classify.train as train_module
from geosynth.artifacts import Provenance
from geosynth.classify import ModelSpec, Splits, TrainConfig, load_classifier, run_train_clf
from geosynth.classify.metrics import mean_std


def _clip(clf_models: dict[str, Path]) -> ModelSpec:
    return ModelSpec(model=str(clf_models["clip"]), mode="lora")


def _run(splits: Splits, spec: ModelSpec, cfg: TrainConfig, out: Path, **kw: Any) -> dict:
    return run_train_clf(
        splits, spec, cfg, out, seeds=kw.pop("seeds", [0]), provenance=Provenance.start("t"), **kw
    )


def test_learns_well_above_chance_on_held_out_images(
    clf_models: dict[str, Path], toy_splits: Splits, tmp_path: Path
) -> None:
    cfg = TrainConfig(epochs=4, batch_size=16, lr=1e-2)
    report = _run(toy_splits, _clip(clf_models), cfg, tmp_path / "out")
    chance = 1 / len(toy_splits.train.class_names)
    assert report["test"]["top1"]["mean"] >= 3 * chance  # 5 classes: >= 0.6 on unseen images
    run = report["runs"][0]
    assert run["test"]["n"] == len(toy_splits.test)
    # The saved checkpoint is the selected one and scores the same when loaded back.
    model = load_classifier(tmp_path / "out" / run["model_file"])
    from geosynth.classify import evaluate

    again = evaluate(model, toy_splits.test)
    assert again["top1"] == pytest.approx(run["test"]["top1"])
    assert (tmp_path / "out" / "confusion.png").stat().st_size > 0


def test_seeds_are_aggregated(
    clf_models: dict[str, Path], toy_splits: Splits, tmp_path: Path
) -> None:
    spec = ModelSpec(backbone=f"timm:local-dir:{clf_models['timm']}", mode="head", resolution=32)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2)
    report = _run(toy_splits, spec, cfg, tmp_path / "out", seeds=[0, 1])
    per_seed = [r["test"]["top1"] for r in report["runs"]]
    assert [r["seed"] for r in report["runs"]] == [0, 1]
    assert report["test"]["top1"] == pytest.approx(mean_std(per_seed))
    assert report["test"]["top1"]["n"] == 2
    # Different seeds give different models (initialisation, order, augmentation).
    assert _no_speed(report["runs"][0]["history"]) != _no_speed(report["runs"][1]["history"])
    for s in (0, 1):
        assert (tmp_path / "out" / f"seed-{s}" / "model.safetensors").is_file()


def _no_speed(records: list[dict]) -> list[dict]:
    """Records without their timings (images/s), which differ from run to run."""
    return [{k: v for k, v in r.items() if not k.endswith("images_per_s")} for r in records]


class Interrupt(Exception):
    pass


def test_resume_continues_exactly(
    clf_models: dict[str, Path], toy_splits: Splits, tmp_path: Path
) -> None:
    spec = _clip(clf_models)
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-2, mixup=0.2)
    full = _run(toy_splits, spec, cfg, tmp_path / "full")

    def stop_after_two(epoch: int, record: dict) -> None:
        if epoch == 2:
            raise Interrupt

    out = tmp_path / "resumed"
    with pytest.raises(Interrupt):
        _run(toy_splits, spec, cfg, out, on_epoch_end=stop_after_two)
    assert not out.exists()  # nothing half-written
    assert (tmp_path / "resumed.parts" / "seed-0" / "last" / "state.json").is_file()
    resumed = _run(toy_splits, spec, cfg, out, resume=True)
    assert resumed["runs"][0]["resumed_from_epoch"] == 3
    assert _no_speed(resumed["runs"][0]["history"]) == _no_speed(full["runs"][0]["history"])
    assert _no_speed([resumed["runs"][0]["test"]]) == _no_speed([full["runs"][0]["test"]])
    a = load_classifier(tmp_path / "full" / "seed-0" / "model.safetensors").trainable_state()
    b = load_classifier(out / "seed-0" / "model.safetensors").trainable_state()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "resumed.parts").exists()


def test_test_set_is_never_used_for_selection(
    clf_models: dict[str, Path], toy_splits: Splits, tmp_path: Path, monkeypatch
) -> None:
    """Scramble TEST's labels: selection, VAL metrics and the model stay identical; only the
    TEST score moves. And TEST is evaluated exactly once per seed, after every VAL pass."""
    calls: list[str] = []

    def spy(real_evaluate):
        def wrapped(model, ds, **kw):
            calls.append("test" if ds.source == toy_splits.test.source else "val")
            return real_evaluate(model, ds, **kw)

        return wrapped

    monkeypatch.setattr(train_module, "evaluate", spy(train_module.evaluate))
    monkeypatch.setattr(run_module, "evaluate", spy(run_module.evaluate))
    spec = _clip(clf_models)
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-2)
    honest = _run(toy_splits, spec, cfg, tmp_path / "a")
    assert calls == ["val", "val", "val", "test"]

    test = toy_splits.test
    # Rotate labels by one class: every TEST label is now wrong.
    k = len(test.class_names)
    scrambled = replace(test, samples=[replace(s, label=(s.label + 1) % k) for s in test.samples])
    calls.clear()
    other = _run(replace(toy_splits, test=scrambled), spec, cfg, tmp_path / "b")
    assert calls == ["val", "val", "val", "test"]
    ra, rb = honest["runs"][0], other["runs"][0]
    assert ra["selected_epoch"] == rb["selected_epoch"]
    assert _no_speed(ra["history"]) == _no_speed(rb["history"])
    assert _no_speed([ra["val"]]) == _no_speed([rb["val"]])
    assert ra["test"]["top1"] != rb["test"]["top1"]
    a = load_classifier(tmp_path / "a" / "seed-0" / "model.safetensors").trainable_state()
    b = load_classifier(tmp_path / "b" / "seed-0" / "model.safetensors").trainable_state()
    assert all(torch.equal(a[x], b[x]) for x in a)


def test_mixed_real_and_synthetic(
    clf_models: dict[str, Path], toy_splits: Splits, tmp_path: Path
) -> None:
    """--real with weight 1 ignores TRAIN's loss; the run differs from weight 0."""
    spec = ModelSpec(backbone=f"timm:local-dir:{clf_models['timm']}", mode="head", resolution=32)
    mixed = replace(toy_splits, real=toy_splits.val)
    h = {}
    for w in (0.0, 1.0):
        cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-2, real_weight=w)
        h[w] = _run(mixed, spec, cfg, tmp_path / f"w{w}")["runs"][0]["history"][0]["train_loss"]
    assert h[0.0] != h[1.0]


class _Broken(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int):
        from geosynth.errors import GeosynthError

        raise GeosynthError("x/broken.png: cannot read image (truncated)")


def test_worker_errors_keep_their_one_line() -> None:
    from geosynth.classify.evaluation import loader, unwrap_worker_errors
    from geosynth.errors import GeosynthError

    dl = loader(_Broken(), batch_size=2, workers=1)
    with pytest.raises(GeosynthError) as info:
        list(unwrap_worker_errors(dl))
    assert str(info.value) == "x/broken.png: cannot read image (truncated)"
