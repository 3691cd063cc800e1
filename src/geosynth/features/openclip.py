"""open_clip image towers: ``encode_image`` features (not normalised; metrics use raw vectors)."""

from __future__ import annotations

import torch
from PIL import Image

from geosynth.errors import GeosynthError
from geosynth.features.base import FeatureExtractor


def parse_open_clip(ref: str) -> tuple[str, str | None]:
    """ "ViT-B-16/openai" -> ("ViT-B-16", "openai"); schema refs (local-dir:, hf-hub:) pass whole."""
    if ref.startswith(("local-dir:", "hf-hub:")):
        return ref, None
    name, _, pretrained = ref.partition("/")
    return name, pretrained or None


class OpenClipExtractor(FeatureExtractor):
    def __init__(self, spec: str, ref: str, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(device, dtype)
        import open_clip

        name, pretrained = parse_open_clip(ref)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, device=device
            )
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise GeosynthError(
                f"features={spec!r}: cannot load open_clip model: {first}"
            ) from None
        self.spec = spec
        self.model = model.eval()
        self.preprocess = preprocess
        self.dim = int(model.visual.output_dim)
        self.preprocessing = {
            "library": "open_clip",
            "model": name,
            "pretrained": pretrained,
            "transform": repr(preprocess).replace("\n", " "),
            "output": "encode_image",
        }

    def transform(self, image: Image.Image) -> torch.Tensor:
        return self.preprocess(image)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)
