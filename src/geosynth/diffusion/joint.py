"""Joint image + mask generation (SatSynth, Toker et al. CVPR 2024; seed 002): one diffusion
model denoises the image latents and the segmentation mask together.

The mask of K classes is ``ceil(log2 K)`` analog bits (Chen et al.'s "analog bits"): class ``c``
written in binary, each bit as -1 or +1, one channel per bit, concatenated to the image latents.
Like SatSynth, the mask channels live at latent resolution: the mask is reduced to the latent
grid (each latent cell takes its most frequent class, ignored pixels not voting) and a generated
mask is brought back to image size by repeating each cell (nearest). Decoding thresholds each
bit at 0; a code >= K names no class and becomes ignore (counted: the report's
``invalid_pixels``). An ignored training cell is written as the spare code ``2**bits - 1`` when
that is no class (K not a power of two), so the model learns to mark unlabelled ground the way
decoding reads it; with no spare code its bits are 0, half way between the two values.

A pretrained UNet gets ``bits`` more input channels (zero-initialised, as map conditioning
does) and ``bits`` more output channels (zero weights and bias): at step 0 it computes exactly
what the base model did on the image channels and predicts 0 for the mask channels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from geosynth.data.legend import Legend
from geosynth.diffusion.mapcond import widen_conv_in
from geosynth.diffusion.types import UNet
from geosynth.errors import GeosynthError


def bit_count(num_classes: int) -> int:
    """Analog bits for ``num_classes`` classes: ceil(log2 K), at least 1."""
    if num_classes < 1:
        raise GeosynthError(f"num_classes={num_classes}: a mask needs at least one class")
    return max(1, math.ceil(math.log2(num_classes)))


def encode_bits(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """B x H x W class indices (-1 or >= K: ignored) -> B x bits x H x W in {-1, 1} (ignored
    cells: the spare code, else 0; see the module docstring). Most significant bit first."""
    bits = bit_count(num_classes)
    classes = classes.long()
    valid = (classes >= 0) & (classes < num_classes)
    spare = 2**bits - 1
    code = torch.where(valid, classes, torch.full_like(classes, spare))
    shifts = torch.arange(bits - 1, -1, -1, device=classes.device).view(1, -1, 1, 1)
    out = ((code.unsqueeze(1) >> shifts) & 1).float() * 2 - 1
    if spare < num_classes:  # no spare code: ignored cells carry no bit
        out = out * valid.unsqueeze(1)
    return out


def decode_bits(x: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, int]:
    """B x bits x H x W analog bits -> (B x H x W class indices with -1 for codes that name no
    class, how many such cells there were)."""
    bits = x.shape[1]
    weights = (2 ** torch.arange(bits - 1, -1, -1, device=x.device)).view(1, -1, 1, 1)
    code = ((x > 0).long() * weights).sum(1)
    invalid = code >= num_classes
    return torch.where(invalid, torch.full_like(code, -1), code), int(invalid.sum())


def to_latent_grid(
    classes: np.ndarray | torch.Tensor, factor: int, num_classes: int
) -> torch.Tensor:
    """H x W class indices -> (H/factor) x (W/factor): each cell's most frequent class among its
    labelled pixels (ties to the lower index), -1 where every pixel is ignored."""
    c = torch.as_tensor(np.asarray(classes)).long()
    h, w = c.shape[0] // factor, c.shape[1] // factor
    blocks = c[: h * factor, : w * factor].reshape(h, factor, w, factor).permute(0, 2, 1, 3)
    blocks = blocks.reshape(h, w, factor * factor)
    valid = (blocks >= 0) & (blocks < num_classes)
    hot = torch.nn.functional.one_hot(torch.where(valid, blocks, 0), num_classes)
    counts = (hot * valid.unsqueeze(-1)).sum(2)
    best = counts.argmax(-1)
    return torch.where(counts.sum(-1) > 0, best, torch.full_like(best, -1))


def to_image_grid(classes: torch.Tensor, factor: int) -> np.ndarray:
    """h x w latent-grid classes -> (h*factor) x (w*factor), each cell repeated (nearest)."""
    arr = classes.cpu().numpy()
    return np.repeat(np.repeat(arr, factor, axis=0), factor, axis=1)


def widen_conv_out(unet: UNet, extra: int) -> None:
    """Give a UNet ``extra`` more output channels with zero weights and bias (predicting 0)."""
    old = unet.conv_out
    new = nn.Conv2d(
        old.in_channels, old.out_channels + extra, old.kernel_size, old.stride, old.padding
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[: old.out_channels] = old.weight
        assert new.bias is not None and old.bias is not None
        new.bias.zero_()
        new.bias[: old.out_channels] = old.bias
    unet.conv_out = new.to(old.weight.device, old.weight.dtype)
    unet.register_to_config(out_channels=old.out_channels + extra)


def prepare_joint_unet(unet: UNet, latent_channels: int, num_classes: int) -> int:
    """Fit a UNet to image latents + mask bits (widening a latent-only one); the bit count."""
    bits = bit_count(num_classes)
    want = latent_channels + bits
    have = (int(unet.config.in_channels), int(unet.config.out_channels))
    if have == (latent_channels, latent_channels):
        widen_conv_in(unet, bits)
        widen_conv_out(unet, bits)
    elif have != (want, want):
        raise GeosynthError(
            f"the UNet takes {have[0]} and gives {have[1]} channels; joint masks of "
            f"{num_classes} classes need {want} ({latent_channels} latent + {bits} mask bits)"
        )
    return bits


def joint_unet_config(config: dict[str, Any], latent_channels: int, num_classes: int):
    """A from-scratch UNet config with the mask bits added to its input and output."""
    want = latent_channels + bit_count(num_classes)
    return {**config, "in_channels": want, "out_channels": want}


def joint_card(legend: Legend, latent_channels: int) -> dict[str, Any]:
    """The joint-mask setup as the model card records it (``generate`` reads it)."""
    k = len(legend)
    return {
        "legend": legend.to_dict(),
        "num_classes": k,
        "bits": bit_count(k),
        "latent_channels": latent_channels,
        "mask_resolution": "latent",
    }
