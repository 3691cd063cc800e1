"""Features of a classifier the user trained with ``geosynth train-clf``: the image embedding its
head reads (CLIP's normalised image feature, or a timm backbone's pooled pre-logits), with the
classifier's own evaluation preprocessing.

Seed 001's pLoRA clusters SAR ships in the feature space of a ResNet-50 trained on SAR data; this
is how that space is reproduced with a classifier of one's own (``features='clf:PATH'``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from geosynth.errors import GeosynthError
from geosynth.features.base import FeatureExtractor

MODEL_FILE = "model.safetensors"


def classifier_file(ref: str) -> Path:
    """A train-clf ``model.safetensors``, given as the file, its ``seed-S/`` folder, or a train-clf
    output holding exactly one seed."""
    path = Path(ref)
    if path.is_file():
        return path
    if (path / MODEL_FILE).is_file():
        return path / MODEL_FILE
    seeds = sorted(path.glob(f"seed-*/{MODEL_FILE}")) if path.is_dir() else []
    spec = f"clf:{ref}"  # the feature spec that named it, as errors show it
    if len(seeds) == 1:
        return seeds[0]
    if seeds:
        raise GeosynthError(
            f"features={spec!r}: {len(seeds)} seeds; name one, e.g. clf:{seeds[0].parent}"
        )
    raise GeosynthError(
        f"features={spec!r}: expected a train-clf output, its seed-S folder or model.safetensors"
    )


class ClassifierExtractor(FeatureExtractor):
    def __init__(self, spec: str, ref: str, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(device, dtype)
        from geosynth.backbones import eval_transform
        from geosynth.classify.checkpoint import load_classifier

        path = classifier_file(ref)
        model = load_classifier(path)
        self.spec = spec
        self.model = model.eval().to(device)
        self._transform = eval_transform(
            model.image_size, model.mean, model.std, model.interpolation
        )
        with torch.no_grad():
            probe = torch.zeros(1, 3, model.image_size, model.image_size, device=device)
            self.dim = int(model.features(probe).shape[-1])
        self.preprocessing = {
            "library": "geosynth train-clf",
            "classifier": str(path),
            "backbone": model.spec.backbone,
            "image_size": model.image_size,
            "mean": list(model.mean),
            "std": list(model.std),
            "interpolation": model.interpolation,
            "output": "image features before the head",
        }

    def transform(self, image: Image.Image) -> torch.Tensor:
        return self._transform(image.convert("RGB"))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.features(pixels)
