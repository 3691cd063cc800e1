"""DiffusionSat's metadata embedding, on any diffusers ``UNet2DConditionModel`` (SD 1.x/2.x, SDXL).

DiffusionSat (Khanna et al., ICLR 2024; ``diffusionsat/sat_unet.py`` and ``data_util.py``)
conditions on seven numbers, in the order of :data:`~geosynth.data.metadata.MODEL_FIELDS`: lon,
lat, gsd, cloud cover, year, month, day. Each is normalised to about [0, 1000]
(:func:`normalise_metadata`), goes through the UNet's own sinusoidal time projection
(``unet.time_proj``) and then its own two-layer MLP (a diffusers ``TimestepEmbedding``:
``linear_1``, SiLU, ``linear_2``, from the projection's width to the time embedding's); the
outputs are added to the timestep embedding, so every ResBlock sees them. A value of 0 means
unknown: training drops each field with probability 0.1 by setting it to 0
(:func:`drop_fields`), and classifier-free guidance gives the unconditional branch all zeros.

Here the MLPs are one :class:`MetadataEmbedding` attached to a plain UNet as
``unet.metadata_embedding`` (so its weights are ``metadata_embedding.{i}.linear_1/2``, as in
DiffusionSat's checkpoints, and ``save_pretrained`` writes them with the config keys
``use_metadata``, ``num_metadata``), and forward hooks, not a subclass: one on
``unet.time_embedding`` adds the embedding of the current batch's metadata to its output, one on
the UNet takes a ``metadata=`` keyword (DiffusionSat's call, ``unet(x, t, c, metadata=md)``).
Pipelines that call the UNet themselves get the metadata from :func:`metadata_conditioning`.
With ``zero_init`` the MLPs' output layers start at zero, so a new embedding adds exactly 0:
the model is the pretrained one at step 0 (DiffusionSat started them at random).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

from geosynth.data.metadata import MODEL_FIELDS
from geosynth.diffusion.types import UNet
from geosynth.errors import GeosynthError

#: field -> (shift, span): normalised = (value + shift) / span * 1000 (DiffusionSat's
#: ``metadata_normalize`` after ``fmow_numerical_metadata``'s offsets; max_gsd = 1 m).
NORMALISATION: dict[str, tuple[float, float]] = {
    "lon": (180.0, 360.0),
    "lat": (90.0, 180.0),
    "gsd": (0.0, 1.0),
    "cloud_cover": (0.0, 1.0),
    "year": (-1980.0, 120.0),
    "month": (0.0, 12.0),
    "day": (0.0, 31.0),
}
SCALE = 1000.0


def check_fields(fields: Sequence[str]) -> tuple[str, ...]:
    """``fields`` as a tuple, if they are distinct model fields in DiffusionSat's order."""
    fields = tuple(fields)
    order = [MODEL_FIELDS.index(f) for f in fields if f in MODEL_FIELDS]
    if not fields or len(order) != len(fields) or order != sorted(set(order)):
        raise GeosynthError(
            f"`metadata_fields`: {', '.join(fields) or 'none'}: expected distinct fields of "
            f"{', '.join(MODEL_FIELDS)}, in that order"
        )
    return fields


def normalise_metadata(
    values: Mapping[str, float | None],
    fields: Sequence[str] = MODEL_FIELDS,
    *,
    gsd_scale: float = 1.0,
) -> list[float]:
    """``values`` (native units: degrees, metres, a 0..1 fraction, calendar numbers; see
    :meth:`~geosynth.data.metadata.SampleMetadata.model_values`) as the model's inputs, 0 for
    a missing field. ``gsd_scale`` turns the native GSD into the one the model sees: original
    over target size (a 64 px chip at 10 m trained at 512 px: 64 / 512, 1.25 m)."""
    out = []
    for name in check_fields(fields):
        v = values.get(name)
        if v is None:
            out.append(0.0)
            continue
        shift, span = NORMALISATION[name]
        x = float(v) * gsd_scale if name == "gsd" else float(v)
        out.append((x + shift) / span * SCALE)
    return out


def metadata_tensor(
    rows: Sequence[Mapping[str, float | None]],
    fields: Sequence[str] = MODEL_FIELDS,
    *,
    gsd_scale: float | Sequence[float] = 1.0,
) -> torch.Tensor:
    """Rows of native values as a float32 batch x fields tensor (:func:`normalise_metadata`);
    ``gsd_scale`` for all rows or one per row."""
    scales = [gsd_scale] * len(rows) if isinstance(gsd_scale, int | float) else list(gsd_scale)
    if len(scales) != len(rows):
        raise GeosynthError(f"`gsd_scale`: {len(scales)} values for {len(rows)} rows")
    data = [normalise_metadata(r, fields, gsd_scale=s) for r, s in zip(rows, scales, strict=True)]
    return torch.tensor(data, dtype=torch.float32).reshape(len(rows), len(tuple(fields)))


