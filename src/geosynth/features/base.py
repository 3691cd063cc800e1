"""The feature-extractor interface every backend implements, and the factory that picks one.

Model specs (``features``; the CLI's ``--model`` / ``--features``):

* ``dinov2-small|base|large|giant`` -> ``facebook/dinov2-*`` (transformers, CLS token);
* ``hf:ID_OR_DIR`` or any hub id / directory with a transformers config -> transformers image model;
* ``open_clip:NAME/PRETRAINED`` (``open_clip:ViT-B-16/openai``), ``open_clip:local-dir:DIR``,
  ``open_clip:hf-hub:ID`` -> the open_clip image tower;
* ``timm:NAME`` (pretrained weights from the hub), ``timm:local-dir:DIR`` -> a timm backbone's
  pooled features;
* ``inception`` / ``inception:WEIGHTS.pth`` -> the FID Inception-v3 pool3 features (torch-fidelity);
* ``clf:PATH`` -> the image features of a ``train-clf`` classifier (its output, a ``seed-S``
  folder or ``model.safetensors``), before its head.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from PIL import Image

from geosynth.data.multiband import BandInput
from geosynth.errors import GeosynthError
from geosynth.runtime import pick_device, pick_dtype, resolve_precision


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


DINOV2_ALIASES = {
    f"dinov2-{s}": f"facebook/dinov2-{s}" for s in ("small", "base", "large", "giant")
}


def create_extractor(
    features: str,
    *,
    device: str | None = None,
    precision: str = "auto",
    bands: BandInput | None = None,
) -> FeatureExtractor:
    """Build the extractor the spec ``features`` names (see the module docstring), on GPU in
    reduced precision when one is present (``precision`` auto -> fp16 on CUDA, fp32 on CPU).
    ``bands``: read those bands of native data (timm backbones only, built with ``in_chans``)."""
    spec = features
    if bands is not None and not spec.startswith("timm:"):
        raise GeosynthError(
            f"features={spec!r}: multi-band input (`bands`) needs a timm:NAME model (built with "
            "in_chans); this one takes 8-bit RGB"
        )
    dev = pick_device(device)
    dtype = pick_dtype(resolve_precision(precision, dev), dev)
    if spec.startswith("open_clip:"):
        from geosynth.features.openclip import OpenClipExtractor

        return OpenClipExtractor(spec, spec.removeprefix("open_clip:"), dev, dtype)
    if spec == "inception" or spec.startswith("inception:"):
        from geosynth.features.inception import InceptionExtractor

        weights = spec.partition(":")[2] or None
        return InceptionExtractor(spec, weights, dev, dtype)
    if spec.startswith("clf:"):
        from geosynth.features.classifier import ClassifierExtractor

        return ClassifierExtractor(spec, spec.removeprefix("clf:"), dev, dtype)
    if spec.startswith("timm:"):
        from geosynth.features.timm_backbone import TimmExtractor

        return TimmExtractor(spec, spec.removeprefix("timm:"), dev, dtype, bands=bands)
    from geosynth.features.transformers_model import TransformersExtractor

    ref = DINOV2_ALIASES.get(spec, spec.removeprefix("hf:"))
    return TransformersExtractor(spec, ref, dev, dtype)
