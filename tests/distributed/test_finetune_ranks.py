"""`finetune` under `torchrun` with two gloo processes of batch b equals one process of batch b
with `--grad-accum 2` (docs/finetune.md): the same samples and random draws in every step, so
the same losses and LoRA weights up to float rounding."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import geosynth

SRC = Path(geosynth.__file__).resolve().parents[1]
TOL = 1e-5


def _weights(out: Path) -> dict[str, torch.Tensor]:
    files = sorted(out.rglob("*.safetensors"))
    assert files
    return {f"{f.relative_to(out)}:{k}": v for f in files for k, v in load_file(f).items()}


def _losses(out: Path) -> list[dict[str, float]]:
    with (out / "loss.csv").open() as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.timeout(600)
def test_two_ranks_equal_one_process_with_accumulation(cli, toy_models, toy_data, tmp_path):
    common = ["finetune", toy_data, "--model", toy_models["sd"], "--resolution", "32"]
    common += ["--max-steps", "3", "--lr", "1e-3", "--checkpoint-every", "1000"]
    args = [*common, "--batch-size", "2"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each rank
    try:
        res = cli(*args, "--grad-accum", "2", "--out", tmp_path / "accum")
        assert res.code == 0, res.err
        # Batch 4 in one process sees the same samples per step, with other random draws.
        res = cli(*common, "--batch-size", "4", "--out", tmp_path / "b4")
        assert res.code == 0, res.err
    finally:
        torch.set_num_threads(threads)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m"]
    cmd += ["geosynth", *map(str, args), "--out", str(tmp_path / "ranks")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-2000:]

    accum, ranks, b4 = (_weights(tmp_path / d) for d in ("accum", "ranks", "b4"))
    assert _max_diff(accum, ranks) <= TOL
    assert _max_diff(accum, b4) > 100 * TOL  # the comparison can tell other draws apart
    one, two = _losses(tmp_path / "accum"), _losses(tmp_path / "ranks")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2, 3]
    for a, b in zip(one, two, strict=True):
        assert a["epoch"] == b["epoch"] and a["lr"] == b["lr"]
        assert abs(a["loss"] - b["loss"]) <= TOL * max(1.0, abs(a["loss"]))
