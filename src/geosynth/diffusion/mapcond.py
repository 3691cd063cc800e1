"""Semantic-map conditioning of a latent diffusion UNet (seed 004: Mari & Redondo, "latent
diffusion conditioned on semantic maps").

Two ways in, alone or together (``condition``):

* ``concat``: the map is brought to the latent size and concatenated to the noisy latent as
  extra input channels of the UNet. ``map_encoder`` says how: ``downsample`` (the one-hot map,
  bilinearly downsampled with anti-aliasing: per-class area fractions, seed 004's
  "downsampling condition"), ``vae`` (the map's colour rendering encoded by the frozen VAE,
  seed 004's "encoding condition") or ``learned`` (a small strided convolution stack trained
  with the UNet).
* ``cross-attention``: a small convolutional encoder pools the same map input to a
  ``tokens x tokens`` grid, projects each cell to the UNet's cross-attention width and adds a
  learned position embedding; the UNet attends to these tokens beside the text tokens
  (``text=beside``) or instead of them (``text=instead``).

A UNet trained from scratch gets the extra input channels in its config; a pretrained UNet has
its input convolution widened with zero-initialised weights for the new channels, so it starts
out computing exactly what it did before.

Classifier-free guidance over the map: during training each sample's map input is replaced by
zeros (the "blank" map) with probability ``dropout``; at sampling the blank map gives the
unconditional branch. ``dropout=1`` trains the same architecture that never sees a map (the
blank-map control of the tests and docs).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from geosynth.artifacts.jsontext import json_text
from geosynth.diffusion.types import Pipeline, UNet
from geosynth.errors import GeosynthError
from geosynth.limits import check_numbers

CONDITIONS = ("concat", "cross-attention", "both")
MAP_ENCODERS = ("downsample", "vae", "learned")
TEXT_MODES = ("beside", "instead")
ENCODER_DIR = "map_encoder"
LEARNED_CHANNELS = 8


@dataclass
class MapCondition:
    """How a UNet is conditioned on maps (part of the recipe; recorded in the card)."""

    condition: str = "concat"
    map_encoder: str = "downsample"
    text: str = "beside"
    tokens: int = 8
    dropout: float = 0.1

    def check(self) -> None:
        if self.condition not in CONDITIONS:
            raise GeosynthError(f"condition={self.condition!r}: expected one of {CONDITIONS}")
        if self.map_encoder not in MAP_ENCODERS:
            raise GeosynthError(f"map_encoder={self.map_encoder!r}: expected one of {MAP_ENCODERS}")
        if self.text not in TEXT_MODES:
            raise GeosynthError(f"text={self.text!r}: expected one of {TEXT_MODES}")
        if self.text == "instead" and not self.cross_attention:
            raise GeosynthError(
                "text='instead' replaces the text tokens by map tokens: it needs "
                "condition='cross-attention' or condition='both'"
            )
        check_numbers(dropout=self.dropout, tokens=self.tokens)

    @property
    def concat(self) -> bool:
        return self.condition in ("concat", "both")

    @property
    def cross_attention(self) -> bool:
        return self.condition in ("cross-attention", "both")

    def input_channels(self, num_classes: int, latent_channels: int) -> int:
        """Channels of the map input the encoder sees: one-hot classes or VAE latents."""
        return latent_channels if self.map_encoder == "vae" else num_classes

    def concat_channels(self, num_classes: int, latent_channels: int) -> int:
        """Extra UNet input channels (0 without concatenation)."""
        if not self.concat:
            return 0
        if self.map_encoder == "learned":
            return LEARNED_CHANNELS
        return self.input_channels(num_classes, latent_channels)


class MapEncoder(nn.Module):
    """Map input (B x C_in x H x W: one-hot at image size, or VAE latents at latent size) ->
    concatenation features at latent size and/or cross-attention tokens."""

    def __init__(
        self,
        cond: MapCondition,
        *,
        in_channels: int,
        vae_factor: int,
        cross_attention_dim: int,
    ) -> None:
        super().__init__()
        self.cond = cond
        self.in_channels = in_channels
        self.vae_factor = vae_factor
        self.cross_attention_dim = cross_attention_dim
        # Inputs already at latent size (VAE latents) need no spatial reduction.
        down = 1 if cond.map_encoder == "vae" else vae_factor
        self.learned: nn.Module | None = None
        if cond.concat and cond.map_encoder == "learned":
            layers: list[nn.Module] = [nn.Conv2d(in_channels, 32, 3, padding=1), nn.SiLU()]
            for _ in range(int(math.log2(down))):
                layers += [nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.SiLU()]
            layers.append(nn.Conv2d(32, LEARNED_CHANNELS, 1))
            self.learned = nn.Sequential(*layers)
        self.token_net: nn.Module | None = None
        if cond.cross_attention:
            self.token_net = nn.Sequential(
                nn.Conv2d(in_channels, 64, 3, padding=1),
                nn.SiLU(),
                nn.Conv2d(64, cross_attention_dim, 3, padding=1),
            )
            self.pos = nn.Parameter(torch.randn(cond.tokens**2, cross_attention_dim) * 0.02)
            self.norm = nn.LayerNorm(cross_attention_dim)

    def config(self) -> dict[str, Any]:
        return {
            "condition": asdict(self.cond),
            "in_channels": self.in_channels,
            "vae_factor": self.vae_factor,
            "cross_attention_dim": self.cross_attention_dim,
        }

    def forward(
        self, maps: torch.Tensor, latent_hw: tuple[int, int]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        concat = tokens = None
        if self.cond.concat:
            if self.learned is not None:
                concat = self.learned(maps)
                if tuple(concat.shape[-2:]) != tuple(latent_hw):
                    concat = F.interpolate(concat, size=latent_hw, mode="bilinear")
            elif tuple(maps.shape[-2:]) != tuple(latent_hw):
                concat = F.interpolate(
                    maps, size=latent_hw, mode="bilinear", antialias=True, align_corners=False
                )
            else:
                concat = maps
        if self.token_net is not None:
            g = self.cond.tokens
            feats = F.adaptive_avg_pool2d(self.token_net(maps), (g, g))
            tokens = self.norm(feats.flatten(2).transpose(1, 2) + self.pos)
        return concat, tokens


class _Output:
    """What the trainer reads from a UNet call (``.sample``), as diffusers returns it."""

    def __init__(self, sample: torch.Tensor) -> None:
        self.sample = sample


class MapConditionedUNet(nn.Module):
    """A diffusers UNet plus its map encoder, called like the UNet with one more argument."""

    def __init__(self, unet: UNet, encoder: MapEncoder) -> None:
        super().__init__()
        self.unet = unet
        self.encoder = encoder

    @property
    def config(self):
        return self.unet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def enable_gradient_checkpointing(self) -> None:
        self.unet.enable_gradient_checkpointing()

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        map_input: torch.Tensor | None = None,
    ) -> _Output:
        if map_input is None:
            raise GeosynthError("a map-conditioned UNet needs a map for every sample")
        concat, tokens = self.encoder(map_input.to(sample.dtype), tuple(sample.shape[-2:]))
        if concat is not None:
            sample = torch.cat([sample, concat.to(sample.dtype)], dim=1)
        if tokens is not None:
            tokens = tokens.to(encoder_hidden_states.dtype)
            if self.encoder.cond.text == "instead":
                encoder_hidden_states = tokens
            else:
                encoder_hidden_states = torch.cat([encoder_hidden_states, tokens], dim=1)
        return _Output(self.unet(sample, timestep, encoder_hidden_states).sample)


def widen_conv_in(unet: UNet, extra: int) -> None:
    """Give a pretrained UNet ``extra`` more input channels, zero-initialised, so its output is
    unchanged until training moves them."""
    if extra <= 0:
        return
    old = unet.conv_in
    new = nn.Conv2d(
        old.in_channels + extra,
        old.out_channels,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        if new.bias is not None and old.bias is not None:
            new.bias.copy_(old.bias)
    unet.conv_in = new.to(old.weight.device, old.weight.dtype)
    unet.register_to_config(in_channels=old.in_channels + extra)


def scratch_unet_config(config: dict[str, Any], cond: MapCondition, num_classes: int, latent: int):
    """A ``unet_config`` (latent channels in and out) with the map's input channels added."""
    out = dict(config)
    out["in_channels"] = latent + cond.concat_channels(num_classes, latent)
    return out


