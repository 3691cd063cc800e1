"""Embedding extractors and batched embedding: DINOv2 and other transformers models, open_clip,
timm (also multi-band), the FID Inception and trained ``train-clf`` classifiers, all made by
:func:`create_extractor` from one spec string (``dinov2-base``, ``open_clip:ViT-B-16``,
``timm:NAME``, ``inception``, ``clf:DIR``, a hub id or a directory); :func:`embed_dataset` /
:func:`embed_shards` write embeddings; :func:`resolve_embeddings` accepts a dataset, shards or an
embeddings file alike and caches what it computes."""

from geosynth.features.base import FeatureExtractor
from geosynth.features.embed import embed_dataset
from geosynth.features.resolve import embed_to_file, resolve_embeddings
from geosynth.features.shard_embed import embed_shards
from geosynth.features.spec import create_extractor

__all__ = [
    "FeatureExtractor",
    "create_extractor",
    "embed_dataset",
    "embed_shards",
    "embed_to_file",
    "resolve_embeddings",
]
