"""Tiny models built from configs, saved in the same layouts as the real ones.

* :func:`make_toy_sd_pipeline`: a Stable-Diffusion-shaped pipeline (UNet2DConditionModel,
  AutoencoderKL, CLIPTextModel with a locally learned tokenizer, SD 2.1-base scheduler settings)
  that ``StableDiffusionPipeline.from_pretrained(dir)`` loads. Its VAE is briefly trained on toy
  data so that latents carry the images' colours (what channel means and leak-aligned noise use);
  the UNet stays random until ``geosynth finetune`` trains it.
* :func:`make_toy_dinov2`: a transformers ``Dinov2Model`` plus image processor, the shape of
  ``facebook/dinov2-base`` at toy size.
* :func:`make_toy_clip`: an open_clip CLIP in ``open_clip_config.json`` layout, loadable with
  ``open_clip.create_model_and_transforms("local-dir:DIR")``.
* :func:`make_toy_timm`: timm's tiny test EfficientNet in timm's hub layout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from geosynth.artifacts import Provenance, atomic_path, write_provenance
from geosynth.artifacts.jsontext import json_text
from geosynth.defaults import SD21_SCHEDULER_CONFIG
from geosynth.diffusion.tokenizer import build_toy_tokenizer
from geosynth.diffusion.types import VAE
from geosynth.toy.data import resolve_toy_classes, toy_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def toy_vae(size: int):  # -> diffusers.AutoencoderKL
    """The toy autoencoder architecture (16 and 32 channels, GroupNorm(8), 4 latent channels),
    untrained, shared by the toy SD and SDXL (diffusers' default ``force_upcast=True`` flags it
    as SDXL's VAE is flagged)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=size,
    )


def _toy_batch(rng: np.random.Generator, classes: list[str], n: int, size: int) -> torch.Tensor:
    """n random toy images as a [-1, 1] tensor (the VAE's input range)."""
    imgs = []
    for _ in range(n):
        name = classes[int(rng.integers(len(classes)))]
        img = toy_image(name, int(rng.integers(1_000_000)), size, seed=12345)
        imgs.append(torch.from_numpy(np.asarray(img, np.float32) / 127.5 - 1.0).permute(2, 0, 1))
    return torch.stack(imgs)


def train_toy_vae(vae: VAE, *, steps: int, size: int, seed: int) -> float:
    """Fit the VAE as an autoencoder on toy images (L1 + small KL); return the last recon loss."""
    rng = np.random.default_rng(seed)
    classes = resolve_toy_classes(None)
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    vae.train()
    loss_value = float("nan")
    for _ in range(steps):
        x = _toy_batch(rng, classes, 16, size)
        post = vae.encode(x).latent_dist
        recon = vae.decode(post.sample()).sample
        rec = F.l1_loss(recon, x)
        loss = rec + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_value = rec.item()
    vae.eval()
    return loss_value


@torch.no_grad()
def latent_scaling_factor(vae: VAE, *, size: int, seed: int) -> float:
    """1 / std of the latents of toy images: the LDM convention that gives the UNet unit-variance
    inputs (SD's 0.18215 was found the same way on its own VAE)."""
    rng = np.random.default_rng(seed + 1)
    x = _toy_batch(rng, resolve_toy_classes(None), 64, size)
    return float(1.0 / vae.encode(x).latent_dist.mean.std())


def build_toy_sd_pipeline(*, size: int = 32, seed: int = 0, vae_steps: int = 200):
    """Construct (not save) the tiny SD pipeline; see the module docstring."""
    from diffusers import (
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = build_toy_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    vae = toy_vae(size)
    if vae_steps > 0:
        train_toy_vae(vae, steps=vae_steps, size=size, seed=seed)
    vae.register_to_config(scaling_factor=latent_scaling_factor(vae, size=size, seed=seed))
    latent_size = size // 2 ** (len(vae.config.block_out_channels) - 1)
    unet = UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
        use_linear_projection=True,  # as SD 2.x
    )
    scheduler = PNDMScheduler(**SD21_SCHEDULER_CONFIG)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def make_toy_sd_pipeline(
    out: str | os.PathLike[str], *, size: int = 32, seed: int = 0, vae_steps: int = 200
) -> Path:
    """Build the tiny SD pipeline and ``save_pretrained`` it to ``out`` atomically."""
    pipe = build_toy_sd_pipeline(size=size, seed=seed, vae_steps=vae_steps)
    prov = Provenance.start("toy model sd", seeds={"seed": seed}, size=size, vae_steps=vae_steps)
    with atomic_path(out) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        write_provenance(tmp, prov)
    return Path(out)


def make_toy_dinov2(out: str | os.PathLike[str], *, size: int = 32, seed: int = 0) -> Path:
    """A tiny ``Dinov2Model`` (patch 8, 2 layers, width 32) with its image processor."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    model = Dinov2Model(
        Dinov2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            patch_size=8,
            image_size=size,
        )
    )
    processor = BitImageProcessor(
        do_resize=True,
        size={"shortest_edge": size},
        do_center_crop=True,
        crop_size={"height": size, "width": size},
        do_normalize=True,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )
    prov = Provenance.start("toy model dinov2", seeds={"seed": seed}, size=size)
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        write_provenance(tmp, prov)
    return Path(out)


#: A ViT CLIP at toy size; the text tower uses open_clip's bundled BPE (vocab 49408, offline).
TOY_CLIP_CONFIG: dict[str, object] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def make_toy_clip(out: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A tiny open_clip CLIP saved as ``open_clip_config.json`` + ``open_clip_model.safetensors``."""
    from safetensors.torch import save_file

    from geosynth.extras import require

    open_clip = require("open_clip", "kind='clip' (the toy open_clip model)")

    torch.manual_seed(seed)
    model = open_clip.CLIP(**TOY_CLIP_CONFIG)
    config = {
        "model_cfg": TOY_CLIP_CONFIG,
        "preprocess_cfg": {
            "mean": list(open_clip.OPENAI_DATASET_MEAN),
            "std": list(open_clip.OPENAI_DATASET_STD),
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
    }
    prov = Provenance.start("toy model clip", seeds={"seed": seed})
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "open_clip_config.json").write_text(json_text(config, indent=2) + "\n")
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "open_clip_model.safetensors"))
        write_provenance(tmp, prov)
    return Path(out)


