"""Exact PRDC + rarity split over two gloo processes equals the single-process result exactly."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from geosynth.distributed import gather_rows, row_range
from geosynth.metrics.manifold import manifold_metrics


def _data(seed: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(301, 16)).astype(np.float32)  # odd: ranks own 151 and 150 rows
    fake = (rng.normal(size=(97, 16)) * 1.2 + 0.3).astype(np.float32)
    real[10:13] = real[5]  # duplicates: zero distances and tied radii
    fake[20:22] = fake[3]
    fake[30] = real[7]
    labels = torch.from_numpy(rng.integers(0, 3, size=97))
    return torch.from_numpy(real), torch.from_numpy(fake), labels


def _result_tensors(res) -> dict[str, torch.Tensor]:
    return {
        "counts": res.ball_counts,
        "rarity": res.rarity,
        "covered": res.covered.to(torch.uint8),
        "recalled": res.recalled.to(torch.uint8),
        "covered_c": res.covered_by_class.to(torch.uint8),
        "recalled_c": res.recalled_by_class.to(torch.uint8),
    }


def _worker(rank: int, size: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        torch.set_num_threads(1)
        real, fake, labels = _data()
        # Small blocks, so each rank runs several blocks and the split falls inside one.
        res = manifold_metrics(
            real,
            fake,
            k=5,
            rarity_k=3,
            target_labels=labels,
            num_classes=3,
            block_ref=64,
            block_tgt=32,
        )
        if rank == 0:
            save_file(_result_tensors(res), out)
    finally:
        dist.destroy_process_group()


def test_row_ranges_cover_every_row_once() -> None:
    for n in (0, 1, 5, 301):
        for size in (1, 2, 3, 7):
            ranges = [row_range(n, r, size) for r in range(size)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
            lengths = [b - a for a, b in ranges]
            assert max(lengths) - min(lengths) <= 1


def test_single_process_helpers_are_no_ops() -> None:
    t = torch.arange(5)
    assert gather_rows(t, 5) is t
    assert row_range(5) == (0, 5)


@pytest.mark.timeout(300)
def test_two_gloo_ranks_equal_one_process(tmp_path: Path) -> None:
    real, fake, labels = _data()
    single = manifold_metrics(real, fake, k=5, rarity_k=3, target_labels=labels, num_classes=3)
    out = tmp_path / "ranks.safetensors"
    init = f"file://{tmp_path / 'rendezvous'}"
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_worker, args=(2, init, str(out)), nprocs=2, join=True)
    split = load_file(out)
    for key, value in _result_tensors(single).items():
        assert torch.equal(split[key], value), key
    assert single.summary()["coverage"] > 0  # the data exercises every metric


def test_rarity_command_under_torchrun_equals_one_process(tmp_path: Path, cli) -> None:
    """`torchrun --nproc_per_node 2 -m geosynth rarity ...`: one report, from rank 0, equal to
    the single-process report."""
    import json
    import subprocess
    import sys

    from geosynth.artifacts import Embeddings, Provenance, save_embeddings

    real, fake, labels = _data()
    prov = Provenance.start("test")
    save_embeddings(tmp_path / "ref.safetensors", Embeddings(real), provenance=prov)
    tgt = Embeddings(fake, labels, ["a", "b", "c"])
    save_embeddings(tmp_path / "tgt.safetensors", tgt, provenance=prov)
    args = ["rarity", tmp_path / "tgt.safetensors", tmp_path / "ref.safetensors", "--by-class"]
    res = cli(*args, "--device", "cpu", "--out", tmp_path / "one.json")
    assert res.code == 0, res.err
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m"]
    cmd += ["geosynth", *map(str, args), "--device", "cpu", "--out", str(tmp_path / "two.json")]
    cmd += ["--json"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count('"n_reference"') == 1  # only rank 0 reports
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    for report in (one, two):
        report.pop("pairs_rechecked_float64")  # a diagnostic: depends on block boundaries
    assert one == two
