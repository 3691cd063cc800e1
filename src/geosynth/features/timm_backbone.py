"""timm backbones: globally pooled features (``num_classes=0``) with timm's own data config.

With a :class:`~geosynth.data.multiband.BandInput` the backbone is built with ``in_chans`` = the
number of bands (timm adapts the pretrained stem, ``adapt_input_conv``) and reads the standardised
bands, resized (short side) and centre-cropped to the model's input size.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from geosynth.data.multiband import BandInput
from geosynth.errors import GeosynthError
from geosynth.features.base import FeatureExtractor


class TimmExtractor(FeatureExtractor):
    def __init__(
        self,
        spec: str,
        ref: str,
        device: torch.device,
        dtype: torch.dtype,
        *,
        bands: BandInput | None = None,
    ) -> None:
        super().__init__(device, dtype)
        from geosynth.extras import require

        timm = require("timm", f"features={spec!r}")
        from timm.data import create_transform, resolve_data_config

        self.band_input = bands
        chans: dict[str, Any] = {"in_chans": bands.channels} if bands is not None else {}
        try:
            model = timm.create_model(ref, pretrained=True, num_classes=0, **chans)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise GeosynthError(f"features={spec!r}: cannot load timm model: {first}") from None
        self.spec = spec
        self.model = model.eval().to(device)
        config = resolve_data_config({}, model=model)
        self.dim = int(model.num_features)
        if bands is None:
            self._transform = create_transform(**config)
            input_info: dict[str, Any] = {k: str(v) for k, v in config.items()}
        else:
            from geosynth.backbones import native_eval_transform

            size = int(config["input_size"][-1])
            interp = str(config.get("interpolation", "bilinear"))
            self._transform = native_eval_transform(size, interp)
            input_info = {
                "input_size": str((bands.channels, size, size)),
                "interpolation": interp,
                "crop": "resize short side, centre crop",
                "bands": bands.to_dict(),
                "normalisation": "(value - mean_b) / std_b per band, native units",
            }
        self.preprocessing = {
            "library": "timm",
            "model": ref,
            **input_info,
            "output": "pooled features",
        }

    def transform(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        return self._transform(image)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)
