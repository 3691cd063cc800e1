"""Training augmentations (seed 000, appendix A.2) and batch mixing (mixup, cutmix); the
evaluation transforms live in :mod:`geosynth.backbones` (re-exported here).

The seed lists the operations (random resized crop with scale (0.8, 1.0), horizontal flip,
colour jitter, random grayscale, Gaussian blur, solarisation) but not their strengths or
probabilities; those below are the usual SimCLR/BYOL values, recorded in every report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from geosynth.backbones import eval_transform, interpolation_mode, native_eval_transform

__all__ = [
    "AUGMENT_PARAMS",
    "NATIVE_AUGMENT_PARAMS",
    "eval_transform",
    "mix_batch",
    "native_eval_transform",
    "native_train_transform",
    "one_hot",
    "train_transform",
]

#: Strengths and probabilities of the augmentations (seed 000 names the operations only).
AUGMENT_PARAMS: dict[str, Any] = {
    "random_resized_crop_scale": (0.8, 1.0),
    "hflip_p": 0.5,
    "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1, "p": 0.8},
    "grayscale_p": 0.2,
    "gaussian_blur": {"sigma": (0.1, 2.0), "p": 0.5},
    "solarize": {"threshold": 128, "p": 0.2},
}


def train_transform(
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str = "bicubic",
    *,
    augment: bool = True,
) -> Callable[[Image.Image], torch.Tensor]:
    """Seed 000's augmentations (see :data:`AUGMENT_PARAMS`), or the eval transform when
    ``augment`` is off."""
    if not augment:
        return eval_transform(size, mean, std, interpolation)
    from torchvision import transforms as T

    p = AUGMENT_PARAMS
    cj = p["color_jitter"]
    blur = p["gaussian_blur"]
    # Kernel about a tenth of the image, odd, as in SimCLR (23 px at 224).
    kernel = max(3, (size // 10) | 1)
    return T.Compose(
        [
            T.RandomResizedCrop(
                size,
                scale=p["random_resized_crop_scale"],
                interpolation=interpolation_mode(interpolation),
            ),
            T.RandomHorizontalFlip(p["hflip_p"]),
            T.RandomApply(
                [T.ColorJitter(cj["brightness"], cj["contrast"], cj["saturation"], cj["hue"])],
                p=cj["p"],
            ),
            T.RandomGrayscale(p["grayscale_p"]),
            T.RandomApply([T.GaussianBlur(kernel, sigma=blur["sigma"])], p=blur["p"]),
            T.RandomSolarize(p["solarize"]["threshold"], p=p["solarize"]["p"]),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, num_classes).float()


def mix_batch(
    pixels: torch.Tensor,
    targets: torch.Tensor,
    *,
    mixup: float,
    cutmix: float,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al.) or CutMix (Yun et al.) on a batch with soft ``targets`` (B x K).

    ``mixup`` and ``cutmix`` are the Beta(alpha, alpha) parameters (0 disables); with both on,
    each batch uses one of them with equal chance. The pairing is a random permutation of the
    batch. CutMix's mixing weight is the pasted box's actual area fraction.
    """
    choices = [m for m, a in (("mixup", mixup), ("cutmix", cutmix)) if a > 0]
    if not choices or pixels.shape[0] < 2:
        return pixels, targets
    kind = choices[int(rng.integers(len(choices)))]
    alpha = mixup if kind == "mixup" else cutmix
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(pixels.shape[0])).to(pixels.device)
    if kind == "mixup":
        mixed = lam * pixels + (1 - lam) * pixels[perm]
    else:
        h, w = pixels.shape[-2:]
        cut_h, cut_w = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        mixed = pixels.clone()
        mixed[..., y0:y1, x0:x1] = pixels[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return mixed, lam * targets + (1 - lam) * targets[perm]


#: Augmentations of multi-band native data (standardised float tensors): the geometric and blur
#: operations of :data:`AUGMENT_PARAMS`; colour jitter, grayscale and solarisation are 8-bit RGB
#: operations with no meaning for reflectance or backscatter bands, so they are left out.
NATIVE_AUGMENT_PARAMS: dict[str, Any] = {
    "random_resized_crop_scale": AUGMENT_PARAMS["random_resized_crop_scale"],
    "hflip_p": AUGMENT_PARAMS["hflip_p"],
    "gaussian_blur": AUGMENT_PARAMS["gaussian_blur"],
}


def native_train_transform(
    size: int, interpolation: str = "bilinear", *, augment: bool = True
) -> Callable[[torch.Tensor], torch.Tensor]:
    """:data:`NATIVE_AUGMENT_PARAMS` on multi-band tensors, or the eval transform."""
    if not augment:
        return native_eval_transform(size, interpolation)
    from torchvision import transforms as T

    p = NATIVE_AUGMENT_PARAMS
    blur = p["gaussian_blur"]
    kernel = max(3, (size // 10) | 1)
    return T.Compose(
        [
            T.RandomResizedCrop(
                size,
                scale=p["random_resized_crop_scale"],
                interpolation=interpolation_mode(interpolation),
                antialias=True,
            ),
            T.RandomHorizontalFlip(p["hflip_p"]),
            T.RandomApply([T.GaussianBlur(kernel, sigma=blur["sigma"])], p=blur["p"]),
        ]
    )