def drop_fields(
    metadata: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Training-time field dropout: each value set to 0 (unknown) with probability ``p``,
    independently per row and field, as DiffusionSat trains (p = 0.1)."""
    if not 0.0 <= p <= 1.0:
        raise GeosynthError(f"metadata_dropout={p}: must be between 0 and 1")
    if p == 0.0:
        return metadata
    device = generator.device if generator is not None else metadata.device
    keep = torch.rand(metadata.shape, generator=generator, device=device) >= p
    return metadata * keep.to(metadata.device, metadata.dtype)


class MetadataEmbedding(nn.ModuleList):
    """One ``TimestepEmbedding`` per field (``{i}.linear_1``, ``{i}.linear_2``), as DiffusionSat's
    ``metadata_embedding``; ``fields`` says which field each one reads."""

    def __init__(
        self,
        fields: Sequence[str],
        in_channels: int,
        embed_dim: int,
        *,
        zero_init: bool = False,
    ) -> None:
        from diffusers.models.embeddings import TimestepEmbedding

        fields = check_fields(fields)
        super().__init__([TimestepEmbedding(in_channels, embed_dim) for _ in fields])
        self.fields = fields
        if zero_init:
            for mlp in self:
                out = cast(nn.Linear, mlp.linear_2)
                nn.init.zeros_(out.weight)
                nn.init.zeros_(out.bias)
        # (metadata, guidance) of the batch being run; saved states of nested calls.
        self.state: tuple[torch.Tensor | None, bool] = (None, False)
        self.saved: list[tuple[torch.Tensor | None, bool]] = []
        self.handles: list[Any] = []

    def embed(self, projected: torch.Tensor) -> torch.Tensor:
        """batch x fields x channels (the time projections of the values) -> batch x embed_dim:
        the sum of each field's MLP output."""
        total = self[0](projected[:, 0])
        for i in range(1, len(self)):
            total = total + self[i](projected[:, i])
        return total

    def batch(self, n: int, device: torch.device) -> torch.Tensor:
        """The normalised metadata of the ``n`` images being denoised: the current metadata
        (one row for all, or one per image), under guidance preceded by zeros for the
        unconditional half (diffusers' order); all zeros when none is set."""
        md, guidance = self.state
        if md is None:
            return torch.zeros(n, len(self.fields), device=device)
        md = md.to(device=device, dtype=torch.float32)
        if not guidance:
            return _rows(md, n)
        if n % 2:
            raise GeosynthError(f"`metadata`: guidance needs an even batch, got {n} images")
        cond = _rows(md, n // 2)
        return torch.cat([torch.zeros_like(cond), cond])


def _rows(md: torch.Tensor, n: int) -> torch.Tensor:
    if md.shape[0] == n:
        return md
    if md.shape[0] == 1:
        return md.expand(n, -1)
    raise GeosynthError(f"`metadata`: {md.shape[0]} rows for a batch of {n} images")


def component(unet: UNet) -> MetadataEmbedding:
    """The metadata embedding attached to ``unet``; an error when it has none."""
    emb = getattr(unet, "metadata_embedding", None)
    if not isinstance(emb, MetadataEmbedding):
        raise GeosynthError("`metadata`: the model has no metadata embedding")
    return emb


def _as_metadata(emb: MetadataEmbedding, metadata: Any) -> torch.Tensor | None:
    if metadata is None:
        return None
    md = torch.as_tensor(metadata, dtype=torch.float32)
    md = md.unsqueeze(0) if md.ndim == 1 else md
    if md.ndim != 2 or md.shape[1] != len(emb.fields):
        raise GeosynthError(
            f"`metadata`: shape {tuple(md.shape)}, expected batch x {len(emb.fields)} "
            f"({', '.join(emb.fields)})"
        )
    return md


def attach_metadata_embedding(
    unet: UNet,
    fields: Sequence[str] = MODEL_FIELDS,
    *,
    zero_init: bool = True,
) -> MetadataEmbedding:
    """Give ``unet`` a metadata embedding for ``fields`` (module docstring), on its device and
    dtype, and record ``use_metadata``, ``num_metadata`` and ``metadata_fields`` in its
    config. ``zero_init``: output layers at zero, so the UNet's outputs are unchanged."""
    if getattr(unet, "metadata_embedding", None) is not None:
        raise GeosynthError("`metadata`: the model already has a metadata embedding")
    te = unet.time_embedding
    emb = MetadataEmbedding(
        fields, te.linear_1.in_features, te.linear_2.out_features, zero_init=zero_init
    )
    emb.to(device=te.linear_1.weight.device, dtype=te.linear_1.weight.dtype)
    unet.metadata_embedding = emb
    unet.register_to_config(
        use_metadata=True, num_metadata=len(emb.fields), metadata_fields=list(emb.fields)
    )

    def add_metadata(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        md = emb.batch(output.shape[0], output.device)
        n, k = md.shape
        projected = unet.time_proj(md.reshape(-1)).reshape(n, k, -1)
        dtype = next(emb.parameters()).dtype
        return output + emb.embed(projected.to(dtype)).to(output.dtype)

    def take_keyword(module: nn.Module, args: Any, kwargs: dict[str, Any]) -> Any:
        emb.saved.append(emb.state)
        if "metadata" in kwargs:
            emb.state = (_as_metadata(emb, kwargs.pop("metadata")), False)
        return args, kwargs

    def restore(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if emb.saved:
            emb.state = emb.saved.pop()

    emb.handles = [
        te.register_forward_hook(add_metadata),
        unet.register_forward_pre_hook(take_keyword, with_kwargs=True),
        unet.register_forward_hook(restore, with_kwargs=True, always_call=True),
    ]
    return emb


def detach_metadata_embedding(unet: UNet) -> MetadataEmbedding:
    """Remove the embedding and its hooks (``unet`` computes as before attaching); returns it."""
    emb = component(unet)
    for handle in emb.handles:
        handle.remove()
    emb.handles = []
    del unet.metadata_embedding
    unet.register_to_config(use_metadata=False, num_metadata=0, metadata_fields=[])
    return emb


@contextlib.contextmanager
def metadata_conditioning(unet: UNet, metadata: Any, *, guidance: bool = False) -> Iterator[None]:
    """Within the block, ``unet`` denoises with ``metadata`` (normalised, batch x fields: one
    row for every image or one per image; None: all unknown). ``guidance``: the batch is a
    classifier-free-guidance batch, whose first half (unconditional) gets all zeros."""
    emb = component(unet)
    previous = emb.state
    emb.state = (_as_metadata(emb, metadata), guidance)
    try:
        yield
    finally:
        emb.state = previous
