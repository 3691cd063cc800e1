"""Train a small domain autoencoder (diffusers ``AutoencoderKL``) on an image dataset.

Seed 000 argues that Stable Diffusion's VAE maps satellite and SAR images badly; a latent
diffusion model for such a domain can instead run in the latent space of an autoencoder trained
on the domain itself. :func:`train_vae` fits one (L1 + MSE reconstruction and a small KL term, no
perceptual or adversarial loss: what matters here is faithful colour and layout), measures its
reconstruction error on held-out images, sets ``scaling_factor`` to 1 / std of the training
latents (the LDM convention that gives the UNet unit-variance inputs; SD's 0.18215 was found the
same way) and saves it in ``from_pretrained`` layout.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from geosynth.artifacts import Provenance, atomic_path, write_provenance
from geosynth.artifacts.jsontext import json_text
from geosynth.data.dataset import ImageDataset
from geosynth.diffusion.latents import images_to_tensor
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track


@dataclass
class VaeRecipe:
    """Architecture and optimisation of :func:`train_vae` (recorded in ``geosynth-vae.json``)."""

    resolution: int = 64
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 16
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    kl_weight: float = 1e-6
    flip: bool = True
    seed: int = 0

    def check(self) -> None:
        if self.resolution % 2 ** (len(self.block_out_channels) - 1):
            raise GeosynthError(
                f"resolution={self.resolution}: must be a multiple of the VAE factor "
                f"{2 ** (len(self.block_out_channels) - 1)}"
            )
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise GeosynthError(
                f"block_out_channels={self.block_out_channels}: each must be a multiple of "
                f"norm_num_groups={self.norm_num_groups}"
            )
        if self.steps < 1 or self.batch_size < 1 or self.latent_channels < 1:
            raise GeosynthError(
                f"steps={self.steps}, batch_size={self.batch_size}, "
                f"latent_channels={self.latent_channels}: each must be at least 1"
            )


def build_vae(recipe: VaeRecipe):
    """A randomly initialised ``AutoencoderKL`` of the recipe's shape."""
    from diffusers import AutoencoderKL

    n = len(recipe.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(recipe.block_out_channels),
        layers_per_block=recipe.layers_per_block,
        latent_channels=recipe.latent_channels,
        norm_num_groups=recipe.norm_num_groups,
        sample_size=recipe.resolution,
    )


def _pixels(ds: ImageDataset, resolution: int) -> torch.Tensor:
    """Every image of ``ds`` as one [-1, 1] tensor (small domain sets fit in memory)."""
    return torch.cat(
        [
            images_to_tensor([ds.image(i) for i in range(s, min(s + 64, len(ds)))], resolution)
            for s in range(0, len(ds), 64)
        ]
    )


@torch.no_grad()
def reconstruction_error(vae, pixels: torch.Tensor, batch_size: int = 64) -> dict[str, float]:
    """Mean absolute error (in 0..255 grey levels), RMSE and PSNR (dB) of decode(mean(encode(x)))
    over a [-1, 1] batch, and the mean absolute error of the per-image channel means (the colour
    that leak-aligned noise relies on), in grey levels."""
    vae.eval()
    abs_sum = sq_sum = mean_err = 0.0
    n = 0
    for s in range(0, len(pixels), batch_size):
        x = pixels[s : s + batch_size]
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
        diff = (rec - x) * 127.5
        abs_sum += float(diff.abs().sum())
        sq_sum += float((diff**2).sum())
        mean_err += float(diff.mean(dim=(2, 3)).abs().sum())
        n += x.shape[0]
    px = n * pixels[0].numel()
    rmse = math.sqrt(sq_sum / px)
    return {
        "mae": abs_sum / px,
        "rmse": rmse,
        "psnr_db": 20 * math.log10(255.0 / max(rmse, 1e-8)),
        "channel_mean_mae": mean_err / (n * pixels.shape[1]),
        "images": n,
    }