def make_toy_timm(out: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """timm's tiny ``test_efficientnet`` saved in timm's hub layout (``timm:local-dir:OUT``)."""
    from geosynth.extras import require

    timm = require("timm", "kind='timm' (the toy timm model)")
    from timm.models import save_for_hf

    torch.manual_seed(seed)
    model = timm.create_model("test_efficientnet", pretrained=False)
    prov = Provenance.start("toy model timm", seeds={"seed": seed})
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        save_for_hf(model, str(tmp), safe_serialization=True)
        write_provenance(tmp, prov)
    return Path(out)


def make_toy_lora(
    pipeline_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    rank: int = 4,
    scale: float = 0.3,
    seed: int = 0,
    class_names: list[str] | None = None,
    base_model: str | None = None,
    text_encoder: bool = False,
    learned_token: str | None = None,
) -> Path:
    """A random (untrained) UNet LoRA for the toy pipeline in diffusers' format, with a geosynth
    card: a stand-in for ``geosynth finetune`` output when testing generation and mixing.
    ``text_encoder`` adds a text-encoder LoRA (on the attention projections, as finetune's);
    ``learned_token`` a random textual-inversion embedding for that token, which the card's
    prompt template then uses, as finetune ``--learn-token`` does."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    def random_lora(model: Any, targets: list[str]) -> dict[str, torch.Tensor]:
        """Add a random LoRA on ``targets`` of ``model``; its layers in diffusers' format."""
        model.add_adapter(
            LoraConfig(
                r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=targets
            )
        )
        for name, param in model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero (a no-op LoRA); make this one act
                param.data.normal_(0.0, scale)
        return convert_state_dict_to_diffusers(get_peft_model_state_dict(model))

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(pipeline_dir, subfolder="unet")
    layers = random_lora(unet, ["to_q", "to_k", "to_v", "to_out.0"])
    te_layers = None
    if text_encoder:
        te = CLIPTextModel.from_pretrained(pipeline_dir, subfolder="text_encoder")
        te_layers = random_lora(te, ["q_proj", "k_proj", "v_proj", "out_proj"])
    template = "a satellite photo of a {}"
    card: dict[str, object] = {
        "base_model": base_model or str(pipeline_dir),
        "prompt_template": template,
        "class_names": class_names,
        "recipe": {"kind": "toy random LoRA", "rank": rank},
    }
    if learned_token is not None:
        card["learned_token"] = learned_token
        card["prompt_template"] = f"a satellite photo of a {learned_token} {{}}"
    with atomic_path(out) as tmp:
        StableDiffusionPipeline.save_lora_weights(
            tmp,
            unet_lora_layers=layers,
            text_encoder_lora_layers=te_layers,
            safe_serialization=True,
        )
        if learned_token is not None:
            cfg = CLIPTextConfig.from_pretrained(pipeline_dir, subfolder="text_encoder")
            row = torch.randn(cfg.hidden_size) * 0.5
            save_file({learned_token: row.contiguous()}, str(tmp / "learned_embeds.safetensors"))
        (tmp / "geosynth.json").write_text(json_text(card, indent=2) + "\n")
    return Path(out)


def make_toy_controlnet(
    pipeline_dir: str | os.PathLike[str], out: str | os.PathLike[str], *, seed: int = 0
) -> Path:
    """A ControlNet built from the toy UNet (``ControlNetModel.from_unet``). Its zero
    convolutions are given small random weights so that, untrained, it still visibly acts."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(pipeline_dir, subfolder="unet")
    factor = 2 ** (len(unet.config.block_out_channels) - 1)
    # The conditioning embedding must shrink images by the VAE factor (2 for the toy VAE).
    channels = (16,) + (32,) * (factor.bit_length() - 1)
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels)
    zero_initialised = (
        "controlnet_down_blocks",
        "controlnet_mid_block",
        "controlnet_cond_embedding.conv_out",
    )
    for name, param in cn.named_parameters():
        if name.startswith(zero_initialised):
            param.data.normal_(0.0, 0.05)
    prov = Provenance.start("toy model controlnet", seeds={"seed": seed})
    with atomic_path(out) as tmp:
        cn.save_pretrained(tmp, safe_serialization=True)
        write_provenance(tmp, prov)
    return Path(out)


def make_toy_models(
    out: str | os.PathLike[str], *, size: int = 32, seed: int = 0, vae_steps: int = 200
) -> dict[str, Path]:
    """All toy models under ``out``: ``sd/``, ``dinov2/``, ``clip/`` and ``timm/``."""
    root = Path(out)
    return {
        "sd": make_toy_sd_pipeline(root / "sd", size=size, seed=seed, vae_steps=vae_steps),
        "dinov2": make_toy_dinov2(root / "dinov2", size=size, seed=seed),
        "clip": make_toy_clip(root / "clip", seed=seed),
        "timm": make_toy_timm(root / "timm", seed=seed),
    }
