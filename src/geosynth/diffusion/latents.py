"""Images to and from the latent space the UNet sees (VAE latents times ``scaling_factor``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from geosynth.diffusion.types import VAE


def vae_scale_factor(vae: VAE) -> int:
    """Pixels per latent cell: 2 ** (number of VAE blocks - 1), 8 for SD."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def images_to_tensor(images: Sequence[Image.Image | np.ndarray], size: int) -> torch.Tensor:
    """RGB images, resized (bicubic) and centre-cropped to ``size``, as a [-1, 1] N x 3 x H x W batch:
    the preprocessing of diffusers' SD training scripts.

    Items may also be 3 x H x W float arrays already in [-1, 1] (a radiometry spec's output):
    they get the same bicubic resize and crop, per channel in float, with no 8-bit rounding.
    """
    out = []
    for img in images:
        if isinstance(img, np.ndarray):
            out.append(torch.from_numpy(_resize_crop_float(img, size)))
            continue
        img = img.convert("RGB")
        w, h = img.size
        scale = size / min(w, h)
        if scale != 1:
            img = img.resize(
                (max(size, round(w * scale)), max(size, round(h * scale))),
                Image.Resampling.BICUBIC,
            )
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
        arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
        out.append(torch.from_numpy(arr).permute(2, 0, 1))
    return torch.stack(out)


def _resize_crop_float(arr: np.ndarray, size: int) -> np.ndarray:
    """The geometry of :func:`images_to_tensor` for a C x H x W float array (PIL mode F)."""
    _, h, w = arr.shape
    scale = size / min(w, h)
    chans = []
    for c in arr.astype(np.float32):
        ch = Image.fromarray(c, mode="F")
        if scale != 1:
            ch = ch.resize(
                (max(size, round(w * scale)), max(size, round(h * scale))),
                Image.Resampling.BICUBIC,
            )
        cw, chh = ch.size
        left, top = (cw - size) // 2, (chh - size) // 2
        chans.append(np.asarray(ch.crop((left, top, left + size, top + size)), dtype=np.float32))
    # Bicubic overshoots a little at edges; the model's input range is [-1, 1].
    return np.clip(np.stack(chans), -1.0, 1.0)


@torch.no_grad()
def encode_latents(
    vae: VAE,
    pixels: torch.Tensor,
    *,
    sample: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Scaled latents of a [-1, 1] batch: the posterior mean (or a sample) times
    ``scaling_factor`` (the space diffusion runs in)."""
    param = next(vae.parameters())
    dist = vae.encode(pixels.to(param.device, param.dtype)).latent_dist
    z = dist.sample(generator) if sample else dist.mean
    return z * vae.config.scaling_factor


@torch.no_grad()
def decode_latents(vae: VAE, latents: torch.Tensor) -> list[Image.Image]:
    """PIL images from scaled latents."""
    param = next(vae.parameters())
    x = vae.decode(latents.to(param.device, param.dtype) / vae.config.scaling_factor).sample
    arr = ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a, "RGB") for a in arr]
