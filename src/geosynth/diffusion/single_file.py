"""Single-file checkpoints in the original layout (as model sites, A1111 and ComfyUI keep them),
loaded offline: the front for every family, and Stable Diffusion 1.x / 2.x-base itself.

SD files hold ``model.diffusion_model.*`` (UNet), ``first_stage_model.*`` (VAE) and
``cond_stage_model.*`` (text encoder). diffusers' ``from_single_file`` fetches configs from the
hub; this needs no network: the tensors are renamed to diffusers' layout
(:mod:`geosynth.diffusion.ldm_layout`) and every size comes from their shapes. What shapes
cannot tell comes from the family (published values):

* SD 1.x (``cond_stage_model.transformer.*``, a transformers CLIP ViT-L text encoder): 8 UNet
  attention heads, quick-GELU text encoder, 64-wide text heads.
* SD 2.x (``cond_stage_model.model.*``, OpenCLIP ViT-H): 64-channel UNet heads, GELU text
  encoder with its last layer dropped (SD 2 uses the penultimate layer), 64-wide text heads.
* geosynth's toy pipeline (``geosynth toy model --kind sd``, recognised by its 32-wide text
  encoder): its own head counts and group norms.

Both SD families use GroupNorm(32), VAE scaling factor 0.18215, 64x64 latents (512 px) and SD
2.1-base's scheduler. A ``FILE.yaml`` beside the checkpoint (the original
config, as A1111 reads it) may set ``model.params.scale_factor``,
``model.params.unet_config.params.image_size`` and ``model.params.parameterization: v``.
The tokenizer is CLIP's BPE (built from the copy open_clip bundles) for the real 49408-token
vocabulary, the toy tokenizer for the toy's. SDXL files load through
:mod:`geosynth.diffusion.single_file_sdxl`; :func:`component_state_dicts`,
:func:`load_single_file` and :func:`sample_size` take a file of either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosynth.diffusion.ldm_layout import (
    TE,
    UNET,
    VAE_P,
    checkpoint_kind,
    clip_tokenizer,
    convert_open_clip,
    convert_unet,
    convert_vae,
    load_weights,
    read_checkpoint,
    read_shapes,
    sidecar,
    sidecar_image_size,
    sub,
    text_config,
    tokenizer_for,
    unet_config,
    vae_config,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "clip_tokenizer",
    "component_state_dicts",
    "configs",
    "family",
    "is_single_file",
    "kind",
    "load_sd_single_file",
    "load_single_file",
    "sample_size",
]


@dataclass
class Family:
    """Hyperparameters a checkpoint's shapes do not reveal."""

    name: str
    unet_heads: int | None = 8  # None: heads of 64 channels (SD 2)
    unet_groups: int = 32
    vae_groups: int = 32
    te_heads: int | None = None  # None: heads 64 wide
    te_act: str = "quick_gelu"
    extra: dict[str, Any] = field(default_factory=dict)


SD1 = Family("SD 1.x")
SD2 = Family("SD 2.x", unet_heads=None, te_act="gelu")
TOY = Family("geosynth toy", unet_groups=16, vae_groups=8, te_heads=4)
_KINDS = {"sd1": SD1, "sd2": SD2, "toy-sd": TOY}


def kind(path: str | os.PathLike[str]) -> str:
    """The checkpoint's family, from its keys (see :func:`~.ldm_layout.checkpoint_kind`)."""
    p = Path(path).expanduser()
    return checkpoint_kind(read_shapes(p), p)


def family(sd: dict[str, torch.Tensor], path: Path) -> Family:
    """Which SD family a checkpoint is, or a one-line error naming what it looks like."""
    found = checkpoint_kind({k: list(v.shape) for k, v in sd.items()}, path)
    if found not in _KINDS:
        from geosynth.diffusion.ldm_layout import what
        from geosynth.errors import GeosynthError

        raise GeosynthError(f"{what(path)}: an SDXL checkpoint, not SD 1.x / 2.x")
    return _KINDS[found]


def _sd_parts(sd: dict[str, torch.Tensor], fam: Family) -> dict[str, dict[str, torch.Tensor]]:
    te = convert_open_clip(sub(sd, TE + "model.")) if fam is SD2 else sub(sd, TE + "transformer.")
    return {
        "unet": convert_unet(sub(sd, UNET)),
        "vae": convert_vae(sub(sd, VAE_P)),
        "text_encoder": te,
    }


