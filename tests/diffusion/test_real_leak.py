"""The reduced version of ``make validate`` (docs/validation.md): on real EuroSAT, a latent
diffusion model trained briefly from scratch with Stable Diffusion's noise schedule loses each
class's colour when sampling starts from pure Gaussian noise, and leak-aligned noise gives it
back. Everything runs through geosynth's library: ``train_vae``, ``make_domain_pipeline``,
``finetune --init scratch``, ``class_channel_means``, ``run_generation``.

If the leak term of leak-aligned noise is dropped (x0_cls set to zero in
``leak_aligned_latents``), the two synthetic sets start from nearly the same noise and the
assertion fails (checked once by hand: errors 0.1148 vs 0.1150; docs/validation.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from geosynth.artifacts import Provenance
from geosynth.data import load_dataset
from geosynth.data.stats import class_color_stats
from geosynth.diffusion.channel_means import class_channel_means
from geosynth.diffusion.loading import load_sd_pipeline
from geosynth.diffusion.sampling.generate import GenerationSpec, run_generation
from geosynth.diffusion.training.finetune import finetune
from geosynth.diffusion.training.recipe import Recipe
from geosynth.diffusion.vae import VaeRecipe, make_domain_pipeline, train_vae

# Classes whose colours lie far apart (dark water, dark green forest, bright fields): where a
# wrong starting channel mean shows most.
CLASSES = ["AnnualCrop", "Forest", "SeaLake"]
RES = 32  # 16 x 16 x 4 latents with a factor-2 autoencoder


def _colour_error(real: list[dict], synth: list[dict]) -> float:
    """Mean over classes and channels of |synthetic - real| per-class mean colour (0..1)."""
    r = {row["class_name"]: np.array(row["mean_rgb"]) for row in real}
    s = {row["class_name"]: np.array(row["mean_rgb"]) for row in synth}
    return float(np.mean([np.abs(s[c] - r[c]).mean() for c in CLASSES]))


@pytest.fixture
def one_thread():
    """Small models on a shared CPU run several times faster on one thread (docs/validation.md)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_leak_aligned_noise_restores_class_colour_on_real_eurosat(eurosat, tmp_path, one_thread):
    torch.manual_seed(0)
    pool = load_dataset(eurosat, split="pool", classes=CLASSES, shots=120, seed=0)
    train_vae(
        pool,
        tmp_path / "vae",
        VaeRecipe(
            resolution=RES, block_out_channels=(8, 16), norm_num_groups=8, steps=120, lr=2e-3
        ),
        eval_images=16,
        log=lambda _: None,
    )
    unet_config = {
        "sample_size": RES // 2,
        "in_channels": 4,
        "out_channels": 4,
        "layers_per_block": 1,
        "block_out_channels": [16, 32],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": 8,
        "norm_num_groups": 8,
        "use_linear_projection": True,
    }
    base = make_domain_pipeline(tmp_path / "vae", tmp_path / "sd", unet_config, text_width=32)
    (tmp_path / "unet.json").write_text(json.dumps({**unet_config, "cross_attention_dim": 32}))
    recipe = Recipe(
        unet="full",
        text_encoder="frozen",
        init="scratch",
        unet_config=str(tmp_path / "unet.json"),
        max_steps=250,
        batch_size=16,
        lr=1e-3,
        resolution=RES,
        mixed_precision="fp32",
        checkpoint_every=10_000,
    )
    finetune(pool, tmp_path / "model", recipe, model=str(base), log=lambda _: None)

    pipe = load_sd_pipeline(str(base))
    from diffusers import UNet2DConditionModel

    pipe.unet = UNet2DConditionModel.from_pretrained(tmp_path / "model" / "unet")
    shots = load_dataset(eurosat, split="train", classes=CLASSES)
    means = class_channel_means(pipe.vae, shots, resolution=RES)
    errors = {}
    for noise in ("gaussian", "leak-aligned"):
        spec = GenerationSpec(
            model=str(base),
            classes=CLASSES,
            per_class=24,
            prompt_template="a satellite photo of a {}",
            steps=10,
            guidance=1.0,
            scheduler="ddim",
            noise=noise,
            resolution=RES,
            channel_means={c: means.for_class(c).tolist() for c in CLASSES},
        )
        out = tmp_path / noise
        run_generation(pipe, spec, out, provenance=Provenance.start("test"), batch_size=24)
        synth = class_color_stats(load_dataset(out))
        real = class_color_stats(load_dataset(eurosat, split="val", classes=CLASSES))
        errors[noise] = _colour_error(real, synth)
    print("per-class colour error (0..1):", errors)
    # Measured (2026-11-29): Gaussian 0.115, leak-aligned 0.077; with the leak term set to zero
    # 0.115 and 0.115. A 20% reduction separates the two with room to spare.
    assert errors["leak-aligned"] < 0.8 * errors["gaussian"], errors
