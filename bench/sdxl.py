"""Stable Diffusion XL base 1.0's architecture with random weights, for real-size runs without a hub.

The component configurations are the published ones of ``stabilityai/stable-diffusion-xl-base-1.0``
(``unet/config.json``, ``text_encoder/config.json``, ``text_encoder_2/config.json``,
``vae/config.json``, ``scheduler/scheduler_config.json``): UNet 2,567.5 M parameters, CLIP
ViT-L/14 text encoder 123.1 M, OpenCLIP ViT-bigG/14 text encoder with projection 694.7 M, VAE
83.7 M; 13.9 GB of float32 safetensors. Speed and memory do not depend on the weights. The toy
tokenizers stand in for the hub's (the second pads with ``!`` as SDXL's does).

Components are built, saved and freed one at a time, so building peaks at about the UNet's
float32 size (10.3 GB) rather than the whole pipeline's.

    python bench/sdxl.py OUT_DIR
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import Any

#: ``unet/config.json`` of SDXL base 1.0 (the keys that differ from diffusers' defaults).
UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,  # 1280 pooled + 6 x 256 size numbers
    "norm_num_groups": 32,
}
#: ``text_encoder/config.json`` (CLIP ViT-L/14) and ``text_encoder_2/config.json`` (OpenCLIP
#: ViT-bigG/14, ``CLIPTextModelWithProjection``).
TEXT_ENCODER: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
TEXT_ENCODER_2: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
#: ``vae/config.json`` (SD's autoencoder, SDXL's latent scale, flagged to run in float32).
VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}
#: Parameter counts of the published weights (the build checks it matches them).
PARAMS = {
    "unet": 2_567_463_684,
    "text_encoder": 123_060_480,
    "text_encoder_2": 694_659_840,
    "vae": 83_653_863,
}


def _save(name: str, model: Any, out: Path) -> int:
    """Save ``model`` as ``out/name`` and return its parameter count (checked against PARAMS)."""
    count = sum(p.numel() for p in model.parameters())
    if count != PARAMS[name]:
        raise SystemExit(f"{name}: {count} parameters, SDXL base has {PARAMS[name]}")
    model.save_pretrained(out / name, safe_serialization=True)
    print(f"{name}: {count / 1e6:.1f} M parameters", flush=True)
    return count


def sdxl_random(out: Path) -> Path:
    """SDXL base 1.0's pipeline folder with random weights (see the module docstring)."""
    import diffusers
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from geosynth.defaults import SDXL_SCHEDULER_CONFIG
    from geosynth.diffusion.tokenizer import build_toy_tokenizer

    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    tokenizers = {
        "tokenizer": build_toy_tokenizer(),
        "tokenizer_2": build_toy_tokenizer(pad_token="!"),
    }
    for name, tok in tokenizers.items():
        tok.save_pretrained(out / name)
    tok = tokenizers["tokenizer"]
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    for name, cls, config in (
        ("text_encoder", CLIPTextModel, TEXT_ENCODER),
        ("text_encoder_2", CLIPTextModelWithProjection, TEXT_ENCODER_2),
    ):
        pad = tokenizers["tokenizer" if name == "text_encoder" else "tokenizer_2"].pad_token_id
        _save(name, cls(CLIPTextConfig(**config, **ids, pad_token_id=pad)), out)
        gc.collect()
    _save("vae", AutoencoderKL(**VAE), out)
    gc.collect()
    _save("unet", UNet2DConditionModel(**UNET), out)
    gc.collect()
    EulerDiscreteScheduler.from_config(SDXL_SCHEDULER_CONFIG).save_pretrained(out / "scheduler")
    index = {
        "_class_name": "StableDiffusionXLPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "force_zeros_for_empty_prompt": True,
        "image_encoder": [None, None],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    # Written last: a folder with model_index.json is a complete pipeline (realsize.build).
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return out


if __name__ == "__main__":
    print(sdxl_random(Path(sys.argv[1])))