def component_state_dicts(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor] | None = None
) -> dict[str, dict[str, torch.Tensor]]:
    """The checkpoint's ``unet``, ``vae`` and ``text_encoder`` weights in diffusers' names (for
    SDXL also ``text_encoder_2``), for a file of any family geosynth runs. ``tensors``: the
    file's tensors when already at hand (the weight digest passes meta tensors and hashes the
    file's bytes each result views, so conversions must rename and take views, not compute)."""
    p = Path(path).expanduser()
    if kind(p).endswith("sdxl"):
        from geosynth.diffusion.single_file_sdxl import sdxl_state_dicts

        return sdxl_state_dicts(p, tensors)
    sd = read_checkpoint(p) if tensors is None else tensors
    return _sd_parts(sd, family(sd, p))


def configs(parts: dict[str, dict[str, torch.Tensor]], fam: Family, path: Path) -> dict[str, Any]:
    """diffusers / transformers configs of the three components, from the converted shapes and
    the family (see the module docstring); the prediction type is
    :func:`geosynth.diffusion.ldm_prediction.pick_prediction`'s."""
    params = sidecar(path)
    head_width = None if fam.unet_heads else 64
    unet = unet_config(parts["unet"], head_width, fam.unet_heads or 0, fam.unet_groups)
    unet["sample_size"] = sidecar_image_size(params, 64)
    vae = vae_config(
        parts["vae"],
        fam.vae_groups,
        unet["sample_size"],
        float(params.get("scale_factor", 0.18215)),
    )
    text = text_config(parts["text_encoder"], fam.te_heads, fam.te_act)
    return {"unet": unet, "vae": vae, "text_encoder": text}


def load_sd_single_file(
    path: str | os.PathLike[str], *, dtype: torch.dtype, prediction_type: str | None = None
):
    """A ``StableDiffusionPipeline`` (no safety checker) from an SD 1.x / 2.x single file.
    ``prediction_type`` (epsilon or v_prediction) wins over FILE.yaml, which wins over what an
    SD 2.x file's weights say (:mod:`geosynth.diffusion.ldm_prediction`)."""
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from geosynth.defaults import SD21_SCHEDULER_CONFIG
    from geosynth.diffusion.ldm_prediction import pick_prediction
    from geosynth.errors import GeosynthError

    if prediction_type not in (None, "epsilon", "v_prediction"):
        raise GeosynthError(
            f"prediction_type={prediction_type!r}: expected epsilon or v_prediction"
        )
    p = Path(path).expanduser()
    sd = read_checkpoint(p)
    fam = family(sd, p)
    prediction = prediction_type or pick_prediction(
        p, sidecar(p), sub(sd, UNET) if fam is SD2 else None
    )
    parts = _sd_parts(sd, fam)
    del sd
    cfg = configs(parts, fam, p)
    vocab = cfg["text_encoder"]["vocab_size"]
    tok = tokenizer_for(vocab, "!" if fam is SD2 else "<|endoftext|>", fam is TOY, p)
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    te = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"], **ids, pad_token_id=tok.pad_token_id))
    unet = UNet2DConditionModel(**cfg["unet"])
    vae = AutoencoderKL(**cfg["vae"])
    for name, model in (("unet", unet), ("vae", vae), ("text_encoder", te)):
        load_weights(model, parts[name], name, p)
    scheduler = PNDMScheduler(**{**SD21_SCHEDULER_CONFIG, "prediction_type": prediction})
    pipe = StableDiffusionPipeline(
        vae=vae.to(dtype),
        text_encoder=te.to(dtype),
        tokenizer=tok,
        unet=unet.to(dtype),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe


def load_single_file(
    path: str | os.PathLike[str], *, dtype: torch.dtype, prediction_type: str | None = None
):
    """The pipeline of a single-file checkpoint of any family geosynth runs, offline.
    ``prediction_type``: see :func:`load_sd_single_file` (SDXL files: epsilon unless set)."""
    if kind(path).endswith("sdxl"):
        from geosynth.diffusion.single_file_sdxl import load_sdxl_single_file

        return load_sdxl_single_file(path, dtype=dtype, prediction_type=prediction_type)
    return load_sd_single_file(path, dtype=dtype, prediction_type=prediction_type)


def is_single_file(model: str | os.PathLike[str]) -> bool:
    """Whether a model reference names a single-file checkpoint."""
    return str(model).endswith(".safetensors")


def sample_size(path: str | os.PathLike[str]) -> int:
    """The UNet's latent size (64 for SD: 512 px; 128 for SDXL: 1024 px), without loading the
    weights."""
    p = Path(path).expanduser()
    default = 128 if kind(p).endswith("sdxl") else 64
    return sidecar_image_size(sidecar(p), default)
