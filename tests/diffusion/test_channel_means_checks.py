"""Channel-means files belong to one pipeline: generate checks the VAE encoder, scaling factor and
resolution they were computed with; a trained VAE encoder (seed 003) gets its own means."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geosynth.artifacts import ChannelMeans, Provenance, load_channel_means, save_channel_means
from geosynth.diffusion.loading import load_sd_pipeline
from geosynth.diffusion.training.recipe import Recipe
from geosynth.diffusion.training.trainable import prepare_components

FAST = ["--resolution", "32", "--batch-size", "4", "--checkpoint-every", "1000"]


@pytest.fixture(scope="module")
def means(toy_models, toy_data, tmp_path_factory) -> Path:
    from geosynth.cli.main import main

    out = tmp_path_factory.mktemp("cm") / "means.safetensors"
    assert (
        main(["channel-means", str(toy_data), "--model", str(toy_models["sd"]), "--out", str(out)])
        == 0
    )
    return out


def _generate(cli, toy_models, means: Path, out: Path, *extra: str | Path):
    return cli(
        "generate",
        "--model",
        toy_models["sd"],
        "--classes",
        "water",
        "--per-class",
        "1",
        "--steps",
        "1",
        "--noise",
        "leak-aligned",
        "--channel-means",
        means,
        "--out",
        out,
        *extra,
    )


def _edited(means: Path, dest: Path, **changes: str | None) -> Path:
    cm = load_channel_means(means)
    meta = {
        k: v
        for k, v in cm.metadata.items()
        if k in ("resolution", "model") or k.startswith(("vae", "latent", "scaling"))
    }
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    edited = ChannelMeans(cm.means, cm.class_names, std=cm.std, metadata=meta)
    return save_channel_means(dest, edited, provenance=Provenance.start("test"))


def test_file_records_the_vae_and_fits_its_pipeline(cli, toy_models, means, tmp_path) -> None:
    meta = load_channel_means(means).metadata
    assert meta["vae"] == str(toy_models["sd"]) and meta["latent_channels"] == "4"
    assert meta["resolution"] == "32" and float(meta["scaling_factor"]) > 0
    assert (
        len(meta["vae_encoder_fp16"]) == 32 and meta["vae_encoder_fp16"] != meta["vae_encoder_bf16"]
    )
    res = _generate(cli, toy_models, means, tmp_path / "ok")
    assert res.code == 0, res.err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"resolution": "64"}, "computed at 64 px, generating at 32 px"),
        ({"scaling_factor": "0.5"}, "VAE scaling factor 0.5"),
        (
            {"vae_encoder_fp16": "0" * 32, "vae": "someone/else"},
            "another VAE encoder (someone/else)",
        ),
        ({"vae_encoder_fp16": None}, "no VAE identity recorded"),
    ],
)
def test_a_file_for_another_pipeline_is_refused(
    cli, toy_models, means, tmp_path, changes, message
) -> None:
    bad = _edited(means, tmp_path / "bad.safetensors", **changes)
    res = _generate(cli, toy_models, bad, tmp_path / "out")
    assert res.code == 2, res.err
    assert message in res.err and "--skip-channel-means-check" in res.err
    assert len(res.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    # The explicit override generates, and says what it skipped.
    res = _generate(cli, toy_models, bad, tmp_path / "out", "--skip-channel-means-check")
    assert res.code == 0, res.err
    assert message in res.err and "check skipped" in res.err


def test_vae_encoder_training_and_its_channel_means(cli, toy_models, toy_data, means, tmp_path):
    from diffusers import AutoencoderKL

    sd = str(toy_models["sd"])
    lora = tmp_path / "enc"
    res = cli(
        "finetune", toy_data, "--model", sd, "--out", lora, *FAST, "--max-steps", "3",
        "--lr", "1e-2", "--train-unet", "frozen", "--train-text-encoder", "frozen",
        "--train-vae-encoder", "lora",
    )  # fmt: skip
    assert res.code == 0, res.err
    card = json.loads((lora / "geosynth.json").read_text())
    assert card["trained"]["vae_encoder"] == "lora" and card["trained"]["vae_decoder"] == "frozen"
    assert card["latent_vae"] == "vae/"
    vae = AutoencoderKL.from_pretrained(lora / "vae")
    base = AutoencoderKL.from_pretrained(sd, subfolder="vae")
    enc = [
        not torch.equal(a, b)
        for a, b in zip(vae.encoder.parameters(), base.encoder.parameters(), strict=True)
    ]
    assert any(enc)  # the encoder LoRA is merged into the saved weights
    for a, b in zip(vae.decoder.parameters(), base.decoder.parameters(), strict=True):
        assert torch.equal(a, b)

    # Channel means through the trained encoder: recorded as such, and different.
    tuned = tmp_path / "tuned.safetensors"
    res = cli("channel-means", toy_data, "--model", sd, "--lora", lora, "--out", tuned)
    assert res.code == 0, res.err
    cm, cm0 = load_channel_means(tuned), load_channel_means(means)
    assert cm.metadata["vae"] == str(lora / "vae")
    assert cm.metadata["vae_encoder_fp16"] != cm0.metadata["vae_encoder_fp16"]
    assert not torch.allclose(cm.means, cm0.means)
    # They fit the pipeline with that LoRA's VAE, not the base pipeline (and vice versa).
    assert _generate(cli, toy_models, tuned, tmp_path / "g1", "--lora", lora).code == 0
    res = _generate(cli, toy_models, tuned, tmp_path / "g2")
    assert res.code == 2 and "another VAE encoder" in res.err
    res = _generate(cli, toy_models, means, tmp_path / "g3", "--lora", lora)
    assert res.code == 2 and "another VAE encoder" in res.err


def test_full_encoder_beside_a_decoder_lora(toy_models) -> None:
    pipe = load_sd_pipeline(toy_models["sd"], device="cpu")
    recipe = Recipe(unet="frozen", text_encoder="frozen", vae_encoder="full", vae_decoder="lora")
    recipe.check()
    prepare_components(pipe, recipe)
    vae = pipe.vae
    assert all(p.requires_grad for p in vae.encoder.parameters())
    assert all(p.requires_grad for p in vae.quant_conv.parameters())
    trained_dec = {n for n, p in vae.decoder.named_parameters() if p.requires_grad}
    assert trained_dec and all("lora_" in n for n in trained_dec)
    assert not any(p.requires_grad for p in pipe.unet.parameters())
