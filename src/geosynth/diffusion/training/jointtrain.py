"""``finetune --joint-masks`` (SatSynth, :mod:`geosynth.diffusion.joint`): the UNet widened to
image latents + mask bits, the training set with the bits beside the latents, the card entry.
Each function does nothing for a recipe without ``joint_masks``, so finetune calls them as
steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from geosynth.diffusion import joint
from geosynth.diffusion.family import ModelFamily
from geosynth.diffusion.latents import vae_scale_factor
from geosynth.diffusion.training.recipe import Recipe
from geosynth.diffusion.training.train_data import TrainingSet
from geosynth.diffusion.types import Pipeline
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track


@dataclass
class JointTrainingSet(TrainingSet):
    """A :class:`TrainingSet` whose latents carry the mask bits as extra channels (fixed: their
    std is 0), so the trainer noises and denoises image and mask together."""

    num_classes: int = 0


def attach_mask_bits(
    data: TrainingSet, ds, factor: int, *, resolution: int, track: Track = no_track
) -> JointTrainingSet:
    """Every mask of the paired ``ds`` (in ``data``'s order), resized like its image, reduced to
    the latent grid and bit-encoded beside the image latents (mirrored with the mirror view)."""
    from geosynth.data.pairdata import resize_map

    legend = ds.require_legend()
    k = len(legend)
    grids = torch.stack(
        [
            joint.to_latent_grid(resize_map(ds.map(i), resolution), factor, k)
            for i in track(range(len(ds)), len(ds), "reading masks")
        ]
    )
    views = [grids] if data.flips == 1 else [grids, torch.flip(grids, dims=[2])]
    bits = torch.stack([joint.encode_bits(v, k) for v in views])  # F x N x bits x h x w
    return JointTrainingSet(
        prompts=data.prompts,
        labels=data.labels,
        class_names=data.class_names,
        latent_mean=torch.cat([data.latent_mean, bits], dim=2),
        latent_std=torch.cat([data.latent_std, torch.zeros_like(bits)], dim=2),
        pixels=data.pixels,
        sizes=data.sizes,
        num_classes=k,
    )


def check(recipe: Recipe, family: ModelFamily, model: str, cache_latents: bool) -> None:
    """What joint masks need beyond the recipe: a family with an SD-shaped UNet, cached latents
    (the mask bits sit beside them)."""
    if not recipe.joint_masks:
        return
    if not family.joint_masks:
        raise GeosynthError(
            f"joint_masks=True: runs on SD 1.x / 2.x UNets, not on model={model!r} ({family.label})"
        )
    if not cache_latents:
        raise GeosynthError(
            "joint_masks=True needs cache_latents=True (the mask bits are kept beside the "
            "cached latents)"
        )


def _classes(ds) -> int:
    from geosynth.diffusion.training.maptrain import paired_or_error

    return len(paired_or_error(ds).require_legend())


def scratch_config(config: dict[str, Any], recipe: Recipe, ds, pipe: Pipeline) -> dict[str, Any]:
    """A from-scratch UNet config with the mask bits in its input and output."""
    if not recipe.joint_masks:
        return config
    return joint.joint_unet_config(config, int(pipe.vae.config.latent_channels), _classes(ds))


def prepare_unet(pipe: Pipeline, recipe: Recipe, ds) -> None:
    """Widen a latent-only UNet with zero-initialised mask channels (in and out)."""
    if recipe.joint_masks:
        joint.prepare_joint_unet(pipe.unet, int(pipe.vae.config.latent_channels), _classes(ds))


def training_set(
    data: TrainingSet, pipe: Pipeline, recipe: Recipe, ds, resolution: int, track: Track
) -> TrainingSet:
    """``data`` with every image's mask bits beside its latents."""
    if not recipe.joint_masks:
        return data
    return attach_mask_bits(
        data, ds, vae_scale_factor(pipe.vae), resolution=resolution, track=track
    )


def card(pipe: Pipeline, ds) -> dict[str, Any]:
    from geosynth.diffusion.training.maptrain import paired_or_error

    legend = paired_or_error(ds).require_legend()
    return joint.joint_card(legend, int(pipe.vae.config.latent_channels))
