"""What trains, and how it is saved: LoRA adapters (peft), whole components, a learned token.

* :func:`fuse_init_loras` merges earlier LoRAs (2LoRA stage 1, seed 001) into the frozen base.
* :func:`prepare_components` switches each part to LoRA, full or frozen training.
* :func:`export_trained` writes what trained in the formats plain diffusers reads:
  ``pytorch_lora_weights.safetensors`` with the adapter configs in its metadata (so
  ``pipe.load_lora_weights(DIR)`` keeps alpha), ``learned_embeds.safetensors`` (textual-inversion
  format, ``pipe.load_textual_inversion``), and ``unet/``, ``text_encoder/`` + ``tokenizer/`` or
  ``vae/`` sub-folders for components trained in full (a VAE decoder or encoder LoRA is merged
  first: diffusers' pipelines cannot load VAE LoRAs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from geosynth.diffusion.loras import LORA_FILE, TOKEN_FILE
from geosynth.diffusion.training.recipe import VAE_DECODER_TARGETS, Recipe, check_lora_targets
from geosynth.diffusion.types import Pipeline
from geosynth.errors import GeosynthError


def fuse_init_loras(pipe: Pipeline, loras: list[tuple[str, float]]) -> None:
    """Merge ``(dir, weight)`` LoRAs into the pipeline's weights and drop the adapters."""
    if not loras:
        return
    names = []
    for i, (path, _) in enumerate(loras):
        name = f"init_{i}"
        try:
            pipe.load_lora_weights(str(path), adapter_name=name)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise GeosynthError(
                f"init_loras={str(path)!r}: cannot load into this model: {first}"
            ) from None
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[w for _, w in loras])
    pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
    pipe.unload_lora_weights()


def _lora_config(recipe: Recipe, targets: Any):
    from peft import LoraConfig

    return LoraConfig(
        r=recipe.rank,
        lora_alpha=recipe.alpha,
        lora_dropout=recipe.lora_dropout,
        init_lora_weights="gaussian",
        target_modules=targets,
    )


def add_token(tokenizer, text_encoder, token: str, init_word: str) -> int:
    """Add ``token`` to the vocabulary; its embedding starts at the mean of ``init_word``'s."""
    if tokenizer.add_tokens(token) == 0:
        raise GeosynthError(f"learn_token={token!r}: already in the tokenizer's vocabulary")
    init_ids = tokenizer.encode(init_word, add_special_tokens=False)
    if not init_ids:
        raise GeosynthError(f"token_init={init_word!r}: the tokenizer gives no tokens")
    text_encoder.resize_token_embeddings(len(tokenizer))
    new_id = tokenizer.convert_tokens_to_ids(token)
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight[new_id] = weight[init_ids].mean(0)
    return int(new_id)


