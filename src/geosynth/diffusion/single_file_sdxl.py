"""Stable Diffusion XL single-file checkpoints (``sd_xl_base_1.0.safetensors``, the layout A1111
and ComfyUI users hold), loaded offline.

The file holds ``model.diffusion_model.*`` (the UNet in Stability's SGM names, with
``label_emb`` for the added pooled-text and size embedding), ``conditioner.embedders.0.
transformer.*`` (CLIP ViT-L in transformers' layout), ``conditioner.embedders.1.model.*``
(OpenCLIP ViT-bigG: fused q/k/v, bare embeddings, ``text_projection``) and
``first_stage_model.*`` (the VAE). Sizes come from the tensor shapes
(:mod:`geosynth.diffusion.ldm_layout`); SDXL's published values give the rest: UNet heads 64
channels wide, GroupNorm(32), a quick-GELU first and a GELU second text encoder with heads 64
wide, latent scale 0.13025 (or ``model.params.scale_factor`` of a ``FILE.yaml`` beside it), 1024
px (128 latent cells, or ``network_config.params.image_size``), SDXL base's Euler scheduler, a
VAE that overflows in float16 (``force_upcast``). Both tokenizers are CLIP's BPE, built offline
(padding with ``<|endoftext|>`` and ``!`` as SDXL's do). geosynth's toy SDXL (``toy model --kind
sdxl``, recognised by its narrow text encoder) has its own head widths and group norms.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosynth.diffusion.ldm_layout import (
    SDXL_TE1,
    SDXL_TE2,
    UNET,
    VAE_P,
    checkpoint_kind,
    convert_open_clip,
    convert_unet,
    convert_vae,
    load_weights,
    read_checkpoint,
    sidecar,
    sidecar_image_size,
    sub,
    text_config,
    tokenizer_for,
    unet_config,
    vae_config,
    what,
)
from geosynth.errors import GeosynthError

if TYPE_CHECKING:
    import torch

#: What shapes do not tell: UNet head width and groups, VAE groups, text heads (None: 64 wide).
_HYPER: dict[str, dict[str, Any]] = {
    "sdxl": {"head_width": 64, "unet_groups": 32, "vae_groups": 32, "te_heads": None},
    "toy-sdxl": {"head_width": 16, "unet_groups": 16, "vae_groups": 8, "te_heads": 4},
}


def _parts(sd: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    return {
        "unet": convert_unet(sub(sd, UNET)),
        "vae": convert_vae(sub(sd, VAE_P)),
        "text_encoder": sub(sd, SDXL_TE1),
        "text_encoder_2": convert_open_clip(sub(sd, SDXL_TE2), drop_last=False),
    }


def _kind(sd: dict[str, torch.Tensor], path: Path) -> str:
    found = checkpoint_kind({k: list(v.shape) for k, v in sd.items()}, path)
    if found not in _HYPER:
        raise GeosynthError(f"{what(path)}: not an SDXL checkpoint")
    return found


def sdxl_state_dicts(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor] | None = None
) -> dict[str, dict[str, torch.Tensor]]:
    """The ``unet``, ``vae``, ``text_encoder`` and ``text_encoder_2`` weights in diffusers'
    names; ``tensors``: the file's, when at hand (see ``single_file.component_state_dicts``)."""
    p = Path(path).expanduser()
    sd = read_checkpoint(p) if tensors is None else tensors
    _kind(sd, p)
    return _parts(sd)


def sdxl_configs(parts: dict[str, dict[str, Any]], kind: str, path: Path) -> dict[str, Any]:
    """The four components' configs from the converted shapes and SDXL's values."""
    from geosynth.defaults import SDXL_SCALING_FACTOR

    hyper = _HYPER[kind]
    params = sidecar(path)
    u = parts["unet"]
    unet = unet_config(u, hyper["head_width"], 0, hyper["unet_groups"])
    te2 = text_config(parts["text_encoder_2"], hyper["te_heads"], "gelu")
    if "add_embedding.linear_1.weight" not in u or "projection_dim" not in te2:
        raise GeosynthError(f"{what(path)}: SDXL UNet or text encoder without its projections")
    added = int(u["add_embedding.linear_1.weight"].shape[1])
    unet |= {
        "sample_size": sidecar_image_size(params, 128),
        "addition_embed_type": "text_time",
        # the added embedding takes the pooled text (projection_dim) and 6 size numbers
        "addition_time_embed_dim": (added - te2["projection_dim"]) // 6,
        "projection_class_embeddings_input_dim": added,
    }
    scale = float(params.get("scale_factor", SDXL_SCALING_FACTOR))
    vae = vae_config(parts["vae"], hyper["vae_groups"], unet["sample_size"], scale)
    vae["force_upcast"] = True  # SDXL's VAE overflows in float16
    te1 = text_config(parts["text_encoder"], hyper["te_heads"], "quick_gelu")
    te1.pop("projection_dim", None)
    return {"unet": unet, "vae": vae, "text_encoder": te1, "text_encoder_2": te2}


def load_sdxl_single_file(
    path: str | os.PathLike[str], *, dtype: torch.dtype, prediction_type: str | None = None
):
    """A ``StableDiffusionXLPipeline`` (no watermark) from an SDXL single file, offline;
    SDXL base predicts epsilon, ``prediction_type`` (or ``parameterization: v`` in a
    ``FILE.yaml``) says otherwise for v-prediction fine-tunes."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from geosynth.defaults import SDXL_SCHEDULER_CONFIG

    if prediction_type not in (None, "epsilon", "v_prediction"):
        raise GeosynthError(
            f"prediction_type={prediction_type!r}: expected epsilon or v_prediction"
        )
    p = Path(path).expanduser()
    yaml_v = sidecar(p).get("parameterization") == "v"
    prediction = prediction_type or ("v_prediction" if yaml_v else "epsilon")
    sd = read_checkpoint(p)
    kind = _kind(sd, p)
    parts = _parts(sd)
    del sd
    cfg = sdxl_configs(parts, kind, p)
    toy = kind.startswith("toy")
    encoders: dict[str, Any] = {}
    tokenizers = []
    for name, pad, cls in (
        ("text_encoder", "<|endoftext|>", CLIPTextModel),
        ("text_encoder_2", "!", CLIPTextModelWithProjection),
    ):
        tok = tokenizer_for(cfg[name]["vocab_size"], pad, toy, p)
        ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
        config = CLIPTextConfig(**cfg[name], **ids, pad_token_id=tok.pad_token_id)
        encoders[name] = cls(config)
        tokenizers.append(tok)
    unet = UNet2DConditionModel(**cfg["unet"])
    vae = AutoencoderKL(**cfg["vae"])
    for name, model in (("unet", unet), ("vae", vae), *encoders.items()):
        load_weights(model, parts[name], name, p)
    return StableDiffusionXLPipeline(
        vae=vae.to(dtype),
        text_encoder=encoders["text_encoder"].to(dtype),
        text_encoder_2=encoders["text_encoder_2"].to(dtype),
        tokenizer=tokenizers[0],
        tokenizer_2=tokenizers[1],
        unet=unet.to(dtype),
        scheduler=EulerDiscreteScheduler.from_config(
            {**SDXL_SCHEDULER_CONFIG, "prediction_type": prediction}
        ),
        add_watermarker=False,
    )