def build_encoder(cond: MapCondition, num_classes: int, pipe: Pipeline) -> MapEncoder:
    latent = int(pipe.vae.config.latent_channels)
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    return MapEncoder(
        cond,
        in_channels=cond.input_channels(num_classes, latent),
        vae_factor=factor,
        cross_attention_dim=int(pipe.unet.config.cross_attention_dim),
    )


def save_encoder(encoder: MapEncoder, out: Path) -> None:
    """``out/map_encoder/``: ``config.json`` and ``model.safetensors``."""
    from safetensors.torch import save_file

    d = out / ENCODER_DIR
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json_text(encoder.config(), indent=2) + "\n")
    state = {k: v.detach().float().cpu().contiguous() for k, v in encoder.state_dict().items()}
    save_file(state, str(d / "model.safetensors"))


def load_encoder(path: Path) -> MapEncoder:
    """The map encoder a ``finetune`` output saved (no pickles: JSON + safetensors)."""
    from safetensors.torch import load_file

    d = path / ENCODER_DIR
    try:
        cfg = json.loads((d / "config.json").read_text())
    except FileNotFoundError:
        raise GeosynthError(
            f"{path}: no {ENCODER_DIR}/config.json (not a map-conditioned model)"
        ) from None
    cond = MapCondition(**cfg["condition"])
    enc = MapEncoder(
        cond,
        in_channels=int(cfg["in_channels"]),
        vae_factor=int(cfg["vae_factor"]),
        cross_attention_dim=int(cfg["cross_attention_dim"]),
    )
    enc.load_state_dict(load_file(str(d / "model.safetensors")))
    return enc


def one_hot(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """B x H x W class indices -> B x K x H x W float one-hot; ignored pixels (-1, or any index
    outside 0..K-1) get the all-zero vector: no class, as the blank map of map dropout."""
    classes = classes.long()
    valid = (classes >= 0) & (classes < num_classes)
    hot = F.one_hot(torch.where(valid, classes, 0), num_classes).permute(0, 3, 1, 2).float()
    return hot * valid.unsqueeze(1)


@torch.no_grad()
def encode_rendered(vae, classes: torch.Tensor, colors: list[tuple[int, int, int]]) -> torch.Tensor:
    """VAE latent means (scaled) of maps rendered in their legend colours (the ``vae`` map
    encoder's input; the VAE is frozen, so this is computed once per map)."""
    # ignored pixels (-1) are rendered mid-grey, the zero of the VAE's [-1, 1] input
    palette = torch.tensor([*colors, (127.5, 127.5, 127.5)], dtype=torch.float32) / 127.5 - 1.0
    idx = classes.long()
    idx = torch.where((idx >= 0) & (idx < len(colors)), idx, len(colors))
    pixels = palette[idx].permute(0, 3, 1, 2)
    param = next(vae.parameters())
    dist = vae.encode(pixels.to(param.device, param.dtype)).latent_dist
    return dist.mean.float().cpu() * float(vae.config.scaling_factor)
