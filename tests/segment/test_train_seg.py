"""``train-seg`` on real Dubai chips: mIoU and per-class IoU on a TEST split of another tile for
three seeds, the reported mIoU equal to torchmetrics' on the saved models' predictions, the
honesty of selection (TEST never changes training), resume, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from geosynth.errors import GeosynthError

#: A tiny timm encoder without pretrained weights: the tests check the pipeline, not accuracy.
TINY = ["--encoder", "test_efficientnet", "--pretrained", "none", "--decoder-channels",
        "16,16,8,8,8", "--batch-size", "8"]  # fmt: skip
TINY_SPEC = {"encoder": "test_efficientnet", "pretrained": "none", "decoder_channels": [16, 16, 8, 8, 8]}  # fmt: skip


def _torchmetrics_miou(model_file: Path, test: Path, report_miou: float) -> None:
    """Re-evaluate TEST with the saved model; torchmetrics on the same predictions."""
    from torchmetrics.classification import MulticlassJaccardIndex

    from geosynth.data import load_dataset
    from geosynth.segment import evaluate_segmenter, load_segmenter
    from geosynth.segment.train import tensors

    model = load_segmenter(model_file)
    ds = load_dataset(test)
    preds, targets = [], []
    again = evaluate_segmenter(
        model, tensors(model, ds, np.arange(6), train=False), batch_size=4,
        on_batch=lambda p, t: (preds.append(p), targets.append(t)),
    )  # fmt: skip
    metric = MulticlassJaccardIndex(num_classes=6, ignore_index=-1, average="macro")
    tm = float(metric(torch.stack(preds), torch.stack(targets)))
    assert again["miou"] == pytest.approx(report_miou, abs=1e-6)
    assert tm == pytest.approx(report_miou, abs=1e-6)


def test_three_seeds_on_real_chips_report_miou_that_torchmetrics_confirms(
    cli, dubai_chips, tmp_path
) -> None:
    out = tmp_path / "seg"
    r = cli("train-seg", dubai_chips["train"], "--val", dubai_chips["val"], "--test",
            dubai_chips["test"], "--seeds", "0,1,2", "--epochs", "1", *TINY, "--out", out)  # fmt: skip
    assert r.code == 0, r.err
    assert "TEST mIoU" in r.out and "mean ± std" in r.out and "Vegetation" in r.out  # the tables
    report = json.loads((out / "report.json").read_text())
    assert report["seeds"] == [0, 1, 2] and len(report["runs"]) == 3
    assert report["class_names"][:2] == ["Building", "Land (unpaved area)"]
    sources = {role: Path(d["source"]).name for role, d in report["data"].items()}
    assert sources == {"train": "train", "val": "val", "test": "test"}  # three tiles
    miou = report["test"]["miou"]
    runs = [run["test"]["miou"] for run in report["runs"]]
    assert miou["n"] == 3 and miou["mean"] == pytest.approx(np.mean(runs))
    assert miou["std"] == pytest.approx(np.std(runs, ddof=1))
    assert set(report["test"]["per_class"]) == set(report["class_names"])
    assert (out / "confusion.png").is_file()
    for run in report["runs"]:
        assert run["selected_by"] == "val miou"
        assert (out / run["model_file"]).is_file()
        assert (out / f"seed-{run['seed']}" / "confusion.png").is_file()
    _torchmetrics_miou(out / report["runs"][1]["model_file"], dubai_chips["test"], runs[1])


def _run(chips: dict[str, Path], out: Path, test: Path | None = None, **kw) -> dict:
    from geosynth import train_seg

    return train_seg(chips["train"], chips["val"], test or chips["test"], out, spec=TINY_SPEC,
                     config={"epochs": 2, "batch_size": 8}, seeds=[0], **kw)  # fmt: skip


def _weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "seed-0" / "model.safetensors"))


def _course(report: dict) -> list[dict]:
    """What training decided, without the timings."""
    keep = ("epoch", "train_loss", "val_miou", "val_loss", "lr")
    run = report["runs"][0]
    return [run["selected_epoch"], *({k: h[k] for k in keep} for h in run["history"])]


def test_test_split_never_changes_training_and_resume_is_exact(
    dubai_chips, tmp_path, monkeypatch
) -> None:
    from geosynth import faults

    real = dubai_chips["train"]  # mixed training: real_weight * CE(real) + (1 - w) * CE(TRAIN)
    a = _run(dubai_chips, tmp_path / "a", real=real)
    assert a["real_weight"] == 0.5 and "real" in a["data"]
    # TEST replaced by other chips: what training chose and learnt must not move
    b = _run(dubai_chips, tmp_path / "b", test=dubai_chips["val"], real=real)
    assert _course(a) == _course(b) and a["test"] != b["test"]
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # killed after epoch 1, resumed: the same run as the uninterrupted one
    monkeypatch.setenv(faults.ENV, "train-seg:epoch@1")
    monkeypatch.setenv(faults.MODE_ENV, "raise")
    faults.reset()
    with pytest.raises(faults.Killed):
        _run(dubai_chips, tmp_path / "c", real=real)
    monkeypatch.delenv(faults.ENV)
    with pytest.raises(GeosynthError, match="pass resume=True"):
        _run(dubai_chips, tmp_path / "c", real=real)
    c = _run(dubai_chips, tmp_path / "c", real=real, resume=True)
    assert c["runs"][0]["resumed_from_epoch"] == 2 and _course(c) == _course(a)
    wc = _weights(tmp_path / "c")
    assert all(torch.equal(wa[k], wc[k]) for k in wa)


def test_bad_input_is_one_line_and_writes_nothing(cli, dubai_chips, toy_data, tmp_path) -> None:
    other = tmp_path / "other"
    shutil.copytree(dubai_chips["val"], other)
    legend = json.loads((other / "legend.json").read_text())
    legend["classes"][0]["name"] = "Roof"
    (other / "legend.json").write_text(json.dumps(legend))
    odd = tmp_path / "odd"
    from geosynth import tile_scenes

    tile_scenes([dubai_chips["train"]], odd, 24, map_legend=dubai_chips["train"] / "legend.json")
    cases = [
        ([toy_data, "--val", dubai_chips["val"]], "not a segmentation dataset"),
        (
            [dubai_chips["train"], "--val", other],
            "its legend differs from TRAIN's (classes not in "
            "TRAIN: Roof; TRAIN classes it lacks: Building)",
        ),
        (
            [odd, "--val", dubai_chips["val"]],
            "images of 24x24 px: the model needs sides that are multiples of 32; give --resolution",
        ),
        (
            [dubai_chips["train"], "--val", dubai_chips["val"], "--resolution", "48"],
            "--resolution 48: must be a multiple of 32",
        ),
    ]
    for args, msg in cases:
        out = tmp_path / "out"
        r = cli("train-seg", *args, "--test", dubai_chips["test"], *TINY, "--epochs", "1",
                "--out", out)  # fmt: skip
        assert r.code == 2 and msg in r.err and len(r.err.strip().splitlines()) == 1, r.err
        assert not out.exists() and not (tmp_path / "out.parts").exists()
