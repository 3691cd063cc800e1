"""``channel-means --lora DIR:weight`` encodes with DIR's trained VAE, as ``--lora DIR`` does:
the weight is parsed off before the VAE is looked up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from geosynth.artifacts import load_channel_means


def test_lora_with_a_weight_uses_its_trained_vae(cli, toy_models, toy_data, tmp_path) -> None:
    sd = str(toy_models["sd"])
    lora = tmp_path / "tuned"
    lora.mkdir()
    (lora / "geosynth.json").write_text(json.dumps({"base_model": sd}))
    shutil.copytree(Path(sd) / "vae", lora / "vae")  # a finetune output's own VAE folder
    for spec, name in ((str(lora), "plain"), (f"{lora}:0.5", "weighted")):
        out = tmp_path / f"{name}.safetensors"
        res = cli("channel-means", toy_data, "--model", sd, "--lora", spec, "--out", out)
        assert res.code == 0, res.err
        assert load_channel_means(out).metadata["vae"] == str(lora / "vae"), (spec, res.err)
        assert "no trained VAE" not in res.err


def test_without_model_the_lora_cards_base_model_is_used(cli, toy_models, toy_data, tmp_path):
    """As generate does: no --model with a --lora takes the base model its card records, and
    says so in one line (the default hub model is not reachable here)."""
    sd = str(toy_models["sd"])
    lora = tmp_path / "tuned"
    lora.mkdir()
    (lora / "geosynth.json").write_text(json.dumps({"base_model": sd}))
    out = tmp_path / "means.safetensors"
    res = cli("channel-means", toy_data, "--lora", lora, "--out", out)
    assert res.code == 0, res.err
    assert f"model: {sd} (the base model {lora}'s card records)" in res.err.splitlines()
    assert load_channel_means(out).metadata["model"] == sd
