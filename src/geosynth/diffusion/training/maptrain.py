"""Map-conditioned fine-tuning (seed 004): UNet set-up, training pairs (the latents of :mod:`.train_data` plus each
image's map, prepared once (maps resized like their images, mirrored with them), and the map
input of every micro-batch with map dropout drawn from the batch's own generator (so resumed
runs repeat it exactly), and the card entry."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any

import torch

from geosynth.data.paired import PairedDataset, resize_map
from geosynth.diffusion.mapcond import (
    ENCODER_DIR,
    MapCondition,
    MapConditionedUNet,
    MapEncoder,
    build_encoder,
    encode_rendered,
    one_hot,
    scratch_unet_config,
    widen_conv_in,
)
from geosynth.diffusion.training.train_data import TrainingSet
from geosynth.diffusion.types import Pipeline
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track


@dataclass
class PairedTrainingSet(TrainingSet):
    """A :class:`TrainingSet` whose samples carry maps: class indices (N x H x W) for one-hot
    inputs, or rendered-map VAE latents (F x N x C x h x w) for the ``vae`` map encoder."""

    maps: torch.Tensor | None = None
    map_latents: torch.Tensor | None = None
    num_classes: int = 0
    dropout: float = 0.0

    def unet_inputs(self, idx, flip, generator, device) -> dict[str, torch.Tensor]:
        if self.map_latents is not None:
            x = self.map_latents[flip, idx]
        else:
            assert self.maps is not None
            m = self.maps[idx]
            m = torch.where(flip.view(-1, 1, 1) == 1, torch.flip(m, dims=[2]), m)
            x = one_hot(m, self.num_classes)
        # Always drawn, even at dropout 0, so the random stream does not depend on it.
        keep = (torch.rand(x.shape[0], generator=generator) >= self.dropout).float()
        return {"map_input": (x * keep.view(-1, 1, 1, 1)).to(device)}


def attach_training_maps(
    data: TrainingSet,
    ds: PairedDataset,
    cond: MapCondition,
    vae,
    *,
    resolution: int,
    track: Track = no_track,
) -> PairedTrainingSet:
    """Read, check (size, legend) and resize every map of ``ds`` (in ``data``'s order)."""
    assert ds.legend is not None
    maps = torch.stack(
        [
            resize_map(ds.map(i), resolution).to(
                torch.uint8 if len(ds.legend) < 256 else torch.int32
            )
            for i in track(range(len(ds)), len(ds), "reading maps")
        ]
    )
    latents = None
    if cond.map_encoder == "vae":
        views = [maps] if data.flips == 1 else [maps, torch.flip(maps, dims=[2])]
        latents = torch.stack(
            [
                torch.cat(
                    [
                        encode_rendered(vae, v[s : s + 16], ds.legend.colors)
                        for s in range(0, len(v), 16)
                    ]
                )
                for v in views
            ]
        )
    return PairedTrainingSet(
        prompts=data.prompts,
        labels=data.labels,
        class_names=data.class_names,
        latent_mean=data.latent_mean,
        latent_std=data.latent_std,
        pixels=data.pixels,
        sizes=data.sizes,
        maps=None if latents is not None else maps,
        map_latents=latents,
        num_classes=len(ds.legend),
        dropout=cond.dropout,
    )


def paired_or_error(ds) -> PairedDataset:
    """``ds`` itself, if it carries maps and a legend."""
    if not isinstance(ds, PairedDataset) or ds.legend is None:
        raise GeosynthError(
            f"{ds.source}: map conditioning needs a map per image (a map folder or a "
            "'map_file' column)"
        )
    return ds


def map_unet_config(
    config: dict[str, Any], cond: MapCondition, ds, pipe: Pipeline
) -> dict[str, Any]:
    """A from-scratch UNet config with the map's concatenated channels added to its input."""
    legend = paired_or_error(ds).legend
    assert legend is not None
    return scratch_unet_config(config, cond, len(legend), int(pipe.vae.config.latent_channels))


def prepare_map_unet(pipe: Pipeline, cond: MapCondition, ds) -> MapEncoder:
    """Fit the UNet's input to the map condition (widening a pretrained one with zero-initialised
    channels) and build the map encoder."""
    legend = paired_or_error(ds).legend
    assert legend is not None
    latent = int(pipe.vae.config.latent_channels)
    want = latent + cond.concat_channels(len(legend), latent)
    have = int(pipe.unet.config.in_channels)
    if have == latent and want > latent:
        widen_conv_in(pipe.unet, want - latent)
    elif have != want:
        raise GeosynthError(
            f"the UNet takes {have} input channels; this map condition needs {want} "
            f"({latent} latent + {want - latent} map)"
        )
    if cond.cross_attention and cond.text == "beside":
        hidden = int(pipe.text_encoder.config.hidden_size)
        if int(pipe.unet.config.cross_attention_dim) != hidden:
            raise GeosynthError(
                "map tokens beside text tokens need the UNet's cross_attention_dim to equal the "
                f"text encoder's hidden size ({hidden})"
            )
    return build_encoder(cond, len(legend), pipe)


def map_training(
    pipe: Pipeline, encoder: MapEncoder, data: TrainingSet, ds, recipe, resolution, track
):
    """The paired training set and the view of the pipeline the trainer trains (its ``unet`` is
    the UNet wrapped with the map encoder, whose weights are checkpointed with it)."""
    paired = attach_training_maps(
        data, paired_or_error(ds), recipe.maps, pipe.vae, resolution=resolution, track=track
    )
    trainee = SimpleNamespace(
        unet=MapConditionedUNet(pipe.unet, encoder),
        text_encoder=pipe.text_encoder,
        vae=pipe.vae,
        tokenizer=pipe.tokenizer,
    )
    return paired, trainee


def map_card(encoder: MapEncoder, ds) -> dict[str, Any]:
    """The conditioning setup as the card records it (``generate --maps`` reads it)."""
    legend = paired_or_error(ds).legend
    assert legend is not None
    return {
        **asdict(encoder.cond),
        "legend": legend.to_dict(),
        "num_classes": len(legend),
        "map_input_channels": encoder.in_channels,
        "encoder_dir": ENCODER_DIR,
    }
