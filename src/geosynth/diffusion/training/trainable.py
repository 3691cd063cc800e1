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

from geosynth.diffusion.family import family_of
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
    """Freeze everything, then make the recipe's parts trainable. ``recipe.text_encoder`` applies
    to every text encoder of the family (both of SDXL's), and a learned token goes into each.
    Returns facts for export: the LoRA configs used and the learned token's row per encoder."""
    fam = family_of(pipe)
    unet, vae = pipe.unet, pipe.vae
    encoders = {name: getattr(pipe, name) for name in fam.text_encoders}
    for m in (unet, *encoders.values(), vae):
        m.requires_grad_(False)
    info: dict[str, Any] = {"lora_configs": {}, "token_ids": {}}
    parts = [("unet", unet, recipe.unet, recipe.unet_targets)]
    parts += [(n, te, recipe.text_encoder, recipe.text_targets) for n, te in encoders.items()]
    for name, module, mode, targets in parts:
        if mode == "lora":
            if name == "unet":
                check_lora_targets(module, tuple(targets))
            cfg = _lora_config(recipe, list(targets))
            module.add_adapter(cfg)
            info["lora_configs"][name] = cfg
        elif mode == "full":
            module.requires_grad_(True)
    if recipe.learn_token:
        for (name, te), tok in zip(encoders.items(), fam.tokenizers, strict=True):
            row = add_token(getattr(pipe, tok), te, recipe.learn_token, recipe.token_init)
            info["token_ids"][name] = row
            emb = te.get_input_embeddings().weight
            emb.requires_grad_(True)
            if recipe.text_encoder != "full":
                # Textual inversion: only the new row may move; masking its gradient (and
                # keeping embeddings out of weight decay) leaves every other row bit-identical.
                emb.register_hook(_only_row(row))
    vae_parts = {"decoder": recipe.vae_decoder, "encoder": recipe.vae_encoder}
    lora_parts = [p for p, mode in vae_parts.items() if mode == "lora"]
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
    fam = family_of(pipe)
    embeddings = [getattr(pipe, n).get_input_embeddings().weight for n in fam.text_encoders]
    for name in fam.components:
        for p in getattr(pipe, name).parameters():
            if p.requires_grad:
                token_row = any(p is e for e in embeddings) and recipe.text_encoder != "full"
                (no_decay if token_row else decay).append(p)
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _trainable(pipe: Pipeline) -> dict[str, torch.nn.Parameter]:
    """Every trainable parameter by qualified name (``unet.``, ``text_encoder.``,
    ``text_encoder_2.``, ``vae.``)."""
    out = {}
    for prefix in family_of(pipe).components:
        for name, p in getattr(pipe, prefix).named_parameters():
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
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    fam = family_of(pipe)
    written = []
    layers: dict[str, Any] = {}
    for name, cfg in info["lora_configs"].items():
        if name == "vae":
            continue
        module = getattr(pipe, name)
        state = get_peft_model_state_dict(module, save_embedding_layers=False)
        layers[f"{name}_lora_layers"] = convert_state_dict_to_diffusers(state)
        layers[f"{name}_lora_adapter_metadata"] = _config_dict(cfg)
    if layers:
        fam.pipeline_class().save_lora_weights(out, safe_serialization=True, **layers)
        written.append(LORA_FILE)
    if recipe.learn_token and recipe.text_encoder != "full":
        rows = {
            name: getattr(pipe, name).get_input_embeddings().weight[row]
            for name, row in info["token_ids"].items()
        }
        fam.save_token(out / TOKEN_FILE, recipe.learn_token, rows)
        written.append(TOKEN_FILE)
    if recipe.unet == "full":
        pipe.unet.save_pretrained(out / "unet", safe_serialization=True)
        written.append("unet")
    if recipe.text_encoder == "full":
        for te, tok in zip(fam.text_encoders, fam.tokenizers, strict=True):
            getattr(pipe, te).save_pretrained(out / te, safe_serialization=True)
            getattr(pipe, tok).save_pretrained(out / tok)
            written += [te, tok]
    if recipe.trains_vae:
        lora = "lora" in (recipe.vae_decoder, recipe.vae_encoder)
        vae = _merged_vae(pipe.vae) if lora else pipe.vae
        vae.save_pretrained(out / "vae", safe_serialization=True)
        written.append("vae")
    return written
