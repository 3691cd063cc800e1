"""Stable Diffusion 2.1-base's architecture with random weights, for GPU benchmarks without a hub.

Speed and memory do not depend on the weights, so the benchmarks build this once and load it from
disk like any pipeline directory.

    python bench/sd21.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path


def sd21_random(out: Path) -> Path:
    """SD 2.1-base's architecture (UNet 865M, VAE, OpenCLIP-H text encoder) with random weights;
    speed and memory do not depend on the weights. The toy tokenizer stands in for the hub's."""
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from geosynth.defaults import SD21_SCHEDULER_CONFIG
    from geosynth.diffusion.tokenizer import build_toy_tokenizer

    tok = build_toy_tokenizer()
    te = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=23,
            num_attention_heads=16,
            hidden_act="gelu",
            projection_dim=512,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=768,
    )
    unet = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        attention_head_dim=(5, 10, 20, 20),
        cross_attention_dim=1024,
        use_linear_projection=True,
        layers_per_block=2,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        unet=unet,
        scheduler=PNDMScheduler(**SD21_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    return out


if __name__ == "__main__":
    print(sd21_random(Path(sys.argv[1])))
