"""`embed` under `torchrun` with two gloo processes writes the same file, byte for byte, as one
process, for a dataset and for webdataset shards; a rank killed mid-job resumes its own parts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import geosynth
from geosynth.toy.data import make_toy_dataset, make_toy_shards
from geosynth.toy.models import make_toy_dinov2

SRC = Path(geosynth.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("embed-ranks")
    return {
        "model": make_toy_dinov2(root / "dinov2"),
        # 5 classes x 3 images: with --batch-size 2 --part-size 3, parts of 4 rows (4, 4, 4, 3),
        # two per rank; the last batch of the last part holds one image.
        "dataset": make_toy_dataset(root / "data", per_class=3, seed=1),
        # three shards: rank 0 embeds two of them (one per data-loader worker), rank 1 one.
        "shards": make_toy_shards(root / "shards", n_shards=3, per_shard=3, corrupt=[(1, 0)]),
    }


def _run(
    ranks: int, *args: str | Path, fault: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``geosynth ARGS`` in one fresh process, or under torchrun with ``ranks`` gloo processes.
    Both use one thread per process: BLAS results may change with the thread count."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    env.pop("GEOSYNTH_FAULT_MODE", None)
    env.pop("GEOSYNTH_FAULT", None)
    if fault:
        env["GEOSYNTH_FAULT"] = fault
    cmd = [sys.executable]
    if ranks > 1:
        cmd += ["-m", "torch.distributed.run", "--nproc_per_node", str(ranks)]
    cmd += ["-m", "geosynth", *map(str, args), "--device", "cpu"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _run_killed(*args: str | Path, fault: str) -> list[int]:
    """Two ranks started as torchrun would (RANK, WORLD_SIZE, MASTER_ADDR/PORT), each killed at
    ``fault`` by itself. Without torchrun's agent, which tears every rank down as soon as one
    dies, both surely reach the fault; returns their exit codes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    env.pop("GEOSYNTH_FAULT_MODE", None)
    env.update(GEOSYNTH_FAULT=fault, WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cmd = [sys.executable, "-m", "geosynth", *map(str, args), "--device", "cpu"]
    procs = [
        subprocess.Popen(
            cmd,
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for r in range(2)
    ]
    return [p.wait(timeout=300) for p in procs]


@pytest.fixture
def one_process(cli, monkeypatch: pytest.MonkeyPatch):
    """``one_process(*args)``: ``geosynth ARGS`` in this process as a single-process reference,
    on one thread like the ranks, with ``sys.argv`` as the shell would set it (it is recorded
    in the file's metadata)."""
    threads = torch.get_num_threads()

    def run(*args: str | Path) -> None:
        argv = [str(a) for a in (*args, "--device", "cpu")]
        monkeypatch.setattr(sys, "argv", ["geosynth", *argv])
        torch.set_num_threads(1)
        try:
            res = cli(*argv)
        finally:
            torch.set_num_threads(threads)
        assert res.code == 0, res.err

    return run


def _tensors_and_metadata(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())  # noqa: SIM118


def _assert_same_file(one: Path, two: Path) -> None:
    t1, m1 = _tensors_and_metadata(one)
    t2, m2 = _tensors_and_metadata(two)
    assert t1.keys() == t2.keys()
    for key in t1:
        assert torch.equal(t1[key], t2[key]), key
    assert m1 == m2
    assert one.read_bytes() == two.read_bytes()


def _dataset_args(inputs: dict[str, Path]) -> list[str | Path]:
    args = ["embed", inputs["dataset"], "--features", inputs["model"], "--batch-size", "2"]
    return [*args, "--part-size", "3", "--workers", "1"]


def _shard_args(inputs: dict[str, Path]) -> list[str | Path]:
    args = ["embed", inputs["shards"], "--features", inputs["model"], "--batch-size", "2"]
    return [*args, "--workers", "2"]


@pytest.mark.timeout(600)
def test_dataset_two_ranks_equal_one_process(inputs, one_process, tmp_path: Path) -> None:
    args = _dataset_args(inputs)
    one = tmp_path / "one" / "feats.safetensors"
    one_process(*args, "--out", one)
    two = tmp_path / "two" / "feats.safetensors"
    done = _run(2, *args, "--out", two, "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count('"samples"') == 1  # only rank 0 reports
    _assert_same_file(one, two)
    labels = _tensors_and_metadata(two)[0]["labels"]
    assert labels.tolist() == sorted(labels.tolist()) and len(set(labels.tolist())) == 5
    assert not two.with_name(two.name + ".parts").exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dataset_ranks_killed_resume_their_own_parts(inputs, one_process, tmp_path) -> None:
    args = _dataset_args(inputs)
    one = tmp_path / "one" / "feats.safetensors"
    one_process(*args, "--out", one)
    # Both ranks die (as by kill -9) right after their first part; each keeps that part and,
    # relaunched, embeds only its second one.
    resumed = tmp_path / "resumed" / "feats.safetensors"
    assert _run_killed(*args, "--out", resumed, fault="embed:part@1") == [137, 137]
    assert not resumed.exists()
    parts = resumed.with_name(resumed.name + ".parts")
    assert sorted(p.name for p in parts.glob("rows-*.safetensors")) == [
        "rows-0000000000-0000000004.safetensors",
        "rows-0000000008-0000000012.safetensors",
    ]
    done = _run(2, *args, "--out", resumed)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rank 0 of 2: resuming: 1 of 2 parts" in done.stderr
    assert "rank 1 of 2: resuming: 1 of 2 parts" in done.stderr
    _assert_same_file(one, resumed)
    assert not parts.exists()


@pytest.mark.timeout(600)
def test_shards_two_ranks_equal_one_process(inputs, one_process, tmp_path: Path) -> None:
    args = _shard_args(inputs)
    one = tmp_path / "one" / "feats.safetensors"
    one_process(*args, "--out", one)
    two = tmp_path / "two" / "feats.safetensors"
    done = _run(2, *args, "--out", two)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_same_file(one, two)
    meta = _tensors_and_metadata(two)[1]
    assert meta["samples"] == "8" and meta["corrupt_skipped"] == "1"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_shard_ranks_killed_resume_in_one_process(inputs, one_process, tmp_path) -> None:
    args = _shard_args(inputs)
    one = tmp_path / "one" / "feats.safetensors"
    one_process(*args, "--out", one)
    # Parts do not depend on the number of ranks: a 2-rank job killed after each rank's first
    # shard finishes in one process.
    resumed = tmp_path / "resumed" / "feats.safetensors"
    assert _run_killed(*args, "--out", resumed, fault="embed:shard@1") == [137, 137]
    assert not resumed.exists()
    done = _run(1, *args, "--out", resumed)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming: 2 of 3 parts" in done.stderr
    _assert_same_file(one, resumed)


def test_rarity_embeds_its_inputs_on_every_rank(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`torchrun -m geosynth rarity DATASET SHARDS`: the ranks embed the shard directory
    together (rank 0 two shards, rank 1 one) into one cache entry, equal to one process's, and
    the report equals the single-process one."""
    import json

    from geosynth.artifacts import load_embeddings

    args = ["rarity", inputs["dataset"], inputs["shards"], "--features", inputs["model"]]
    args += ["--batch-size", "2", "--k", "2", "--rarity-k", "2", "--json"]
    reports, entries = [], []
    for ranks in (1, 2):
        cache = tmp_path / f"cache-{ranks}"
        monkeypatch.setenv("GEOSYNTH_CACHE", str(cache))  # _run passes the environment on
        done = _run(ranks, *args, "--out", tmp_path / f"{ranks}.json")
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count('"n_reference"') == 1  # one report, from rank 0
        reports.append(json.loads((tmp_path / f"{ranks}.json").read_text()))
        files = sorted((cache / "embeddings").glob("*.safetensors"))
        assert len(files) == 2 and not list((cache / "embeddings").glob("*.parts"))
        entries.append([load_embeddings(f) for f in files])
        # Each rank embeds (its block), not rank 0 alone with the others waiting on its cache.
        assert done.stderr.count(f"{inputs['shards']} with") == ranks, done.stderr[-3000:]
    for report in reports:
        report.pop("pairs_rechecked_float64")  # a diagnostic: depends on block boundaries
    assert reports[0] == reports[1]
    for a, b in zip(*entries, strict=True):
        assert torch.equal(a.embeddings, b.embeddings) and a.ids == b.ids