def _only_row(row: int):
    def hook(grad: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(grad)
        mask[row] = 1
        return grad * mask

    return hook


def prepare_components(pipe: Pipeline, recipe: Recipe) -> dict[str, Any]:
    """Freeze everything, then make the recipe's parts trainable. Returns facts for export:
    the LoRA configs used and the learned token's id."""
    unet, te, vae = pipe.unet, pipe.text_encoder, pipe.vae
    for m in (unet, te, vae):
        m.requires_grad_(False)
    info: dict[str, Any] = {"lora_configs": {}, "token_id": None}
    for name, module, mode, targets in (
        ("unet", unet, recipe.unet, recipe.unet_targets),
        ("text_encoder", te, recipe.text_encoder, recipe.text_targets),
    ):
        if mode == "lora":
            if name == "unet":
                check_lora_targets(module, tuple(targets))
            cfg = _lora_config(recipe, list(targets))
            module.add_adapter(cfg)
            info["lora_configs"][name] = cfg
        elif mode == "full":
            module.requires_grad_(True)
    if recipe.learn_token:
        row = add_token(pipe.tokenizer, te, recipe.learn_token, recipe.token_init)
        info["token_id"] = row
        emb = te.get_input_embeddings().weight
        emb.requires_grad_(True)
        if recipe.text_encoder != "full":
            # Textual inversion: only the new row may move; masking its gradient (and keeping
            # embeddings out of weight decay) leaves every other row bit-identical.
            emb.register_hook(_only_row(row))
    parts = {"decoder": recipe.vae_decoder, "encoder": recipe.vae_encoder}
    lora_parts = [p for p, mode in parts.items() if mode == "lora"]
    if lora_parts:
        # One adapter over the LoRA parts; peft freezes every other VAE weight when it is added,
        # so fully trained parts are switched on afterwards.
        pattern = "|".join(t.replace(".", r"\.") for t in VAE_DECODER_TARGETS)
        regex = r"(" + "|".join(lora_parts) + r")\..*(" + pattern + r")$"
        vae.add_adapter(_lora_config(recipe, regex))
    if recipe.vae_decoder == "full":
        vae.decoder.requires_grad_(True)
        vae.post_quant_conv.requires_grad_(True)
    if recipe.vae_encoder == "full":
        vae.encoder.requires_grad_(True)
        vae.quant_conv.requires_grad_(True)
    return info


def parameter_groups(pipe: Pipeline, recipe: Recipe) -> list[dict[str, Any]]:
    """Trainable parameters for AdamW; token embeddings get no weight decay."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    emb = pipe.text_encoder.get_input_embeddings().weight
    for module in (pipe.unet, pipe.text_encoder, pipe.vae):
        for p in module.parameters():
            if p.requires_grad:
                (no_decay if p is emb and recipe.text_encoder != "full" else decay).append(p)
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _trainable(pipe: Pipeline) -> dict[str, torch.nn.Parameter]:
    """Every trainable parameter by qualified name (``unet.``, ``text_encoder.``, ``vae.``)."""
    out = {}
    for prefix, module in (
        ("unet", pipe.unet),
        ("text_encoder", pipe.text_encoder),
        ("vae", pipe.vae),
    ):
        for name, p in module.named_parameters():
            if p.requires_grad:
                out[f"{prefix}.{name}"] = p
    return out


def trainable_state(pipe: Pipeline) -> dict[str, torch.Tensor]:
    """Copies of the trainable tensors on CPU in float32 (what checkpoints hold)."""
    return {k: p.detach().float().cpu().contiguous() for k, p in _trainable(pipe).items()}


def load_trainable_state(pipe: Pipeline, state: dict[str, torch.Tensor]) -> None:
    """Copy checkpointed tensors back into the live parameters (names must match exactly)."""
    live = _trainable(pipe)
    if set(live) != set(state):
        raise GeosynthError("checkpoint does not match this recipe's trainable parameters")
    with torch.no_grad():
        for k, p in live.items():
            p.copy_(state[k].to(p.device, p.dtype))


def _config_dict(cfg) -> dict[str, Any]:
    d = cfg.to_dict()
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in d.items()}


def _merged_vae(vae):
    """A plain AutoencoderKL with the decoder and/or encoder LoRA merged into its weights."""
    from diffusers import AutoencoderKL
    from peft.tuners.tuners_utils import BaseTunerLayer

    for m in vae.modules():
        if isinstance(m, BaseTunerLayer):
            m.merge()
    state = {
        k.replace(".base_layer", ""): v for k, v in vae.state_dict().items() if "lora_" not in k
    }
    fresh = AutoencoderKL.from_config(vae.config)
    fresh.load_state_dict(state)
    return fresh


def export_trained(pipe: Pipeline, recipe: Recipe, info: dict[str, Any], out: Path) -> list[str]:
    """Write what trained into ``out``; returns the files and folders written."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    written = []
    layers: dict[str, Any] = {}
    cfgs = info["lora_configs"]
    if "unet" in cfgs:
        unet_sd = get_peft_model_state_dict(pipe.unet)
        layers["unet_lora_layers"] = convert_state_dict_to_diffusers(unet_sd)
        layers["unet_lora_adapter_metadata"] = _config_dict(cfgs["unet"])
    if "text_encoder" in cfgs:
        te_sd = get_peft_model_state_dict(pipe.text_encoder, save_embedding_layers=False)
        layers["text_encoder_lora_layers"] = convert_state_dict_to_diffusers(te_sd)
        layers["text_encoder_lora_adapter_metadata"] = _config_dict(cfgs["text_encoder"])
    if layers:
        StableDiffusionPipeline.save_lora_weights(out, safe_serialization=True, **layers)
        written.append(LORA_FILE)
    if recipe.learn_token and recipe.text_encoder != "full":
        from safetensors.torch import save_file

        row = pipe.text_encoder.get_input_embeddings().weight[info["token_id"]]
        save_file({recipe.learn_token: row.detach().float().cpu().clone()}, str(out / TOKEN_FILE))
        written.append(TOKEN_FILE)
    if recipe.unet == "full":
        pipe.unet.save_pretrained(out / "unet", safe_serialization=True)
        written.append("unet")
    if recipe.text_encoder == "full":
        pipe.text_encoder.save_pretrained(out / "text_encoder", safe_serialization=True)
        pipe.tokenizer.save_pretrained(out / "tokenizer")
        written += ["text_encoder", "tokenizer"]
    if recipe.trains_vae:
        lora = "lora" in (recipe.vae_decoder, recipe.vae_encoder)
        vae = _merged_vae(pipe.vae) if lora else pipe.vae
        vae.save_pretrained(out / "vae", safe_serialization=True)
        written.append("vae")
    return written