def train_vae(
    train: ImageDataset,
    out: str | os.PathLike[str],
    recipe: VaeRecipe,
    *,
    held_out: ImageDataset | None = None,
    eval_images: int = 500,
    overwrite: bool = False,
    track: Track = no_track,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fit an ``AutoencoderKL`` to ``train`` and save it to ``out`` (``config.json`` +
    ``diffusion_pytorch_model.safetensors``, ``geosynth-vae.json`` with the recipe and the
    reconstruction errors on ``train`` and ``held_out``). Returns that summary."""
    recipe.check()
    out = Path(out)
    if out.exists() and not overwrite:
        raise GeosynthError(
            f"out={str(out)!r}: already exists; choose a new path or pass overwrite=True"
        )
    train.check_nonempty()
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    vae = build_vae(recipe)
    pixels = _pixels(train, recipe.resolution)
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=recipe.lr, total_steps=recipe.steps, pct_start=0.05
    )
    history: list[dict[str, float]] = []
    vae.train()
    for step in track(range(recipe.steps), recipe.steps, "training VAE"):
        idx = torch.from_numpy(rng.integers(len(pixels), size=recipe.batch_size))
        x = pixels[idx]
        if recipe.flip:
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        rec_loss = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        loss = rec_loss + recipe.kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append({"step": step + 1, "loss": loss.item(), "recon": rec_loss.item()})
        if (step + 1) % max(1, recipe.steps // 10) == 0:
            log(f"VAE step {step + 1}/{recipe.steps}: reconstruction loss {rec_loss.item():.4f}")
    vae.eval()
    with torch.no_grad():
        means = torch.cat(
            [vae.encode(pixels[s : s + 64]).latent_dist.mean for s in range(0, len(pixels), 64)]
        )
    vae.register_to_config(scaling_factor=float(1.0 / means.std()))
    side = recipe.resolution // 2 ** (len(recipe.block_out_channels) - 1)
    # a seeded sample of the training images (the dataset is ordered by class)
    pick = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(recipe.seed))
    pick = pick[:eval_images]
    summary: dict[str, Any] = {
        "format": "geosynth-vae/1",
        "recipe": {**asdict(recipe), "block_out_channels": list(recipe.block_out_channels)},
        "scaling_factor": vae.config.scaling_factor,
        "latent_shape": [recipe.latent_channels, side, side],
        "data": {
            "source": str(train.source),
            "fingerprint": train.fingerprint(),
            "images": len(train),
        },
        "reconstruction": {"train": reconstruction_error(vae, pixels[pick])},
        "final_loss": history[-1]["recon"],
    }
    if held_out is not None and len(held_out):
        summary["reconstruction"]["held_out"] = reconstruction_error(
            vae, _pixels(held_out, recipe.resolution)
        )
        summary["data"]["held_out"] = str(held_out.source)
    prov = Provenance.start("train-vae", seeds={"seed": recipe.seed})
    prov.inputs[f"dataset:{train.source}"] = train.fingerprint()
    with atomic_path(out) as tmp:
        vae.save_pretrained(tmp, safe_serialization=True)
        (tmp / "geosynth-vae.json").write_text(json_text(summary, indent=2) + "\n")
        (tmp / "loss.csv").write_text(
            "step,loss,recon\n"
            + "".join(f"{h['step']},{h['loss']:.6f},{h['recon']:.6f}\n" for h in history)
        )
        write_provenance(tmp, prov)
    return summary


def make_domain_pipeline(
    vae_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    unet_config: dict[str, Any],
    *,
    text_width: int = 64,
    seed: int = 0,
) -> Path:
    """A Stable-Diffusion-shaped pipeline around a domain autoencoder, for ``finetune --init
    scratch`` (a UNet trained from scratch in that latent space): the VAE of ``vae_dir``, a
    frozen random CLIP text encoder of width ``text_width`` with the toy tokenizer (each class
    prompt becomes a fixed embedding sequence: class conditioning through cross-attention, as
    SD conditions on text), a random UNet of ``unet_config`` (replaced by training), and SD
    2.1-base's noise schedule (scaled-linear betas 0.00085..0.012 over 1000 steps, so a non-zero
    terminal SNR; DDIM with "leading" spacing, no clipping of the predicted latents)."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from geosynth.defaults import SD21_SCHEDULER_CONFIG
    from geosynth.diffusion.tokenizer import build_toy_tokenizer

    vae = AutoencoderKL.from_pretrained(vae_dir)
    if unet_config.get("in_channels", 4) != vae.config.latent_channels:
        raise GeosynthError(
            f"`unet_config`: in_channels must equal the VAE's latent_channels "
            f"({vae.config.latent_channels})"
        )
    torch.manual_seed(seed)
    tok = build_toy_tokenizer()
    te = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=text_width,
            intermediate_size=2 * text_width,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=text_width,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    config = {**unet_config, "cross_attention_dim": text_width}
    sched = {k: v for k, v in SD21_SCHEDULER_CONFIG.items() if k != "skip_prk_steps"}
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        unet=UNet2DConditionModel.from_config(config),
        scheduler=DDIMScheduler(**sched, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    with atomic_path(out) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
    return Path(out)
