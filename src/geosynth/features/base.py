"""The feature-extractor interface every backend implements (the factory is in
:mod:`geosynth.features.spec`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from PIL import Image

from geosynth.data.multiband import BandInput


class FeatureExtractor(ABC):
    """Turns PIL images into one vector each. ``preprocessing`` is recorded in every output file,
    since metrics computed on features depend on it."""

    spec: str
    dim: int
    preprocessing: dict[str, Any]
    #: multi-band native input (timm only): ``transform`` then takes the standardised
    #: C x H x W tensor :meth:`BandInput.tensor` makes, not a PIL image
    band_input: BandInput | None = None

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device = device
        self.dtype = dtype

    @abstractmethod
    def transform(self, image: Image.Image) -> torch.Tensor:
        """One image (or, with :attr:`band_input`, one standardised band tensor) to a
        C x H x W float tensor (runs in data-loader workers)."""

    @abstractmethod
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """A preprocessed batch (on ``device``) to B x dim features."""

    @torch.inference_mode()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(self.device, non_blocking=True)
        if self.dtype != torch.float32:
            with torch.autocast(self.device.type, dtype=self.dtype):
                return self.forward(pixels).float()
        return self.forward(pixels.float()).float()

    def describe(self) -> dict[str, Any]:
        """What goes into file metadata and reports."""
        return {
            "feature_model": self.spec,
            "feature_dim": self.dim,
            "preprocessing": self.preprocessing,
        }
