"""Stable Diffusion XL: two text encoders (CLIP ViT-L and OpenCLIP ViT-bigG with projection)
whose penultimate hidden states are concatenated (768 + 1280 = 2048), the second encoder's
pooled and projected output plus six size numbers (original size, crop top-left, target size)
as added conditioning, a VAE that overflows in float16, kohya names in Stability's SGM module
names (``lora_unet_input_blocks_4_1_...``, ``lora_te1_``, ``lora_te2_``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from geosynth.diffusion.family.base import Encoder, ModelFamily, PromptEmbeds
from geosynth.diffusion.family.sd import tokenize

#: SDXL base's UNet layout where a LoRA's base model cannot be read (kohya names depend on it).
SDXL_BASE_UNET = {
    "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
}


class StableDiffusionXL(ModelFamily):
    """SDXL base (``sdxl``)."""

    name = "sdxl"
    label = "SDXL"
    text_encoders = ("text_encoder", "text_encoder_2")
    tokenizers = ("tokenizer", "tokenizer_2")
    size_conditioning = True
    map_conditioning = False
    joint_masks = False  # not built yet for SDXL's UNet (its tests and toy are SD-shaped)

    def pipeline_class(self, control: bool = False) -> Any:
        import diffusers

        return (
            diffusers.StableDiffusionXLControlNetPipeline
            if control
            else diffusers.StableDiffusionXLPipeline
        )

    def load_pipeline(self, ref: str, dtype: torch.dtype, **kwargs: Any) -> Any:
        # No invisible watermark: it changes pixel values of the user's data.
        return self.pipeline_class().from_pretrained(
            ref, dtype=dtype, add_watermarker=False, **kwargs
        )

    def load_single_file(self, path: str | os.PathLike[str], dtype: torch.dtype) -> Any:
        from geosynth.diffusion.single_file_sdxl import load_sdxl_single_file

        return load_sdxl_single_file(path, dtype=dtype)

    def single_file_parts(self, path: Path) -> dict[str, dict[str, torch.Tensor]]:
        from geosynth.diffusion.single_file_sdxl import sdxl_state_dicts

        return sdxl_state_dicts(path)

    def single_file_sample_size(self, path: Path) -> int:
        from geosynth.diffusion.single_file import sample_size

        return sample_size(path)

    def encode_prompts(
        self, encoders: Sequence[Encoder], prompts: list[str], device: Any
    ) -> PromptEmbeds:
        hidden, pooled = [], None
        for te, tokenizer in encoders:
            out = te(tokenize(tokenizer, prompts, device), output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
            pooled = out[0]  # the last (projecting) encoder's pooled output
        return PromptEmbeds(torch.cat(hidden, dim=-1), pooled)

    def unet_conditioning(
        self, embeds: PromptEmbeds, sizes: torch.Tensor | None, dtype: torch.dtype
    ) -> dict[str, Any]:
        if embeds.pooled is None or sizes is None:
            raise ValueError("SDXL's UNet needs the pooled text embedding and the size numbers")
        added = {"text_embeds": embeds.pooled.to(dtype), "time_ids": sizes.to(dtype)}
        return {"encoder_hidden_states": embeds.hidden.to(dtype), "added_cond_kwargs": added}

    def pipeline_embeddings(self, pipe: Any, prompts: list[str], guidance: bool) -> dict[str, Any]:
        with torch.no_grad():
            cond, uncond, pooled, upooled = pipe.encode_prompt(
                prompt=prompts,
                device=pipe._execution_device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=guidance,
            )
        out = {"prompt_embeds": cond, "pooled_prompt_embeds": pooled}
        if guidance:
            out |= {"negative_prompt_embeds": uncond, "negative_pooled_prompt_embeds": upooled}
        return out

    def vae_dtype(self, vae: Any, dtype: torch.dtype) -> torch.dtype:
        # SDXL's VAE overflows in float16 (its config says force_upcast); fixed fp16 VAEs
        # (e.g. madebyollin/sdxl-vae-fp16-fix) say force_upcast false. bfloat16 does not overflow.
        if dtype == torch.float16 and getattr(vae.config, "force_upcast", True):
            return torch.float32
        return dtype

    def save_token(self, path: Path, token: str, rows: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        # The SDXL embedding convention of A1111 and ComfyUI: one (vectors x width) tensor per
        # encoder, clip_l for the first, clip_g for the second; the token is the card's.
        tensors = {
            "clip_l": rows["text_encoder"].detach().float().cpu().reshape(1, -1).clone(),
            "clip_g": rows["text_encoder_2"].detach().float().cpu().reshape(1, -1).clone(),
        }
        save_file(tensors, str(path))

    def load_token(self, pipe: Any, path: Path, token: str) -> None:
        from safetensors.torch import load_file

        rows = load_file(str(path))
        for key, te, tok in (
            ("clip_l", pipe.text_encoder, pipe.tokenizer),
            ("clip_g", pipe.text_encoder_2, pipe.tokenizer_2),
        ):
            pipe.load_textual_inversion(rows[key], token=token, text_encoder=te, tokenizer=tok)

    def kohya_prefix(self, component: str) -> str | None:
        prefixes = {
            "unet": "lora_unet_",
            "text_encoder": "lora_te1_",
            "text_encoder_2": "lora_te2_",
        }
        return prefixes.get(component)

    def kohya_module(self, component: str, module: str, unet_config: Any) -> str:
        from geosynth.diffusion.ldm_layout import ldm_unet_module

        if component != "unet":
            return module if module.startswith("text_model.") else "text_model." + module
        cfg = dict(unet_config or SDXL_BASE_UNET)
        attn = [t.startswith("CrossAttn") for t in cfg["down_block_types"]]
        return ldm_unet_module(module, len(attn), int(cfg["layers_per_block"]), attn)

    def kohya_metadata(self) -> dict[str, str]:
        return {
            "ss_v2": "False",
            "ss_base_model_version": "sdxl_base_v1-0",
            "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
        }

    def kohya_unet_config(self, base_model: str | os.PathLike[str] | None) -> Any:
        """kohya trains SDXL on Stability's UNet, whose module names follow its block layout:
        read from the base model when it is at hand, else SDXL base's."""
        from geosynth.diffusion.family.files import unet_config_of

        config = unet_config_of(base_model) if base_model else None
        return config or SDXL_BASE_UNET


SDXL = StableDiffusionXL()
