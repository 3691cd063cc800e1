"""finetune options that express the seeds' setups: LoRA targets (seed 001's 2LoRA puts LoRA on
the cross-attention Q, K, V only) and the two readings of offset noise (seed 000, Eq. 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from geosynth.diffusion.loading import load_sd_pipeline
from geosynth.diffusion.training.recipe import Recipe, resolve_lora_targets
from geosynth.diffusion.training.trainable import prepare_components

FAST = ["--resolution", "32", "--batch-size", "4", "--checkpoint-every", "1000"]


def test_cross_attention_qkv_lora_is_trained_and_recorded(cli, toy_models, toy_data, tmp_path):
    out = tmp_path / "lora"
    res = cli(
        "finetune",
        toy_data,
        "--model",
        toy_models["sd"],
        "--out",
        out,
        *FAST,
        "--max-steps",
        "1",
        "--train-text-encoder",
        "frozen",
        "--lora-targets",
        "cross-attention-qkv",
        "--offset-noise",
        "0.05",
        "--offset-noise-convention",
        "variance",
    )
    assert res.code == 0, res.err
    keys = list(load_file(out / "pytorch_lora_weights.safetensors"))
    assert keys and all(".attn2.to_" in k for k in keys)
    assert {k.split(".attn2.")[1].split(".")[0] for k in keys} == {"to_q", "to_k", "to_v"}
    card = json.loads((out / "geosynth.json").read_text())
    assert card["lora_targets"] == {
        "preset": "cross-attention-qkv",
        "unet": ["attn2.to_q", "attn2.to_k", "attn2.to_v"],
        "text_encoder": [],
        "text_encoders": [],  # which text encoders got them (SDXL has two)
    }
    assert card["recipe"]["offset_noise_convention"] == "variance"
    assert card["latent_vae"] == str(toy_models["sd"])  # the encoder did not train


def test_presets_and_module_names_select_those_layers(toy_models) -> None:
    pipe = load_sd_pipeline(toy_models["sd"], device="cpu")
    spec = "attention-ff"
    prepare_components(
        pipe,
        Recipe(lora_targets=spec, text_encoder="frozen"),
    )
    lora = {n.split(".lora_")[0] for n, _ in pipe.unet.named_parameters() if "lora_" in n}
    assert any(n.endswith("ff.net.0.proj") for n in lora)
    assert any(n.endswith("ff.net.2") for n in lora)
    assert any(n.endswith("attn1.to_out.0") for n in lora)
    assert resolve_lora_targets(" attn2.to_k , ff.net.2") == ("attn2.to_k", "ff.net.2")


@pytest.mark.parametrize(
    ("spec", "message"),
    [("to_qq", "no module of the UNet is named 'to_qq'"), ("to q", "--lora-targets to q")],
)
def test_unknown_lora_target_is_one_line_and_writes_nothing(
    cli, toy_models, toy_data, tmp_path: Path, spec: str, message: str
) -> None:
    out = tmp_path / "x"
    res = cli(
        "finetune", toy_data, "--model", toy_models["sd"], "--out", out, "--lora-targets", spec
    )
    assert res.code == 2 and message in res.err and len(res.err.strip().splitlines()) == 1
    assert not out.exists() and not out.with_name("x.parts").exists()
