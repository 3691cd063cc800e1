"""train-clf: no pickle anywhere (a crafted checkpoint runs nothing and exits 2 with one line);
a kill at any stage boundary followed by --resume gives the same files."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from geosynth.cli.main import main
from geosynth.toy import make_toy_dataset, make_toy_timm
from tests.reliability.conftest import leftovers, tree_bytes

#: Report fields that measure speed or tell the run's history, not its results.
HISTORY_KEYS = {"train_images_per_s", "val_images_per_s", "images_per_s", "resumed_from_epoch"}


@pytest.fixture(scope="module")
def args(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("rel-clf")
    data = {
        split: make_toy_dataset(root / split, per_class=4, seed=seed, classes=3)
        for split, seed in (("train", 1), ("val", 2), ("test", 3))
    }
    timm = make_toy_timm(root / "timm")
    return [
        "train-clf",
        *(str(data["train"]), "--val", str(data["val"]), "--test", str(data["test"])),
        *("--backbone", f"timm:local-dir:{timm}", "--resolution", "32", "--head-only"),
        *("--epochs", "2", "--seeds", "0,1", "--workers", "0", "--batch-size", "8"),
    ]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared machine: see tests/classify/conftest.py
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(args, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rel-clf-ref") / "clf"
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the tests: another thread count sums in another order
    try:
        assert main([*args, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(before)
    return out


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in HISTORY_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _same_output(a: Path, b: Path) -> None:
    """Model files and plots byte for byte; the report equal up to speed and resume history."""
    ta, tb = tree_bytes(a), tree_bytes(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        if name != "report.json":
            assert ta[name] == tb[name], name
    assert _strip(json.loads(ta["report.json"])) == _strip(json.loads(tb["report.json"]))


@pytest.mark.parametrize(
    "stage", ["train-clf:epoch@1", "train-clf:epoch@3", "train-clf:seed@1", "train-clf:output"]
)
def test_kill_at_any_stage_then_resume(stage, args, reference, killed, cli, tmp_path) -> None:
    out = tmp_path / "clf"
    killed(stage, *args, "--out", out)
    res = cli(*args, "--out", out, "--resume")
    assert res.code == 0, res.err
    _same_output(out, reference)
    assert leftovers(tmp_path) == [] and not (tmp_path / "clf.parts").exists()


class _Payload:
    """Unpickling this runs a shell command (what a crafted checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_checkpoint_runs_nothing(args, cli, tmp_path, monkeypatch) -> None:
    """Defect 1: --resume unpickled the checkpoint with weights_only=False (code execution)."""
    out = tmp_path / "clf"

    def interrupt(*_a, **_k):  # Ctrl-C when TEST is about to be evaluated: training state kept
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr("geosynth.classify.run.evaluate", interrupt)
        assert cli(*args, "--out", out).code == 130
    marker = tmp_path / "pwned"
    seed_dir = tmp_path / "clf.parts" / "seed-0"
    crafted = {"optimizer": _Payload(marker), "schedule": {}}
    torch.save(crafted, seed_dir / "last.pt")  # where older versions kept the checkpoint
    for target in seed_dir.glob("last/optim.pt"):
        torch.save(crafted, target)
    (seed_dir / "result.pt").write_bytes(pickle.dumps(_Payload(marker)))
    res = cli(*args, "--out", out, "--resume")
    assert not marker.exists(), "the crafted checkpoint ran code"
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1, res.err
    assert "optim.pt" in res.err and "refused" in res.err
    assert not out.exists()
