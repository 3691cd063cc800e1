"""Fine-tuning with DiffusionSat's metadata conditioning (``finetune --metadata FIELDS``).

The UNet gets DiffusionSat's metadata embedding (:mod:`geosynth.diffusion.metadata_embedding`),
its output layers at zero, so the model at step 0 is the base model exactly. The embedding always
trains in full (it is new: a LoRA of a zero matrix would stay a zero update); the rest of the
UNet trains as the recipe says (LoRA, full, frozen). A base model that already has an embedding
(a DiffusionSat checkpoint, an earlier geosynth run) keeps its own and trains it on.

Each training image's metadata comes from its sample (:meth:`ImageDataset.metadata`): the fields
in native units, normalised as DiffusionSat does; ``gsd`` is that of the image as the model sees
it (native GSD x original over training size: a 64 px chip at 10 m trained at 512 px is 1.25 m a
pixel), which is what ``generate --metadata gsd=...`` then asks for. A field a sample does not
know is 0 (DiffusionSat's "unknown", the value its field dropout uses), and each field is dropped
to 0 with probability ``metadata_dropout`` per image and step, from the step's own random stream
(so a resumed run draws the same).

Outputs: with ``unet='full'`` the embedding is in ``unet/`` (config keys ``use_metadata``,
``num_metadata``, ``metadata_fields``; weights ``metadata_embedding.{i}.linear_1/2``: DiffusionSat's
layout); otherwise in ``metadata_embedding.safetensors`` under the same names, beside the LoRA.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from geosynth.data.dataset import ImageDataset
from geosynth.diffusion.metadata_embedding import (
    MetadataEmbedding,
    attach_metadata_embedding,
    drop_fields,
    metadata_tensor,
)
from geosynth.diffusion.training.train_data import TrainingSet
from geosynth.diffusion.types import UNet
from geosynth.errors import GeosynthError


def check_base_fields(model: Any, fields: Sequence[str]) -> None:
    """Before anything loads: a base model with its own embedding trains with its fields."""
    from geosynth.diffusion.diffusionsat import metadata_fields_of
    from geosynth.diffusion.family.files import component_config, is_single_file

    config = None if is_single_file(model) else component_config(model, "unet")
    base = None if config is None else metadata_fields_of(config, f"model={str(model)!r}")
    if base is not None and tuple(base) != tuple(fields):
        raise GeosynthError(
            f"`metadata`: {','.join(fields)}: the base model conditions on {','.join(base)} "
            "already; train with those fields"
        )


def prepare_metadata_unet(unet: UNet, fields: Sequence[str]) -> MetadataEmbedding:
    """The UNet's metadata embedding for ``fields``, trainable: a new zero-output one, or the
    base model's own (whose fields must then be ``fields``)."""
    emb = getattr(unet, "metadata_embedding", None)
    if isinstance(emb, MetadataEmbedding):
        if tuple(emb.fields) != tuple(fields):
            raise GeosynthError(
                f"`metadata`: {','.join(fields)}: the base model conditions on "
                f"{','.join(emb.fields)} already; train with those fields"
            )
    else:
        emb = attach_metadata_embedding(unet, fields, zero_init=True)
    emb.requires_grad_(True)
    return emb


def native_rows(ds: ImageDataset, fields: Sequence[str]) -> list[dict[str, float | None]]:
    """Every sample's model fields in native units (None where it does not know one)."""
    rows = []
    for i in range(len(ds)):
        values = ds.metadata(i).model_values()
        rows.append({f: values.get(f) for f in fields})
    return rows


def missing_note(rows: list[dict[str, float | None]], fields: Sequence[str]) -> str | None:
    """One line saying how many samples miss each chosen field (None when none does)."""
    counts = {f: sum(r.get(f) is None for r in rows) for f in fields}
    missing = {f: n for f, n in counts.items() if n}
    if not missing:
        return None
    parts = ", ".join(f"{f} {n}" for f, n in missing.items())
    return (
        f"metadata: of {len(rows)} samples, unknown {parts}; they train as 0 (unknown), as "
        "DiffusionSat's field dropout does"
    )


@dataclass
class MetadataTrainingSet(TrainingSet):
    """A :class:`TrainingSet` whose UNet calls also get each image's normalised metadata,
    with DiffusionSat's per-field dropout."""

    metadata: torch.Tensor | None = None  # N x fields, normalised (0: unknown)
    metadata_dropout: float = 0.1

    def unet_inputs(self, idx, flip, generator, device) -> dict[str, torch.Tensor]:
        assert self.metadata is not None
        md = drop_fields(self.metadata[idx], self.metadata_dropout, generator)
        return {"metadata": md.to(device)}


def metadata_training(
    data: TrainingSet,
    ds: ImageDataset,
    fields: Sequence[str],
    dropout: float,
    resolution: int,
    log: Callable[[str], None],
) -> tuple[MetadataTrainingSet, dict[str, Any]]:
    """``data`` with its samples' metadata (module docstring), and what the card records."""
    rows = native_rows(ds, fields)
    note = missing_note(rows, fields)
    if note:
        log(note)
    sizes = data.sizes
    # original over training size (the shorter side is resized to ``resolution``)
    scales = (
        [1.0] * len(rows)
        if sizes is None
        else [float(min(s[0], s[1])) / resolution for s in sizes[0].tolist()]
    )
    md = metadata_tensor(rows, fields, gsd_scale=scales)
    fields_d = dict(vars(data))
    out = MetadataTrainingSet(**fields_d, metadata=md, metadata_dropout=dropout)
    known = {f: sum(r.get(f) is not None for r in rows) for f in fields}
    card = {
        "fields": list(fields),
        "dropout": dropout,
        "known": known,
        "samples": len(rows),
        "gsd": "metres per pixel of the image as the model sees it (native GSD x original / "
        "training size)",
    }
    return out, card
