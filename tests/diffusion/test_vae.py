"""Training a domain autoencoder and wrapping it into an SD-shaped pipeline."""

from __future__ import annotations

import json

import pytest
import torch

from geosynth.data import load_dataset
from geosynth.diffusion.loading import load_sd_pipeline
from geosynth.diffusion.vae import (
    VaeRecipe,
    make_domain_pipeline,
    reconstruction_error,
    train_vae,
)
from geosynth.errors import GeosynthError

RECIPE = VaeRecipe(
    resolution=16, block_out_channels=(8, 8), norm_num_groups=4, steps=3, batch_size=4
)


def test_train_vae_writes_a_loadable_autoencoder_with_its_errors(toy_data, tmp_path):
    from diffusers import AutoencoderKL

    ds = load_dataset(toy_data, shots=2, seed=0)
    summary = train_vae(ds, tmp_path / "vae", RECIPE, held_out=ds, log=lambda _: None)
    vae = AutoencoderKL.from_pretrained(tmp_path / "vae")
    card = json.loads((tmp_path / "vae" / "geosynth-vae.json").read_text())
    assert card["latent_shape"] == [4, 8, 8]
    assert vae.config.scaling_factor == pytest.approx(summary["scaling_factor"])
    assert summary["scaling_factor"] > 0
    for split in ("train", "held_out"):
        err = card["reconstruction"][split]
        assert err["images"] == len(ds)
        assert 0 < err["mae"] <= err["rmse"] and err["psnr_db"] > 0
    # an existing output is never overwritten unless asked
    with pytest.raises(GeosynthError, match="already exists"):
        train_vae(ds, tmp_path / "vae", RECIPE, log=lambda _: None)


def test_reconstruction_error_is_zero_for_a_perfect_autoencoder():
    class Identity(torch.nn.Module):
        def encode(self, x):
            return type("E", (), {"latent_dist": type("D", (), {"mean": x})()})()

        def decode(self, z):
            return type("O", (), {"sample": z})()

    x = torch.rand(3, 3, 8, 8) * 2 - 1
    err = reconstruction_error(Identity(), x)
    assert err["mae"] == 0 and err["channel_mean_mae"] == 0 and err["images"] == 3


def test_bad_recipe_is_refused_naming_the_parameter():
    with pytest.raises(
        GeosynthError, match=r"^resolution=30: must be a multiple of the VAE factor 4"
    ):
        VaeRecipe(resolution=30, block_out_channels=(8, 8, 8), norm_num_groups=4).check()
    with pytest.raises(GeosynthError, match="norm_num_groups"):
        VaeRecipe(block_out_channels=(8, 12), norm_num_groups=8).check()


def test_domain_pipeline_loads_with_sd_schedule(toy_data, tmp_path):
    ds = load_dataset(toy_data, shots=1, seed=0)
    train_vae(ds, tmp_path / "vae", RECIPE, log=lambda _: None)
    unet = {
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "layers_per_block": 1,
        "block_out_channels": [8, 16],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": 4,
        "norm_num_groups": 4,
    }
    make_domain_pipeline(tmp_path / "vae", tmp_path / "sd", unet, text_width=16)
    pipe = load_sd_pipeline(str(tmp_path / "sd"))
    cfg = pipe.scheduler.config
    assert (cfg.beta_schedule, cfg.num_train_timesteps, cfg.prediction_type) == (
        "scaled_linear",
        1000,
        "epsilon",
    )
    assert cfg.clip_sample is False
    # SD 2.1-base's non-zero terminal SNR: sqrt(abar_999) = 0.068
    assert float(pipe.scheduler.alphas_cumprod[999]) ** 0.5 == pytest.approx(0.0683, abs=1e-3)
    assert pipe.unet.config.cross_attention_dim == 16
    bad = {**unet, "in_channels": 3}
    with pytest.raises(GeosynthError, match="in_channels"):
        make_domain_pipeline(tmp_path / "vae", tmp_path / "sd2", bad)
