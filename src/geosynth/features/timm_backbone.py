"""timm backbones: globally pooled features (``num_classes=0``) with timm's own data config."""

from __future__ import annotations

import torch
from PIL import Image

from geosynth.errors import GeosynthError
from geosynth.features.base import FeatureExtractor


class TimmExtractor(FeatureExtractor):
    def __init__(self, spec: str, ref: str, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(device, dtype)
        import timm
        from timm.data import create_transform, resolve_data_config

        try:
            model = timm.create_model(ref, pretrained=True, num_classes=0)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise GeosynthError(f"--model {spec}: cannot load timm model: {first}") from None
        self.spec = spec
        self.model = model.eval().to(device)
        config = resolve_data_config({}, model=model)
        self._transform = create_transform(**config)
        self.dim = int(model.num_features)
        self.preprocessing = {
            "library": "timm",
            "model": ref,
            **{k: str(v) for k, v in config.items()},
            "output": "pooled features",
        }

    def transform(self, image: Image.Image) -> torch.Tensor:
        return self._transform(image)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)
