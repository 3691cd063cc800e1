"""What a finetune output says about itself: the card (``geosynth.json``, format
``geosynth-lora/1``, docs/finetune.md "Outputs") (the loss log is :mod:`~geosynth.diffusion.training.losslog`'s)."""

from __future__ import annotations

from typing import Any

import torch

from geosynth import __version__
from geosynth.data.dataset import ImageDataset
from geosynth.data.names import fill_prompt
from geosynth.diffusion.family import ModelFamily
from geosynth.diffusion.identity import model_digest
from geosynth.diffusion.training.recipe import LORA_TARGET_PRESETS, Recipe
from geosynth.diffusion.training.train_data import TrainingSet
from geosynth.diffusion.training.trainer import TrainResult
from geosynth.runtime import recorded_ref

CARD_FORMAT = "geosynth-lora/1"


def size_card(sizes: torch.Tensor | None, limit: int = 16) -> list[dict[str, Any]] | None:
    """The size conditioning the training chips gave (original size, crop top-left, target
    size), as distinct settings with their counts over images and mirror images (at most
    ``limit`` listed, the most common first)."""
    if sizes is None:
        return None
    rows, counts = torch.unique(sizes.reshape(-1, 6), dim=0, return_counts=True)
    order = sorted(range(len(rows)), key=lambda i: (-int(counts[i]), rows[i].tolist()))
    out = []
    for i in order[:limit]:
        v = [int(x) for x in rows[i].tolist()]
        out.append(
            {"original": v[0:2], "crop_top_left": v[2:4], "target": v[4:6], "views": int(counts[i])}
        )
    return out


def lora_card(
    ds: ImageDataset,
    data: TrainingSet,
    recipe: Recipe,
    res: TrainResult,
    *,
    model: str,
    family: ModelFamily,
    resolution: int,
    init_loras: list[tuple[str, float]],
    overrides: dict[str, Any],
    digest_cost: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card of one trained LoRA (``files`` is added once they are written). What hashing
    the base weights cost goes to ``digest_cost`` (it is not training time)."""
    base = recorded_ref(model)  # a local path works from any folder; a hub id as given
    return {
        "format": CARD_FORMAT,
        "geosynth_version": __version__,
        "base_model": base,
        # What identifies the base model: its weights, whatever path or id named them.
        "base_digest": model_digest(model, cost=digest_cost),
        # The family its weights belong to (read from the model's files): a LoRA is refused
        # on another family before anything loads.
        "base_family": family.name,
        "class_names": data.class_names,
        "prompt_template": recipe.template,
        # the prompts as trained ("a"/"an" chosen per class; generate fills the template so)
        "prompts": {
            c: fill_prompt(recipe.template, p)
            for c, p in zip(ds.class_names, ds.prompt_names, strict=True)
        },
        "resolution": resolution,
        # SDXL's size conditioning as each chip was resized and cropped (None: not used).
        "size_conditioning": size_card(data.sizes) if family.size_conditioning else None,
        "learned_token": recipe.learn_token,
        "trained": {
            "unet": "scratch" if recipe.init == "scratch" else recipe.unet,
            "text_encoder": recipe.text_encoder,
            "vae_decoder": recipe.vae_decoder,
            "vae_encoder": recipe.vae_encoder,
        },
        # The VAE whose encoder gives the latent space the UNet learned (and that channel-means
        # must use): the base model's, or this run's vae/ when its encoder trained.
        "latent_vae": "vae/" if recipe.vae_encoder != "frozen" else base,
        "lora_targets": {
            "preset": recipe.lora_targets if recipe.lora_targets in LORA_TARGET_PRESETS else None,
            "unet": list(recipe.unet_targets) if recipe.unet == "lora" else [],
            "text_encoder": list(recipe.text_targets) if recipe.text_encoder == "lora" else [],
            "text_encoders": list(family.text_encoders) if recipe.text_encoder == "lora" else [],
        },
        "stack": [{"path": p, "weight": w} for p, w in init_loras],
        "scheduler": overrides,
        "recipe": recipe.to_dict(),
        "data": {
            "source": str(ds.source),
            "fingerprint": ds.fingerprint(),
            "images": len(ds),
            "per_class": ds.counts(),
            "selection": ds.selection,
        },
        # How the data's native values became the 3 channels the model learnt (None: 8-bit RGB);
        # generate writes its outputs back through it.
        "radiometry": None if ds.radiometry is None else ds.radiometry.to_dict(),
        "steps": res.steps,
        "resumed_from_step": res.resumed_from,
        "final_loss": res.final_loss,
    }
