"""Stable Diffusion 1.x and 2.x: one CLIP text encoder whose last hidden states the UNet
cross-attends to, no added conditioning, the VAE in the pipeline's dtype, kohya names in
diffusers' module names (``lora_unet_``, ``lora_te_``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from geosynth.diffusion.family.base import Encoder, ModelFamily, PromptEmbeds


def tokenize(tokenizer: Any, prompts: list[str], device: Any) -> torch.Tensor:
    """Token ids padded to the tokenizer's length, as diffusers' pipelines pad prompts."""
    return tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)


class StableDiffusion(ModelFamily):
    """SD 1.x (``sd1``: CLIP ViT-L, 768-wide cross-attention) and SD 2.x (``sd2``: OpenCLIP
    ViT-H, 1024 wide; also geosynth's SD-2-shaped toy and domain pipelines)."""

    def __init__(self, name: str, label: str, kohya_version: str, architecture: str) -> None:
        self.name, self.label = name, label
        self._version, self._architecture = kohya_version, architecture

    def pipeline_class(self, control: bool = False) -> Any:
        import diffusers

        return (
            diffusers.StableDiffusionControlNetPipeline
            if control
            else diffusers.StableDiffusionPipeline
        )

    def load_pipeline(self, ref: str, dtype: torch.dtype, **kwargs: Any) -> Any:
        return self.pipeline_class().from_pretrained(
            ref, dtype=dtype, safety_checker=None, requires_safety_checker=False, **kwargs
        )

    def load_single_file(self, path: str | os.PathLike[str], dtype: torch.dtype) -> Any:
        from geosynth.diffusion.single_file import load_sd_single_file

        return load_sd_single_file(path, dtype=dtype)

    def single_file_parts(self, path: Path) -> dict[str, dict[str, torch.Tensor]]:
        from geosynth.diffusion.single_file import component_state_dicts

        return component_state_dicts(path)

    def single_file_sample_size(self, path: Path) -> int:
        from geosynth.diffusion.single_file import sample_size

        return sample_size(path)

    def encode_prompts(
        self, encoders: Sequence[Encoder], prompts: list[str], device: Any
    ) -> PromptEmbeds:
        ((te, tokenizer),) = encoders
        return PromptEmbeds(te(tokenize(tokenizer, prompts, device))[0])

    def unet_conditioning(
        self, embeds: PromptEmbeds, sizes: torch.Tensor | None, dtype: torch.dtype
    ) -> dict[str, Any]:
        return {"encoder_hidden_states": embeds.hidden.to(dtype)}

    def pipeline_embeddings(self, pipe: Any, prompts: list[str], guidance: bool) -> dict[str, Any]:
        with torch.no_grad():
            cond, uncond = pipe.encode_prompt(prompts, pipe._execution_device, 1, guidance)
        out = {"prompt_embeds": cond}
        if uncond is not None:
            out["negative_prompt_embeds"] = uncond
        return out

    def save_token(self, path: Path, token: str, rows: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        save_file({token: rows["text_encoder"].detach().float().cpu().clone()}, str(path))

    def load_token(self, pipe: Any, path: Path, token: str) -> None:
        pipe.load_textual_inversion(str(path), token=token)

    def kohya_prefix(self, component: str) -> str | None:
        return {"unet": "lora_unet_", "text_encoder": "lora_te_"}.get(component)

    def kohya_module(self, component: str, module: str, unet_config: Any) -> str:
        if component == "text_encoder" and not module.startswith("text_model."):
            return "text_model." + module  # transformers' CLIPTextModel nests its layers there
        return module  # kohya trains SD 1.x/2.x on diffusers' UNet: its module names

    def kohya_metadata(self) -> dict[str, str]:
        return {
            "ss_v2": str(self._version == "sd_v2"),
            "ss_base_model_version": self._version,
            "modelspec.architecture": f"{self._architecture}/lora",
        }


SD1 = StableDiffusion("sd1", "SD 1.x", "sd_v1", "stable-diffusion-v1")
SD2 = StableDiffusion("sd2", "SD 2.x", "sd_v2", "stable-diffusion-v2-512")
