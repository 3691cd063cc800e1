"""Diffusion models: loading, latents (and, with later steps, noise, LoRA, training, sampling)."""

from geosynth.diffusion.channel_means import class_channel_means, per_image_channel_means
from geosynth.diffusion.latents import (
    decode_latents,
    encode_latents,
    images_to_tensor,
    vae_scale_factor,
)
from geosynth.diffusion.loading import load_sd_pipeline, load_vae, pick_device, pick_dtype
from geosynth.diffusion.noise import (
    alpha_bar_at_start,
    gaussian_latents,
    leak_aligned_latents,
    model_input_scale,
)

__all__ = [
    "alpha_bar_at_start",
    "class_channel_means",
    "decode_latents",
    "encode_latents",
    "gaussian_latents",
    "images_to_tensor",
    "leak_aligned_latents",
    "load_sd_pipeline",
    "load_vae",
    "model_input_scale",
    "per_image_channel_means",
    "pick_device",
    "pick_dtype",
    "vae_scale_factor",
]
