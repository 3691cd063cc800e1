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


def crop_geometry(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """How :func:`images_to_tensor` fits an image to ``size``: the size it is resized to (the
    shorter side becomes ``size``) and the top-left corner of the centred ``size`` crop, as
    (resized width, resized height, left, top)."""
    scale = size / min(width, height)
    if scale != 1:
        width, height = max(size, round(width * scale)), max(size, round(height * scale))
    return width, height, (width - size) // 2, (height - size) // 2


def image_size(image: Image.Image | np.ndarray) -> tuple[int, int]:
    """(width, height) of a PIL image or a C x H x W array."""
    if isinstance(image, np.ndarray):
        return int(image.shape[2]), int(image.shape[1])
    return image.size


def size_conditioning(image: Image.Image | np.ndarray, size: int, flip: bool) -> list[float]:
    """SDXL's six size numbers for an image as :func:`images_to_tensor` fits it to ``size``:
    original height and width, crop top and left (in the resized image; mirrored with the image
    when ``flip``), target height and width."""
    w, h = image_size(image)
    rw, _, left, top = crop_geometry(w, h, size)
    if flip:
        left = rw - left - size
    return [float(h), float(w), float(top), float(left), float(size), float(size)]


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
        rw, rh, left, top = crop_geometry(w, h, size)
        if (rw, rh) != (w, h):
            img = img.resize((rw, rh), Image.Resampling.BICUBIC)
        img = img.crop((left, top, left + size, top + size))
        arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
        out.append(torch.from_numpy(arr).permute(2, 0, 1))
    return torch.stack(out)


def _resize_crop_float(arr: np.ndarray, size: int) -> np.ndarray:
    """The geometry of :func:`images_to_tensor` for a C x H x W float array (PIL mode F)."""
    _, h, w = arr.shape
    rw, rh, left, top = crop_geometry(w, h, size)
    chans = []
    for c in arr.astype(np.float32):
        ch = Image.fromarray(c, mode="F")
        if (rw, rh) != (w, h):
            ch = ch.resize((rw, rh), Image.Resampling.BICUBIC)
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
