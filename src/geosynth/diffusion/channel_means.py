"""Per-class channel means of VAE latents: the ``x0_cls`` of leak-aligned noise.

Each image is encoded at the fine-tuning resolution with the training preprocessing (resize,
centre crop, [-1, 1]), its posterior mean multiplied by ``vae.config.scaling_factor`` (the space
the UNet sees), averaged over pixels; then the per-image vectors are averaged per class.
With a radiometry spec, the images are the spec's float [-1, 1] input (no 8-bit rounding) and
the spec is recorded in the metadata.
"""

from __future__ import annotations

import torch

from geosynth.artifacts import ChannelMeans
from geosynth.data.dataset import ImageDataset
from geosynth.diffusion.latents import encode_latents, images_to_tensor
from geosynth.progress import Track, no_track


def per_image_channel_means(
    vae: torch.nn.Module,
    ds: ImageDataset,
    *,
    resolution: int,
    batch_size: int = 16,
    track: Track = no_track,
) -> torch.Tensor:
    """N x C: the pixel-averaged scaled latent of every image, in dataset order."""
    rows = []
    starts = range(0, len(ds), batch_size)
    for s in track(starts, len(starts), "encoding"):
        images = [ds.model_input(i) for i in range(s, min(s + batch_size, len(ds)))]
        z = encode_latents(vae, images_to_tensor(images, resolution))
        rows.append(z.float().mean(dim=(2, 3)).cpu())
    return torch.cat(rows)


def class_channel_means(
    vae: torch.nn.Module,
    ds: ImageDataset,
    *,
    resolution: int,
    batch_size: int = 16,
    track: Track = no_track,
) -> ChannelMeans:
    """K x C means (and stds over images) per class of ``ds``."""
    per_image = per_image_channel_means(
        vae, ds, resolution=resolution, batch_size=batch_size, track=track
    )
    labels = torch.tensor(ds.labels)
    means, stds = [], []
    for c in range(len(ds.class_names)):
        rows = per_image[labels == c]
        means.append(rows.mean(0))
        stds.append(rows.std(0, unbiased=False))
    metadata = {"resolution": str(resolution), "scaling_factor": str(vae.config.scaling_factor)}
    if ds.radiometry is not None:  # the means hold only for inputs made the same way
        metadata["radiometry"] = ds.radiometry.to_json()
    return ChannelMeans(
        means=torch.stack(means),
        class_names=list(ds.class_names),
        std=torch.stack(stds),
        metadata=metadata,
    )
