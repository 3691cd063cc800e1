"""``geosynth filter``: a run killed by SIGKILL between its parts and rerun with ``--resume``
writes the same kept set and filter.jsonl, byte for byte, as an uninterrupted run; so do
``--workers 2`` (the per-image work in data-loader processes) and two torchrun ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from geosynth.artifacts import Provenance
from geosynth.data import load_dataset
from geosynth.data.writer import ImageFolderWriter
from geosynth.toy import make_toy_clip, make_toy_dataset
from tests.reliability.conftest import SRC, leftovers, tree_bytes

CLASSES = ["forest", "water", "urban"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Training shots and an 84-image 'generated' set (genuine toy images and flipped copies of
    the shots): with ``--part-size 64 --batch-size 8`` two parts, of 64 and 20 rows."""
    root = tmp_path_factory.mktemp("filter-reliability")
    shots = make_toy_dataset(root / "shots", per_class=4, seed=1, classes=CLASSES)
    genuine = load_dataset(make_toy_dataset(root / "gen", per_class=26, seed=7, classes=CLASSES))
    tds = load_dataset(shots)
    with ImageFolderWriter(root / "synth", CLASSES, Provenance.start("test")) as w:
        for i, lab in enumerate(genuine.labels):
            w.add(genuine.image(i), lab, image_id=f"genuine-{i}")
        for i in range(0, len(tds), 2):
            flipped = tds.image(i).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            w.add(flipped, tds.labels[i], image_id=f"copy-{i}")
    clip = make_toy_clip(root / "clip")
    return {"shots": shots, "synth": root / "synth", "clip": clip}


def _args(inputs: dict[str, Path]) -> list[str | Path]:
    return [
        "filter", inputs["synth"], "--train", inputs["shots"], "--classifier",
        f"clip:{inputs['clip']}", "--min-confidence", "0", "--per-class", "20",
        "--part-size", "64", "--batch-size", "8", "--device", "cpu",
    ]  # fmt: skip


def _env() -> dict[str, str]:
    """One thread, like the in-process runs (BLAS results may change with the thread count)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    for key in ("GEOSYNTH_FAULT", "GEOSYNTH_FAULT_MODE"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run in this process, on one thread."""
    from geosynth.cli.main import main

    out = tmp_path_factory.mktemp("filter-ref") / "kept"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([str(a) for a in (*_args(inputs), "--out", out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def _in_process(cli, *args: str | Path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return cli(*args)
    finally:
        torch.set_num_threads(threads)


def test_killed_by_sigkill_then_resumed_writes_the_same_bytes(inputs, reference, cli, tmp_path):
    out = tmp_path / "kept"
    cmd = [sys.executable, "-m", "geosynth", *map(str, _args(inputs)), "--out", str(out)]
    env = {**_env(), "GEOSYNTH_FAULT": "filter:part@1"}  # dies as kill -9 after the first part
    died = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert died.returncode == 137, died.stderr[-2000:]
    parts = out.with_name("kept.parts")
    assert not out.exists() and (parts / "plan.json").is_file()
    assert [p.name for p in parts.glob("rows-*.safetensors")] == [
        "rows-0000000000-0000000064.safetensors"
    ]
    again = cli(*_args(inputs), "--out", out)  # without --resume the kept scores are not reused
    assert again.code == 2 and "--resume" in again.err and len(again.err.strip().splitlines()) == 1
    res = _in_process(cli, *_args(inputs), "--out", out, "--resume")
    assert res.code == 0, res.err
    assert "resuming: 1 of 2 parts already scored" in res.err
    assert tree_bytes(out) == tree_bytes(reference)
    assert not parts.exists() and leftovers(tmp_path) == []
    records = (out / "filter.jsonl").read_text().splitlines()
    assert len(records) == 84 and '"reason": "copy"' in "".join(records)


def test_resume_with_other_settings_is_refused(inputs, cli, tmp_path, killed):
    out = tmp_path / "kept"
    args = ["filter", inputs["synth"], "--train", inputs["shots"], "--part-size", "64"]
    killed("filter:part@1", *args, "--batch-size", "8", "--out", out)
    res = cli(*args, "--batch-size", "16", "--out", out, "--resume")
    assert res.code == 2 and "other inputs or settings" in res.err, res.err
    assert len(res.err.strip().splitlines()) == 1 and not out.exists()


def test_killed_after_writing_its_output_resumes_to_the_same_bytes(inputs, cli, tmp_path, killed):
    """Between writing OUT and removing OUT.parts/: the resume writes OUT again from the kept
    scores and removes the folder."""
    args = ["filter", inputs["synth"], "--train", inputs["shots"], "--part-size", "64"]
    assert cli(*args, "--out", tmp_path / "ref").code == 0
    out = tmp_path / "kept"
    killed("filter:output", *args, "--out", out)
    assert out.is_dir() and out.with_name("kept.parts").is_dir()
    res = cli(*args, "--out", out, "--resume")
    assert res.code == 0, res.err
    assert "resuming: 2 of 2 parts already scored" in res.err
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")
    assert not out.with_name("kept.parts").exists() and leftovers(tmp_path) == []


def test_workers_give_the_output_of_one_process(inputs, reference, cli, tmp_path):
    out = tmp_path / "kept"
    res = _in_process(cli, *_args(inputs), "--workers", "2", "--out", out)
    assert res.code == 0, res.err
    assert tree_bytes(out) == tree_bytes(reference)


@pytest.mark.slow  # two torchrun processes importing torch and open_clip
@pytest.mark.timeout(600)
def test_two_torchrun_ranks_give_the_output_of_one_process(inputs, reference, tmp_path):
    out = tmp_path / "kept"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["-m", "geosynth", *map(str, _args(inputs)), "--json", "--out", str(out)]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["out"] == str(out)  # one report: only rank 0 prints
    assert tree_bytes(out) == tree_bytes(reference)
    assert not out.with_name("kept.parts").exists()
