"""Diffusion models: loading, latents (and, with later steps, noise, LoRA, training, sampling)."""

from geosynth.diffusion.latents import (
    decode_latents,
    encode_latents,
    images_to_tensor,
    vae_scale_factor,
)
from geosynth.diffusion.loading import load_sd_pipeline, load_vae, pick_device, pick_dtype

__all__ = [
    "decode_latents",
    "encode_latents",
    "images_to_tensor",
    "load_sd_pipeline",
    "load_vae",
    "pick_device",
    "pick_dtype",
    "vae_scale_factor",
]
