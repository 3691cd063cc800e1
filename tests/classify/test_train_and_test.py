"""``train_and_test``: the train-clf command as one library call (splits by path or dataset,
class alignment by name, resume policy), with the command's results for the same settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from geosynth.classify import ModelSpec, TrainConfig, load_splits, train_and_test
from geosynth.data import load_dataset
from geosynth.errors import GeosynthError


def _timm(clf_models: dict[str, Path]) -> ModelSpec:
    return ModelSpec(backbone=f"timm:local-dir:{clf_models['timm']}", mode="head", resolution=32)


def _renamed(src: Path, dst: Path, old: str, new: str) -> Path:
    """A copy of an image folder with one class folder renamed."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.json", "*.jsonl"))
    (dst / old).rename(dst / new)
    return dst


def test_same_results_as_the_command_with_a_class_subset_and_a_class_map(
    cli, clf_models, toy_splits_dirs, tmp_path
) -> None:
    train = load_dataset(toy_splits_dirs["train"])
    keep = train.class_names[:3]
    test = _renamed(toy_splits_dirs["test"], tmp_path / "test", keep[0], "Lake")
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-2, workers=0)
    report = train_and_test(
        toy_splits_dirs["train"],
        toy_splits_dirs["val"],
        test,
        tmp_path / "lib",
        spec=_timm(clf_models),
        config=cfg,
        classes=keep,
        class_map={"Lake": keep[0]},
    )
    assert report["class_names"] == keep
    assert report["data"]["test"]["images"] == 3 * 8
    assert report["runs"][0]["test"]["per_class"][keep[0]]["support"] == 8
    res = cli(
        "train-clf",
        toy_splits_dirs["train"],
        "--val",
        toy_splits_dirs["val"],
        "--test",
        test,
        "--classes",
        ",".join(keep),
        "--class-map",
        _write(tmp_path / "map.json", {"Lake": keep[0]}),
        "--backbone",
        f"timm:local-dir:{clf_models['timm']}",
        "--resolution",
        "32",
        "--head-only",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--lr",
        "1e-2",
        "--workers",
        "0",
        "--out",
        tmp_path / "cli",
        "--json",
    )
    assert res.code == 0, res.err
    from_cli = json.loads(res.out)
    report = json.loads(json.dumps(report))  # as JSON (tuples become lists)
    for key in ("class_names", "test", "val", "model", "config"):
        assert from_cli[key] == report[key], key
    assert json.loads((tmp_path / "lib" / "report.json").read_text())["test"] == report["test"]


def _write(path: Path, obj: dict) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_splits_from_datasets_are_aligned_by_name(toy_splits_dirs, tmp_path) -> None:
    val = load_dataset(toy_splits_dirs["val"])
    # A split whose classes sort differently is relabelled into TRAIN's order.
    reordered = val.select_classes(list(reversed(val.class_names)))
    splits = load_splits(toy_splits_dirs["train"], reordered, toy_splits_dirs["test"])
    assert splits.val.class_names == splits.train.class_names
    for s_old, s_new in zip(reordered.samples, splits.val.samples, strict=True):
        assert splits.val.class_names[s_new.label] == reordered.class_names[s_old.label]
    odd = _renamed(toy_splits_dirs["test"], tmp_path / "odd", val.class_names[0], "Lake")
    with pytest.raises(GeosynthError, match="Lake"):
        load_splits(toy_splits_dirs["train"], toy_splits_dirs["val"], odd)


def test_resume_policy_and_errors_in_library_terms(clf_models, toy_splits_dirs, tmp_path) -> None:
    d = toy_splits_dirs
    spec, out = _timm(clf_models), tmp_path / "o"
    cfg = TrainConfig(epochs=1, batch_size=16, workers=0)
    with pytest.raises(GeosynthError, match=r"^zero_shot=True: needs backbone='clip'"):
        train_and_test(d["train"], d["val"], d["test"], out, spec=spec, zero_shot=True)
    with pytest.raises(GeosynthError, match=r"^seeds=\[1, 1\]"):
        train_and_test(d["train"], d["val"], d["test"], out, spec=spec, seeds=[1, 1])
    (tmp_path / "o.parts").mkdir()  # an interrupted run's state
    with pytest.raises(GeosynthError, match=r"pass resume=True"):
        train_and_test(d["train"], d["val"], d["test"], out, spec=spec, config=cfg)
    report = train_and_test(
        d["train"], d["val"], d["test"], out, spec=spec, config=cfg, resume=True
    )
    assert report["runs"][0]["seed"] == 0 and (out / "seed-0" / "model.safetensors").is_file()
    assert not (tmp_path / "o.parts").exists()


def test_report_to_tensorboard_logs_every_epoch_of_every_seed(
    cli, clf_models, toy_splits_dirs, tmp_path
) -> None:
    """train-clf --report-to: each seed's epoch records, as in report.json, beside the output."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "clf"
    res = cli(
        "train-clf", toy_splits_dirs["train"], "--val", toy_splits_dirs["val"],
        "--test", toy_splits_dirs["test"], "--backbone", f"timm:local-dir:{clf_models['timm']}",
        "--head-only", "--resolution", "32", "--epochs", "2", "--batch-size", "16",
        "--seeds", "0,1", "--report-to", "tensorboard", "--out", out,
    )  # fmt: skip
    assert res.code == 0, res.err
    events = list((tmp_path / "clf.logs").rglob("events.out.tfevents.*"))
    assert events and not any(p.name.startswith("events") for p in out.rglob("*"))
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    report = json.loads((out / "report.json").read_text())
    for run in report["runs"]:
        logged = acc.Scalars(f"seed-{run['seed']}/val_top1")
        assert [e.step for e in logged] == [1, 2]
        want = [h["val_top1"] for h in run["history"]]
        assert [e.value for e in logged] == pytest.approx(want, rel=1e-6)
    res = cli(
        "train-clf", toy_splits_dirs["train"], "--val", toy_splits_dirs["val"],
        "--test", toy_splits_dirs["test"], "--report-to", "mlflowz", "--out", tmp_path / "x",
    )  # fmt: skip
    assert res.code == 2 and "--report-to mlflowz" in res.err and not (tmp_path / "x").exists()
