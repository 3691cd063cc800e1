"""open_clip models: the one loader every package uses (features, the CLIP classifier, CLIP
score), with one spec grammar, and the image-tower feature extractor.

A reference is ``NAME`` or ``NAME/PRETRAINED`` (open_clip's model name and weights tag, e.g.
``ViT-B-16/openai``), ``hf-hub:ID``, ``local-dir:DIR``, or a directory holding
``open_clip_config.json`` (read as ``local-dir:DIR``); an ``open_clip:`` prefix is accepted.
"""

from __future__ import annotations

import torch
from PIL import Image

from geosynth.backbones import load_open_clip
from geosynth.features.base import FeatureExtractor


class OpenClipExtractor(FeatureExtractor):
    """``encode_image`` features (not normalised; metrics use the raw vectors)."""

    def __init__(self, spec: str, ref: str, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(device, dtype)
        clip = load_open_clip(spec, what="features", device=device)
        self.spec = spec
        self.model = clip.model
        self.preprocess = clip.preprocess
        self.dim = int(clip.model.visual.output_dim)
        self.preprocessing = {
            "library": "open_clip",
            "model": clip.name,
            "pretrained": clip.pretrained,
            "transform": repr(clip.preprocess).replace("\n", " "),
            "output": "encode_image",
        }

    def transform(self, image: Image.Image) -> torch.Tensor:
        return self.preprocess(image)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)
