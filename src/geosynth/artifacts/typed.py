"""The typed tensor files steps hand to each other: embeddings (with sample names, labels and
class names) and per-class latent channel means."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from geosynth.artifacts.provenance import Provenance
from geosynth.artifacts.tensors import check_finite, load_tensors, save_tensors
from geosynth.errors import GeosynthError


@dataclass
class Embeddings:
    """N feature vectors (float32, N x D) with optional integer labels into ``class_names`` and
    optional per-row ``ids`` (the source file's key in its dataset, or the webdataset sample
    key), so that rows can be joined back to images."""

    embeddings: torch.Tensor
    labels: torch.Tensor | None = None
    class_names: list[str] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    ids: list[str] | None = None

    def __post_init__(self) -> None:
        _check_embeddings(self, "embeddings")


def _check_embeddings(e: Embeddings, where: str) -> None:
    if e.embeddings.ndim != 2:
        raise GeosynthError(f"{where}: 'embeddings' must be N x D, got {tuple(e.embeddings.shape)}")
    if e.ids is not None and len(e.ids) != e.embeddings.shape[0]:
        raise GeosynthError(f"{where}: {len(e.ids)} row ids for {e.embeddings.shape[0]} embeddings")
    if e.labels is not None:
        if e.labels.ndim != 1 or e.labels.shape[0] != e.embeddings.shape[0]:
            raise GeosynthError(
                f"{where}: 'labels' must hold one label per embedding "
                f"({e.embeddings.shape[0]}), got shape {tuple(e.labels.shape)}"
            )
        if e.class_names is not None and e.labels.numel():
            lo, hi = int(e.labels.min()), int(e.labels.max())
            if lo < 0 or hi >= len(e.class_names):
                raise GeosynthError(
                    f"{where}: labels range over [{lo}, {hi}] but only "
                    f"{len(e.class_names)} class names are recorded"
                )


def encode_strings(strings: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """N strings as two tensors any safetensors reader can take: their UTF-8 bytes back to back
    (uint8) and N + 1 offsets (int64; string i is ``bytes[offsets[i]:offsets[i + 1]]``). Row ids
    of millions of LAION samples would not fit the 100 MB JSON header of a safetensors file."""
    data = [s.encode("utf-8") for s in strings]
    offsets = torch.zeros(len(data) + 1, dtype=torch.int64)
    if data:
        offsets[1:] = torch.tensor([len(b) for b in data], dtype=torch.int64).cumsum(0)
    blob = torch.frombuffer(bytearray(b"".join(data)), dtype=torch.uint8) if data else None
    return (
        blob if blob is not None and blob.numel() else torch.zeros(0, dtype=torch.uint8)
    ), offsets


def decode_strings(blob: torch.Tensor, offsets: torch.Tensor) -> list[str]:
    """The strings :func:`encode_strings` wrote."""
    raw = blob.numpy().tobytes()
    o = offsets.tolist()
    return [raw[o[i] : o[i + 1]].decode("utf-8") for i in range(len(o) - 1)]


def save_embeddings(
    path: str | os.PathLike[str],
    emb: Embeddings,
    *,
    provenance: Provenance,
) -> Path:
    """Write tensor ``embeddings`` (float32) and, if present, ``labels`` (int64) and the row ids
    (``ids_utf8`` / ``ids_offsets``, see :func:`encode_strings`)."""
    tensors = {"embeddings": emb.embeddings.float()}
    if emb.labels is not None:
        tensors["labels"] = emb.labels.long()
    if emb.ids is not None:
        tensors["ids_utf8"], tensors["ids_offsets"] = encode_strings(emb.ids)
    return save_tensors(
        path, tensors, provenance=provenance, class_names=emb.class_names, metadata=emb.metadata
    )


def load_embeddings(path: str | os.PathLike[str]) -> Embeddings:
    """Read an embeddings file written by ``geosynth embed`` (or any file with the same keys)."""
    tf = load_tensors(path)
    emb = tf.require("embeddings", ndim=2, what="an N x D feature matrix").float()
    labels = tf.tensors.get("labels")
    ids = None
    if "ids_utf8" in tf.tensors and "ids_offsets" in tf.tensors:
        ids = decode_strings(tf.tensors["ids_utf8"], tf.tensors["ids_offsets"])
    try:
        return Embeddings(
            embeddings=emb,
            labels=None if labels is None else labels.long(),
            class_names=tf.class_names,
            metadata=tf.metadata,
            ids=ids,
        )
    except GeosynthError as exc:
        raise GeosynthError(f"{tf.path}: {exc}") from None


@dataclass
class ChannelMeans:
    """Per-class means (K x C, float32) of latent channels; ``std`` is for diagnostics."""

    means: torch.Tensor
    class_names: list[str]
    std: torch.Tensor | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.means.ndim != 2 or self.means.shape[0] != len(self.class_names):
            raise GeosynthError(
                f"channel means: 'means' must be K x C with K = {len(self.class_names)} classes, "
                f"got shape {tuple(self.means.shape)}"
            )
        if not self.means.is_floating_point():
            raise GeosynthError(
                f"channel means: 'means' must be floating point, got {self.means.dtype}"
            )
        check_finite({"means": self.means}, "channel means")

    def for_class(self, name: str) -> torch.Tensor:
        """The C-vector of one class, or an error listing the classes that exist."""
        if name not in self.class_names:
            raise GeosynthError(
                f"channel means have no class '{name}' (classes: {', '.join(self.class_names)})"
            )
        return self.means[self.class_names.index(name)]


def save_channel_means(
    path: str | os.PathLike[str], cm: ChannelMeans, *, provenance: Provenance
) -> Path:
    """Write tensor ``means`` (K x C float32), and ``std`` when known."""
    tensors = {"means": cm.means.float()}
    if cm.std is not None:
        tensors["std"] = cm.std.float()
    return save_tensors(
        path, tensors, provenance=provenance, class_names=cm.class_names, metadata=cm.metadata
    )


def load_channel_means(path: str | os.PathLike[str]) -> ChannelMeans:
    """Read a channel-means file; the class names are required to map rows to classes."""
    tf = load_tensors(path)
    means = tf.require("means", ndim=2, what="K x C per-class latent channel means").float()
    names = tf.class_names
    if names is None:
        raise GeosynthError(f"{tf.path}: metadata has no 'class_names' (needed to map rows)")
    try:
        return ChannelMeans(
            means=means, class_names=names, std=tf.tensors.get("std"), metadata=tf.metadata
        )
    except GeosynthError as exc:
        raise GeosynthError(f"{tf.path}: {exc}") from None
