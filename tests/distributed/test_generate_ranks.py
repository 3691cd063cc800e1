"""`generate` under `torchrun` with two processes (each takes its shard from RANK / WORLD_SIZE, as
under `accelerate launch`) writes the output folder of a single-process run: the same image bytes,
the same metadata, the same contact sheets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import geosynth
from geosynth.diffusion.sampling.generate import previews_dir
from geosynth.distributed import local_device

SRC = Path(geosynth.__file__).resolve().parents[1]


def _files(out: Path) -> dict[str, bytes]:
    """Every file of a generate output but provenance.json (it records times and the argv)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "provenance.json"
    }


@pytest.mark.timeout(600)
def test_two_processes_write_the_single_process_output(cli, toy_models, tmp_path: Path) -> None:
    # Batch size 1: each image is computed alone, as in one process (with larger batches the
    # shards group images into other batches, which docs/generation.md allows one grey level).
    args = ["generate", "--model", toy_models["sd"], "--classes", "water,desert,forest"]
    args += ["--per-class", "3", "--steps", "4", "--batch-size", "1", "--device", "cpu"]
    one = tmp_path / "one"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each rank: BLAS results may depend on the thread count
    try:
        res = cli(*args, "--out", one)
    finally:
        torch.set_num_threads(threads)
    assert res.code == 0, res.err
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m"]
    cmd += ["geosynth", *map(str, args), "--out", str(two)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    env["COLUMNS"] = "1000"  # messages unwrapped
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-2000:]
    # One shard per rank (jobs 0, 2, ..., 8 and 1, 3, ..., 7); the rank that finishes last
    # finalizes the folder.
    text = " ".join(done.stderr.split())  # messages are wrapped at the terminal width
    said = re.findall(r"generated (\d) new images, \d+ in \S+ \(([^)]*)\)", text)
    assert sorted(n for n, _ in said) == ["4", "5"], done.stderr[-2000:]
    assert "complete" in [state for _, state in said]
    files = _files(two)
    assert files == _files(one)
    assert sum(name.endswith(".png") for name in files) == 9
    assert _files(previews_dir(two)) == _files(previews_dir(one))  # the contact sheets
    assert len(_files(previews_dir(two))) == 3
    spec = [json.loads((o / "provenance.json").read_text())["extra"]["spec"] for o in (one, two)]
    assert spec[0] == spec[1]
    assert not (two / ".parts").exists()


def test_each_rank_gets_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun, `cuda` means the GPU of LOCAL_RANK (generate and embed used to put every
    rank on GPU 0); an explicit index is kept."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert local_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert local_device(torch.device("cuda", 0)) == torch.device("cuda", 0)
    assert local_device(torch.device("cpu")) == torch.device("cpu")
