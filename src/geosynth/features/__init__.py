"""Embedding extractors (DINOv2 via transformers, open_clip, timm) and batched embedding."""

from geosynth.features.base import FeatureExtractor, create_extractor

__all__ = ["FeatureExtractor", "create_extractor"]
