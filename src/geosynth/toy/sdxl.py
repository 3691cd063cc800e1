"""A tiny Stable-Diffusion-XL-shaped pipeline built from configs, saved in the real layout
(``StableDiffusionXLPipeline.from_pretrained(dir)`` loads it): two text encoders, a
``CLIPTextModel`` (quick-GELU) and a ``CLIPTextModelWithProjection`` (GELU, padding with ``!``
as SDXL's second tokenizer does) of different widths whose penultimate states are concatenated,
a UNet with SDXL's added conditioning (``addition_embed_type="text_time"``: pooled text and six
size numbers), no attention on its first level and two transformer blocks on its second (as
SDXL's deeper levels have several), a small VAE trained on toy data like the toy SD's (with
``force_upcast``, as SDXL's) and SDXL base's Euler scheduler."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from geosynth.artifacts import Provenance, atomic_path, write_provenance
from geosynth.defaults import SDXL_SCHEDULER_CONFIG
from geosynth.diffusion.tokenizer import build_toy_tokenizer
from geosynth.toy.models import latent_scaling_factor, toy_vae, train_toy_vae

#: Widths of the toy's text encoders (their sum is the UNet's cross-attention width) and of the
#: pooled projection; the time-id embedding width.
TE1_WIDTH, TE2_WIDTH, PROJECTION, TIME_EMBED = 32, 64, 32, 8


def _text_encoder(cls, tokenizer, width: int, act: str, projection: int | None = None):
    from transformers import CLIPTextConfig

    extra = {"projection_dim": projection} if projection else {}
    return cls(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            hidden_act=act,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **extra,
        )
    )


def build_toy_sdxl_pipeline(
    *,
    size: int = 32,
    seed: int = 0,
    vae_steps: int = 200,
    vae_from: str | os.PathLike[str] | None = None,
):
    """Construct (not save) the tiny SDXL pipeline; see the module docstring. ``vae_from``: a
    toy SD pipeline whose trained VAE (the same architecture) to take instead of training one."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tokenizer = build_toy_tokenizer()
    tokenizer_2 = build_toy_tokenizer(pad_token="!")
    te = _text_encoder(CLIPTextModel, tokenizer, TE1_WIDTH, "quick_gelu")
    te2 = _text_encoder(CLIPTextModelWithProjection, tokenizer_2, TE2_WIDTH, "gelu", PROJECTION)
    if vae_from is not None:
        vae = AutoencoderKL.from_pretrained(vae_from, subfolder="vae")
        vae.register_to_config(force_upcast=True)
    else:
        vae = toy_vae(size)
        if vae_steps > 0:
            train_toy_vae(vae, steps=vae_steps, size=size, seed=seed)
        vae.register_to_config(scaling_factor=latent_scaling_factor(vae, size=size, seed=seed))
    unet = UNet2DConditionModel(
        sample_size=size // 2 ** (len(vae.config.block_out_channels) - 1),
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2),
        cross_attention_dim=TE1_WIDTH + TE2_WIDTH,
        attention_head_dim=(2, 4),  # heads 16 channels wide
        norm_num_groups=16,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED,
        projection_class_embeddings_input_dim=PROJECTION + 6 * TIME_EMBED,
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=te,
        text_encoder_2=te2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(SDXL_SCHEDULER_CONFIG),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


def make_toy_sdxl_pipeline(
    out: str | os.PathLike[str],
    *,
    size: int = 32,
    seed: int = 0,
    vae_steps: int = 200,
    vae_from: str | os.PathLike[str] | None = None,
) -> Path:
    """Build the tiny SDXL pipeline and ``save_pretrained`` it to ``out`` atomically
    (``vae_from``: see :func:`build_toy_sdxl_pipeline`)."""
    pipe = build_toy_sdxl_pipeline(size=size, seed=seed, vae_steps=vae_steps, vae_from=vae_from)
    prov = Provenance.start(
        "toy model sdxl", seeds={"seed": seed}, size=size, vae_steps=vae_steps,
        vae_from=None if vae_from is None else str(vae_from),
    )  # fmt: skip
    with atomic_path(out) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        write_provenance(tmp, prov)
    return Path(out)
