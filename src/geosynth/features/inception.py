"""The FID Inception-v3 (pool3, 2048 features) as the common tools compute it.

This is torch-fidelity's ``FeatureExtractorInceptionV3``: the TensorFlow 2015-12-05 graph that the
original FID code used, converted to PyTorch, with TensorFlow-1-compatible bilinear resizing to
299 px inside the network. torchmetrics' ``FrechetInceptionDistance`` runs the same module, so
features (hence FIDs) agree with both tools.

Specs: ``inception`` downloads the weights torch-fidelity publishes (cached by torch.hub);
``inception:PATH`` loads a local copy of that ``.pth`` file (for offline machines).
Images enter as uint8 RGB; differently sized images are first resized to 299 px with PIL bicubic
(clean-fid's choice) so that a batch can be stacked; at 299 px the network's own resize is the
identity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geosynth.errors import GeosynthError
from geosynth.features.base import FeatureExtractor

INCEPTION_SIZE = 299


class InceptionExtractor(FeatureExtractor):
    def __init__(
        self, spec: str, weights: str | None, device: torch.device, dtype: torch.dtype
    ) -> None:
        # The network runs in float32 whatever ``precision`` says, as the FID tools do.
        super().__init__(device, torch.float32)
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import (
                URL_INCEPTION_V3,
                FeatureExtractorInceptionV3,
            )
        except ImportError:
            raise GeosynthError(
                f"features={spec!r}: needs the torch-fidelity package (pip install torch-fidelity)"
            ) from None
        if weights is not None and not Path(weights).is_file():
            raise GeosynthError(f"features={spec!r}: no such weights file {weights}")
        try:
            model = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"], feature_extractor_weights_path=weights
            )
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            where = (
                f"from {weights}"
                if weights
                else f"from {URL_INCEPTION_V3} (offline? download it elsewhere and pass "
                "features='inception:PATH')"
            )
            raise GeosynthError(
                f"features={spec!r}: cannot load the FID Inception weights {where}: {first}"
            ) from None
        self.spec = spec
        self.model = model.to(device)
        self.dim = 2048
        self.preprocessing = {
            "library": "torch-fidelity",
            "model": "FeatureExtractorInceptionV3 (FID Inception, TF 2015-12-05 weights)",
            "weights": weights or URL_INCEPTION_V3,
            "input": "uint8 RGB; resized to 299 px (PIL bicubic) when not already 299",
            "output": "pool3 (2048)",
        }

    def transform(self, image: Image.Image) -> torch.Tensor:
        img = image.convert("RGB")
        if img.size != (INCEPTION_SIZE, INCEPTION_SIZE):
            img = img.resize((INCEPTION_SIZE, INCEPTION_SIZE), Image.Resampling.BICUBIC)
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        (features,) = self.model(pixels.to(torch.uint8))
        return features

    @torch.inference_mode()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        # The base class casts to float; this network wants the uint8 images themselves.
        return self.forward(pixels.to(self.device)).float()
