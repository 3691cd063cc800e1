"""finetune: an interrupted run's OUT.parts is never deleted unasked; a kill at any stage
boundary followed by --resume gives the same files as an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest

from geosynth.cli.main import main
from tests.reliability.conftest import leftovers, run_subprocess, tree_bytes

FAST = ["--resolution", "32", "--batch-size", "4", "--max-steps", "4", "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def args(toy_data, toy_models) -> list[str]:
    return ["finetune", str(toy_data), "--model", str(toy_models["sd"]), *FAST]


@pytest.fixture(scope="module")
def reference(args, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rel-ft") / "lora"
    assert main([*args, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    "stage", ["finetune:checkpoint", "finetune:result", "finetune:staged", "finetune:output"]
)
def test_kill_at_any_stage_then_resume_gives_the_same_bytes(
    stage, args, reference, killed, cli, tmp_path
) -> None:
    out = tmp_path / "lora"
    killed(stage, *args, "--out", out)
    res = cli(*args, "--out", out, "--resume")
    assert res.code == 0, res.err
    assert tree_bytes(out) == tree_bytes(reference)
    assert leftovers(tmp_path) == [] and not (tmp_path / "lora.parts").exists()


def test_real_kill_after_a_checkpoint_then_resume(args, tmp_path) -> None:
    # The uninterrupted reference runs in a fresh process too: the pytest process's thread
    # count may have been changed by other tests, and BLAS results depend on it.
    reference = tmp_path / "reference"
    assert run_subprocess(*args, "--out", reference).returncode == 0
    out = tmp_path / "lora"
    died = run_subprocess(*args, "--out", out, fault="finetune:checkpoint")
    assert died.returncode == 137, died.stderr
    assert (tmp_path / "lora.parts" / "checkpoints").is_dir() and not out.exists()
    done = run_subprocess(*args, "--out", out, "--resume")
    assert done.returncode == 0, done.stderr
    assert tree_bytes(out) == tree_bytes(reference)


def test_existing_parts_are_refused_not_deleted(args, cli, tmp_path, monkeypatch) -> None:
    """Defect 9: finetune without --resume silently deleted an existing OUT.parts."""
    out = tmp_path / "lora"

    def interrupt(*_a, **_k):  # Ctrl-C while the result is written: checkpoints are kept
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr("geosynth.diffusion.training.finetune.write_loss", interrupt)
        assert cli(*args, "--out", out).code == 130
    parts = tmp_path / "lora.parts"
    before = tree_bytes(parts)
    res = cli(*args, "--out", out)
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1, res.err
    assert "--resume" in res.err and "--overwrite" in res.err
    assert tree_bytes(parts) == before
    res = cli(*args, "--out", out, "--overwrite")  # asked: start over
    assert res.code == 0, res.err
    assert not parts.exists() and out.is_dir()


def test_bad_setup_leaves_nothing_and_the_corrected_command_runs(args, cli, tmp_path) -> None:
    out = tmp_path / "lora"
    for bad in (
        ["--seed", "-1"],
        ["--prompt-template", "a {x} photo of {}"],
        ["--resolution", "30"],
    ):
        res = cli(*args, "--out", out, *bad)
        assert res.code == 2 and len(res.err.strip().splitlines()) == 1, (bad, res.err)
        assert sorted(p.name for p in tmp_path.iterdir()) == [], bad
    res = cli(*args, "--out", out, "--max-steps", "1")
    assert res.code == 0, res.err
