"""A non-finite loss stops finetune (exit 2, one line naming the step) before the weights take it;
the checkpoints of the finite steps are kept, and a run that diverged before its first checkpoint
leaves nothing. ``--resume`` names each setting that differs and says the step it continues from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import geosynth.diffusion.training.trainer as trainer_module

FAST = ["--resolution", "32", "--batch-size", "4", "--max-steps", "4", "--classes", "water"]


def _one_error(err: str) -> str:
    """The one error line, last on stderr (progress lines may precede it in a slow run)."""
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), err
    assert sum(line.startswith("error") for line in lines) == 1, err
    return lines[-1]


def _nan_noise_from(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """The training noise turns NaN from the ``call``-th micro-batch on (1-based)."""
    plain = trainer_module.training_noise
    calls = {"n": 0}

    def noise(latents, std, gen):
        calls["n"] += 1
        out = plain(latents, std, gen)
        return out * float("nan") if calls["n"] >= call else out

    monkeypatch.setattr(trainer_module, "training_noise", noise)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    toy_models, toy_data, tmp_path, cli, monkeypatch
) -> None:
    out = tmp_path / "lora"
    _nan_noise_from(monkeypatch, 3)
    args = ["finetune", toy_data, "--model", toy_models["sd"], *FAST, "--checkpoint-every", "2"]
    res = cli(*args, "--out", out)
    assert res.code == 2, res.err
    error = _one_error(res.err)
    assert "diverged at step 3 of 4" in error and "the loss is nan" in error, error
    assert "step-00000002" in error
    assert not out.exists()
    ckpt = tmp_path / "lora.parts" / "checkpoints" / "step-00000002"
    state = load_file(str(ckpt / "trainable.safetensors"))
    assert state and all(bool(torch.isfinite(t).all()) for t in state.values())
    assert not (tmp_path / "lora.parts" / "checkpoints" / "step-00000003").exists()


def test_nan_loss_before_any_checkpoint_leaves_nothing(
    toy_models, toy_data, tmp_path, cli, monkeypatch
) -> None:
    _nan_noise_from(monkeypatch, 1)
    res = cli("finetune", toy_data, "--model", toy_models["sd"], *FAST, "--out", tmp_path / "l")
    assert res.code == 2
    error = _one_error(res.err)
    assert "diverged at step 1 of 4" in error and "nothing is kept" in error, error
    assert list(tmp_path.iterdir()) == []


def test_resume_names_the_settings_that_differ_and_the_step(
    toy_models, toy_data, tmp_path, cli, killed
) -> None:
    args = ["finetune", toy_data, "--model", toy_models["sd"], *FAST, "--checkpoint-every", "2"]
    out = tmp_path / "lora"
    killed("finetune:checkpoint", *args, "--out", out)
    res = cli(*args, "--lr", "5e-5", "--offset-noise", "0.1", "--out", out, "--resume")
    assert res.code == 2
    error = _one_error(res.err)
    assert "lr 0.0001 -> 5e-05" in error and "offset_noise 0.0 -> 0.1" in error, error
    assert "step-00000002" in error
    res = cli(*args, "--out", out, "--resume")
    assert res.code == 0, res.err
    assert "resuming from step 2" in res.err
    assert Path(out / "pytorch_lora_weights.safetensors").is_file()
