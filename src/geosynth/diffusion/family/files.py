"""What a model's files say about its family, read without loading weights: the pipeline index
(``model_index.json``) and UNet config of a folder, cached or remote hub id, the key names and
shapes of a single-file checkpoint, the keys of a LoRA file."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from geosynth.errors import GeosynthError


def is_single_file(model: str | os.PathLike[str]) -> bool:
    """Whether a model reference names a single-file checkpoint."""
    return str(model).endswith(".safetensors")


def _quiet(load: Any) -> Any:
    """``load`` with library warnings (huggingface_hub's deprecation notices) kept off stderr:
    a failure becomes one line through :func:`~geosynth.runtime.load_with`."""

    def call(ref: str) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load(ref)

    return call


def _config_reader(name: str) -> Any:
    """A ``load_config`` for JSON files named ``name`` (diffusers' reader: folders, the HF cache
    and the hub alike), without importing any pipeline or model class."""
    from diffusers import ConfigMixin

    class Reader(ConfigMixin):
        config_name = name

    return Reader.load_config


def model_index(model: str | os.PathLike[str], what: str = "model") -> dict[str, Any]:
    """The pipeline's ``model_index.json`` (a folder, the HF cache, or the hub)."""
    from geosynth.runtime import load_with

    return dict(load_with(_quiet(_config_reader("model_index.json")), model, what))


def component_config(
    model: str | os.PathLike[str], component: str, what: str = "model"
) -> dict[str, Any] | None:
    """A component's ``config.json`` (None when the pipeline has no such folder)."""
    from geosynth.runtime import load_with

    read = _config_reader("config.json")
    try:
        load = _quiet(lambda ref: read(ref, subfolder=component))
        return dict(load_with(load, model, what))
    except GeosynthError:
        return None


def unet_config_of(model: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The UNet's layout (at least ``layers_per_block`` and ``down_block_types``) of a pipeline
    or single file, or None when it cannot be read here."""
    try:
        if is_single_file(model):
            from geosynth.diffusion.ldm_layout import UNET, read_shapes, unet_layout

            shapes = read_shapes(model)
            _, lpb, attn = unet_layout({k[len(UNET) :]: s for k, s in shapes.items()})
            types = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn]
            return {"layers_per_block": lpb, "down_block_types": types}
        return component_config(model, "unet")
    except (GeosynthError, OSError, ValueError):
        return None


#: Pipeline class name prefixes of families geosynth does not run, and what to call them.
OTHER_FAMILIES = (
    ("StableDiffusion3", "an SD3"),
    ("Flux", "a FLUX"),
    ("PixArt", "a PixArt"),
    ("Sana", "a Sana"),
    ("Kandinsky", "a Kandinsky"),
    ("StableCascade", "a Stable Cascade"),
    ("Wuerstchen", "a Wuerstchen"),
    ("HunyuanDiT", "a HunyuanDiT"),
    ("AuraFlow", "an AuraFlow"),
    ("Lumina", "a Lumina"),
    ("CogView", "a CogView"),
    ("Kolors", "a Kolors"),
    ("QwenImage", "a Qwen-Image"),
)

#: The width of the text features a UNet cross-attends to, by family.
CROSS_ATTENTION = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


#: The down (A) matrix of a LoRA module, in the layouts diffusers, peft and kohya write.
_DOWN = ("lora_A.weight", "lora.down.weight", "lora_down.weight", "lora_linear_layer.down.weight")
#: kohya's ``ss_base_model_version`` prefixes, by family.
KOHYA_VERSIONS = (("sdxl", "sdxl"), ("sd_v2", "sd2"), ("sd_v1", "sd1"))


def lora_file_family(path: Path) -> str | None:
    """The family a LoRA weights file (diffusers or kohya keys) was made for, from its key names
    and shapes (a second text encoder: SDXL; else the cross-attention width: 768 SD 1.x, 1024
    SD 2.x, 2048 SDXL), else from kohya's ``ss_base_model_version``; None when nothing tells
    (e.g. the toy models' widths)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            keys = list(fh.keys())
            if any(k.startswith(("text_encoder_2.", "lora_te2_")) for k in keys):
                return "sdxl"
            for k in keys:
                if "attn2" in k and "to_k" in k and k.endswith(_DOWN):
                    width = int(fh.get_slice(k).get_shape()[1])
                    if width in CROSS_ATTENTION:
                        return CROSS_ATTENTION[width]
                    break
            version = (fh.metadata() or {}).get("ss_base_model_version", "")
    except Exception:  # not a readable safetensors file: loading it will say so in one line
        return None
    return next((fam for prefix, fam in KOHYA_VERSIONS if version.startswith(prefix)), None)
