"""Procedural toy data and tiny models, for the demo and the tests (no hub, 2 CPU cores)."""

from geosynth.diffusion.tokenizer import build_toy_tokenizer
from geosynth.toy.data import (
    DEFAULT_TOY_CLASSES,
    TOY_CLASSES,
    make_toy_dataset,
    make_toy_shards,
    toy_hf_dataset,
    toy_image,
)
from geosynth.toy.models import (
    SD21_SCHEDULER_CONFIG,
    build_toy_sd_pipeline,
    make_toy_clip,
    make_toy_controlnet,
    make_toy_dinov2,
    make_toy_lora,
    make_toy_models,
    make_toy_sd_pipeline,
    make_toy_timm,
)
from geosynth.toy.sar import TOY_SAR_CLASSES, make_toy_sar_dataset, toy_sar_chip
from geosynth.toy.sdxl import build_toy_sdxl_pipeline, make_toy_sdxl_pipeline

__all__ = [
    "DEFAULT_TOY_CLASSES",
    "SD21_SCHEDULER_CONFIG",
    "TOY_CLASSES",
    "TOY_SAR_CLASSES",
    "build_toy_sd_pipeline",
    "build_toy_sdxl_pipeline",
    "build_toy_tokenizer",
    "make_toy_clip",
    "make_toy_controlnet",
    "make_toy_dataset",
    "make_toy_dinov2",
    "make_toy_lora",
    "make_toy_models",
    "make_toy_sar_dataset",
    "make_toy_sd_pipeline",
    "make_toy_sdxl_pipeline",
    "make_toy_shards",
    "make_toy_timm",
    "toy_hf_dataset",
    "toy_image",
    "toy_sar_chip",
]
