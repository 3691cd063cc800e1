"""Artifacts with NaN or infinite numbers are refused when read, in one line naming the file,
before any model loads: a LoRA of NaNs (what a diverged run wrote) would make black images with
exit code 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from geosynth.diffusion.loras import CARD_FILE, LORA_FILE

ONE_CLASS = ["--classes", "water", "--per-class", "1", "--steps", "1"]


def _lora(path: Path, value: float) -> Path:
    path.mkdir(parents=True)
    w = torch.zeros(4, 8)
    w[0, 0] = value
    save_file({"unet.mid.attn.to_q.lora_A.weight": w}, str(path / LORA_FILE))
    (path / CARD_FILE).write_text(json.dumps({"class_names": ["water"]}))
    return path


def _one_error(res) -> str:
    assert res.code == 2, (res.out, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.err
    return lines[0]


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_generate_refuses_a_lora_with_non_finite_weights(cli, tmp_path, value) -> None:
    lora = _lora(tmp_path / "lora", value)
    model = tmp_path / "model"
    model.mkdir()  # never loaded: the LoRA is refused first
    out = tmp_path / "out"
    line = _one_error(cli("generate", "--model", model, "--lora", lora, *ONE_CLASS, "--out", out))
    assert str(lora / LORA_FILE) in line and "NaN or infinite" in line, line
    assert line.startswith(f"error: --lora {lora}"), line
    assert not out.exists() and not Path(f"{out}.previews").exists()


def test_a_lora_weight_must_be_finite(cli, tmp_path) -> None:
    lora = _lora(tmp_path / "lora", 0.5)
    res = cli(
        "generate",
        "--model",
        tmp_path,
        "--lora",
        f"{lora}:nan",
        *ONE_CLASS,
        "--out",
        tmp_path / "o",
    )
    assert "the weight must be a finite number" in _one_error(res)


def test_a_mixture_weight_must_be_finite(cli, tmp_path) -> None:
    lora = _lora(tmp_path / "c0", 0.5)
    mix = tmp_path / "weights.json"
    mix.write_text('{"loras": {"c0": "c0"}, "weights": {"water": {"c0": NaN}}}')
    res = cli(
        "generate", "--model", tmp_path, "--lora-weights", mix, *ONE_CLASS, "--out", tmp_path / "o"
    )
    line = _one_error(res)
    assert "--lora-weights" in line and "not finite" in line, line
    assert lora.is_dir()


def test_channel_means_with_nan_are_refused(cli, tmp_path) -> None:
    means = tmp_path / "means.safetensors"
    nan = torch.tensor([[float("nan"), 0.0, 0.0, 0.0]])
    save_file({"means": nan}, str(means), metadata={"class_names": '["water"]'})
    res = cli(
        "generate", "--model", tmp_path, "--noise", "leak-aligned", "--channel-means", means,
        *ONE_CLASS, "--out", tmp_path / "o",
    )  # fmt: skip
    line = _one_error(res)
    assert str(means) in line and "NaN or infinite" in line, line
