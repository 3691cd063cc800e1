"""The few-shot images prepared once for fine-tuning: prompts, and VAE latents encoded up front.

While the encoder is frozen each image's posterior N(mean, std^2) is fixed: we encode it once
(and its mirror image when random flips are on) and draw a fresh latent sample at every step,
which is exactly what re-encoding each step would do, without the VAE's cost. Pixels are kept
when part of the VAE trains (the decoder's loss compares decodings to the images; a training
encoder re-encodes them every step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from geosynth.data.dataset import ImageDataset
from geosynth.data.names import fill_prompt
from geosynth.diffusion.latents import image_size, images_to_tensor, size_conditioning
from geosynth.diffusion.types import VAE
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track


@dataclass
class TrainingSet:
    """N training examples; index 0 of the latent tensors (and of ``sizes``) is the image,
    index 1 its mirror."""

    prompts: list[str]
    labels: list[int]
    class_names: list[str]
    latent_mean: torch.Tensor  # F x N x C x h x w, scaled by the VAE's scaling_factor
    latent_std: torch.Tensor
    pixels: torch.Tensor | None  # N x 3 x H x W in [-1, 1], when the decoder trains
    #: F x N x 6: each view's original height and width, crop top and left, target height and
    #: width, as the image was resized and cropped (SDXL's size conditioning)
    sizes: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def flips(self) -> int:
        return int(self.latent_mean.shape[0])

    def unet_inputs(self, idx, flip, generator, device) -> dict[str, torch.Tensor]:
        """Extra UNet keyword inputs for a micro-batch (map-conditioned sets add the maps)."""
        return {}


def check_resolution(
    resolution: int, vae_factor: int, unet_down: int, arg: str = "resolution"
) -> None:
    """The VAE shrinks by ``vae_factor`` and the UNet halves the latent ``unet_down - 1`` times;
    ``arg`` names the parameter that gave ``resolution`` in the error."""
    multiple = vae_factor * 2 ** (unet_down - 1)
    if resolution <= 0 or resolution % multiple:
        raise GeosynthError(
            f"{arg}={resolution}: must be a positive multiple of {multiple} for this model "
            f"(VAE factor {vae_factor} x UNet downsampling {2 ** (unet_down - 1)})"
        )


def build_training_set(
    ds: ImageDataset,
    vae: VAE,
    *,
    resolution: int,
    template: str,
    flip: bool,
    keep_pixels: bool,
    batch_size: int = 8,
    track: Track = no_track,
    warn: Callable[[str], None] = print,
) -> TrainingSet:
    """Load, resize and encode every image of ``ds``; prompts use prompt-friendly class names."""
    ds.check_nonempty()
    param = next(vae.parameters())
    sf = float(vae.config.scaling_factor)
    means: list[list[torch.Tensor]] = [[] for _ in range(2 if flip else 1)]
    stds: list[list[torch.Tensor]] = [[] for _ in range(2 if flip else 1)]
    pixels: list[torch.Tensor] = []
    sizes: list[list[list[float]]] = [[] for _ in range(2 if flip else 1)]
    small, smallest = 0, (0, 0)
    order = range(0, len(ds), batch_size)
    for start in track(order, len(order), "encode latents"):
        images = [ds.model_input(i) for i in range(start, min(start + batch_size, len(ds)))]
        for img in images:
            for f, rows in enumerate(sizes):
                rows.append(size_conditioning(img, resolution, flip=f == 1))
            wh = image_size(img)
            if min(wh) < resolution:
                small += 1
                smallest = min(smallest, wh, key=min) if small > 1 else wh
        x = images_to_tensor(images, resolution)
        if keep_pixels:
            pixels.append(x)
        views = [x, torch.flip(x, dims=[3])] if flip else [x]
        with torch.no_grad():
            for f, view in enumerate(views):
                dist = vae.encode(view.to(param.device, param.dtype)).latent_dist
                means[f].append(dist.mean.float().cpu() * sf)
                stds[f].append(dist.std.float().cpu() * sf)
    if small:
        warn(
            f"warning: {small} of {len(ds)} images are smaller than {resolution} px (smallest "
            f"{smallest[0]}x{smallest[1]}); they were upscaled (bicubic)"
        )
    labels = [s.label for s in ds.samples]
    names = ds.prompt_names
    return TrainingSet(
        prompts=[fill_prompt(template, names[y]) for y in labels],
        labels=labels,
        class_names=list(ds.class_names),
        latent_mean=torch.stack([torch.cat(m) for m in means]),
        latent_std=torch.stack([torch.cat(s) for s in stds]),
        pixels=torch.cat(pixels) if keep_pixels else None,
        sizes=torch.tensor(sizes, dtype=torch.float32),
    )
