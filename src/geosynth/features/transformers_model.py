"""transformers image models (DINOv2 by default): the CLS token after the final layer norm, i.e.
``pooler_output`` (what the rarity analysis of seed 000 uses), with the model's own processor."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from geosynth.features.base import FeatureExtractor
from geosynth.runtime import load_with


class TransformersExtractor(FeatureExtractor):
    def __init__(self, spec: str, ref: str, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(device, dtype)
        from transformers import AutoImageProcessor, AutoModel
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()

        self.spec = spec
        self.processor = load_with(AutoImageProcessor.from_pretrained, ref, "features")
        self.model = load_with(AutoModel.from_pretrained, ref, "features").eval().to(device)
        self.dim = int(self.model.config.hidden_size)
        p = self.processor
        self.preprocessing = {
            "library": "transformers",
            "model": ref,
            "processor": type(p).__name__,
            **{
                k: plain_json(getattr(p, k, None))
                for k in (
                    "size",
                    "crop_size",
                    "do_center_crop",
                    "resample",
                    "image_mean",
                    "image_std",
                )
            },
            "output": "pooler_output",
        }

    def transform(self, image: Image.Image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixels)
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state[:, 0]


def plain_json(value: Any) -> Any:
    """A processor setting as plain JSON: transformers holds sizes as ``SizeDict`` dataclasses
    and resampling as enums, whose repr is no use to a reader of the metadata."""
    import dataclasses
    import enum

    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return plain_json(value.value)
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_json(dataclasses.asdict(value))
    if hasattr(value, "items"):
        return plain_json(dict(value.items()))
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
