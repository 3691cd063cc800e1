"""Diffusion models, split by role as diffusers is:

* models and their parts: :mod:`.loading` (Stable Diffusion pipelines from a hub id or a
  directory), :mod:`.latents` (images <-> scaled VAE latents), :mod:`.vae` (a domain
  autoencoder), :mod:`.mapcond` (semantic-map conditioning), :mod:`.channel_means` (x0_cls);
* adapters: :mod:`.loras` (LoRA stacks and per-class mixtures), :mod:`.kohya` (kohya / A1111 files);
* :mod:`.training`: the fine-tuning recipe, objective and loop (``geosynth finetune``);
* :mod:`.sampling`: initial noise (Gaussian, leak-aligned), schedulers, ControlNet inputs and the
  generation jobs (``geosynth generate``); :func:`load_generation` and
  :func:`load_map_generation` build a whole job from plain arguments.

Heavy libraries (diffusers, peft, transformers) are imported inside the functions that use them.
"""

from geosynth.diffusion.channel_means import class_channel_means, per_image_channel_means
from geosynth.diffusion.latents import (
    decode_latents,
    encode_latents,
    images_to_tensor,
    vae_scale_factor,
)
from geosynth.diffusion.loading import load_sd_pipeline, load_vae
from geosynth.diffusion.sampling.mapgen import load_map_generation
from geosynth.diffusion.sampling.noise import (
    alpha_bar_at_start,
    gaussian_latents,
    leak_aligned_latents,
    model_input_scale,
)
from geosynth.diffusion.sampling.pipeline import load_generation

__all__ = [
    "alpha_bar_at_start",
    "class_channel_means",
    "decode_latents",
    "encode_latents",
    "gaussian_latents",
    "images_to_tensor",
    "leak_aligned_latents",
    "load_generation",
    "load_map_generation",
    "load_sd_pipeline",
    "load_vae",
    "model_input_scale",
    "per_image_channel_means",
    "vae_scale_factor",
]
