"""Load diffusion pipelines and their parts from a hub id, a local directory or a single-file
checkpoint (:mod:`geosynth.diffusion.single_file`), as their family
(:mod:`geosynth.diffusion.family`) loads them."""

from __future__ import annotations

import os
from typing import Any

import torch

from geosynth.defaults import SD_MODEL
from geosynth.diffusion.diffusionsat import has_metadata_unet, load_metadata_pipeline
from geosynth.diffusion.family import ModelFamily, detect_family
from geosynth.diffusion.single_file import is_single_file
from geosynth.runtime import load_with, pick_device


def load_sd_pipeline(
    model: str | os.PathLike[str] = SD_MODEL,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    family: ModelFamily | None = None,
    **kwargs: Any,
):  # -> diffusers.StableDiffusionPipeline or StableDiffusionXLPipeline
    """The pipeline of ``model`` (its family's class: ``StableDiffusionPipeline`` for SD 1.x /
    2.x without the safety checker, ``StableDiffusionXLPipeline`` for SDXL without the
    watermark), moved to ``device`` and ``dtype``. ``family``: already detected (else read
    from the model's files; a family geosynth does not run is a one-line error)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    fam = family or detect_family(model)
    if is_single_file(model):
        pipe = load_with(lambda ref: fam.load_single_file(ref, dtype), model, "model")
    elif has_metadata_unet(model):  # DiffusionSat's layout: built from its components
        pipe = load_metadata_pipeline(model, fam.pipeline_class(), dtype)
    else:
        pipe = load_with(lambda ref: fam.load_pipeline(ref, dtype, **kwargs), model, "model")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(pick_device(str(device) if device else None))


def load_vae(
    model: str | os.PathLike[str] = SD_MODEL,
    *,
    dtype: torch.dtype = torch.float32,
    what: str = "model",
):
    """Only the autoencoder of a pipeline (``subfolder="vae"``). ``what`` names the parameter that
    gave ``model`` in errors (``vae`` when a caller's option is called so)."""
    from diffusers import AutoencoderKL

    if is_single_file(model):
        fam = detect_family(model, what)
        return load_with(lambda ref: fam.load_single_file(ref, dtype), model, what).vae
    return load_with(
        lambda ref: AutoencoderKL.from_pretrained(ref, subfolder="vae", dtype=dtype),
        model,
        what,
    )


def native_resolution(
    model: str | os.PathLike[str], vae_factor: int, *, what: str = "model"
) -> int:
    """The pipeline's training resolution: UNet sample size x VAE factor (512 for SD 2.1-base,
    1024 for SDXL; SD 2.1-base's VAE config says 768, so the VAE alone cannot tell). ``what``
    as for :func:`load_vae`."""
    from diffusers import UNet2DConditionModel

    if is_single_file(model):
        from geosynth.diffusion.single_file import sample_size

        return sample_size(model) * vae_factor
    config = load_with(
        lambda ref: UNet2DConditionModel.load_config(ref, subfolder="unet"), model, what
    )
    return int(config["sample_size"]) * vae_factor
