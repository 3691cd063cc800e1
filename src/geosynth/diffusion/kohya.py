"""LoRA files in the kohya / A1111 / ComfyUI convention, to and from geosynth's diffusers layout.

geosynth writes LoRAs as diffusers does (``pytorch_lora_weights.safetensors``: keys
``unet.<module>.lora.down.weight`` / ``.lora.up.weight`` or peft's ``lora_A``/``lora_B``, the peft
configs with ``r`` and ``lora_alpha`` in the file's metadata). kohya's sd-scripts, AUTOMATIC1111
and ComfyUI read one flat file instead:

* keys ``lora_unet_<module with "." as "_">.lora_down.weight`` / ``.lora_up.weight`` for the UNet
  and ``lora_te_text_model_<...>`` for the text encoder. The module names are the family's
  (:meth:`~geosynth.diffusion.family.ModelFamily.kohya_module`): for SD 1.x/2.x diffusers'
  UNet names, which kohya trains on; for SDXL Stability's SGM names
  (``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``, the names of the UNet in the
  original single file) and ``lora_te1_`` / ``lora_te2_`` for its two text encoders;
* one scalar ``<prefix>.alpha`` tensor per module: the update is ``up @ down * alpha / rank``,
  so alpha must travel with each module (a rank-16 LoRA trained with alpha 16 has scale 1; drop
  the alpha tensors and those tools assume alpha = rank, which happens to match only then);
* ``ss_*`` metadata (network module, dim, alpha, base-model version) that those tools show.

Import goes through diffusers' own converter (``load_lora_weights`` understands every variant of
the kohya naming), then writes geosynth's layout from the loaded peft adapters, so the result is
what diffusers itself would run.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from geosynth.artifacts.jsontext import json_text
from geosynth.diffusion.family import ModelFamily
from geosynth.errors import GeosynthError

#: Suffixes of the two LoRA matrices in the layouts diffusers and peft write.
_DOWN_UP = (
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora.down.weight", "down"),
    (".lora.up.weight", "up"),
    (".lora_linear_layer.down.weight", "down"),
    (".lora_linear_layer.up.weight", "up"),
)


def _split_key(key: str) -> tuple[str, str, str]:
    """``unet.a.b.lora.down.weight`` -> (``unet``, ``a.b``, ``down``)."""
    component, _, rest = key.partition(".")
    for suffix, which in _DOWN_UP:
        if rest.endswith(suffix):
            return component, rest[: -len(suffix)], which
    raise GeosynthError(f"tensor '{key}': not a LoRA down/up weight")


def _adapter_configs(metadata: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per-component peft settings from diffusers' ``lora_adapter_metadata`` (flat keys
    ``unet.r``, ``unet.lora_alpha``, ...); empty when the file carries none."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    flat = json.loads(raw)
    out: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        component, _, name = key.partition(".")
        out.setdefault(component, {})[name] = value
    return out


def _pattern_value(module: str, patterns: dict[str, Any], default: Any) -> Any:
    """peft's rank/alpha patterns: the first pattern that matches the end of the module name."""
    for pattern, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return value
    return default


def diffusers_to_kohya(
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str],
    family: ModelFamily | None = None,
    unet_config: Any = None,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Convert a diffusers-layout LoRA state dict (and its file metadata) to kohya keys with one
    ``alpha`` per module and ``ss_*`` metadata; the update each module applies is unchanged.
    ``family`` names the modules (default: SD 2.x's, which are diffusers'); ``unet_config``
    gives the UNet layout SDXL's names depend on."""
    from geosynth.diffusion.family import FAMILIES

    fam = family or FAMILIES["sd2"]
    configs = _adapter_configs(metadata)
    out: dict[str, torch.Tensor] = {}
    ranks: Counter[int] = Counter()
    alphas: Counter[float] = Counter()
    for key in sorted(tensors):
        component, module, which = _split_key(key)
        prefix = fam.kohya_prefix(component)
        if prefix is None:
            raise GeosynthError(
                f"tensor '{key}': component '{component}' has no kohya name in {fam.label} "
                f"LoRA files"
            )
        kohya = prefix + fam.kohya_module(component, module, unet_config).replace(".", "_")
        weight = tensors[key].contiguous()
        out[f"{kohya}.lora_{which}.weight"] = weight
        if which == "down":
            rank = int(weight.shape[0])
            cfg = configs.get(component, {})
            rank_cfg = _pattern_value(module, cfg.get("rank_pattern", {}), cfg.get("r", rank))
            if int(rank_cfg) != rank:
                raise GeosynthError(
                    f"tensor '{key}': rank {rank} disagrees with the file's adapter config ({rank_cfg})"
                )
            # Without recorded configs diffusers loads a LoRA at alpha = rank (scale 1).
            alpha = float(
                _pattern_value(module, cfg.get("alpha_pattern", {}), cfg.get("lora_alpha", rank))
            )
            out[f"{kohya}.alpha"] = torch.tensor(alpha, dtype=torch.float32)
            ranks[rank] += 1
            alphas[alpha] += 1
    if not out:
        raise GeosynthError("the LoRA file holds no LoRA weights")
    meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(ranks.most_common(1)[0][0]),
        "ss_network_alpha": f"{alphas.most_common(1)[0][0]:g}",
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.implementation": "diffusers",
        **fam.kohya_metadata(),
    }
    return out, meta


def _lora_family(src: Path, card: dict[str, Any]) -> ModelFamily:
    """The family a LoRA directory was made for: its card's, what its weights tell, else SD
    (1.x for a 768-wide cross-attention; otherwise 2.x, as geosynth's toy pipelines)."""
    from geosynth.diffusion.family import FAMILIES, family_named
    from geosynth.diffusion.family.files import lora_file_family
    from geosynth.diffusion.loras import LORA_FILE

    if card.get("base_family"):
        return family_named(str(card["base_family"]), f"{src}: its card")
    found = lora_file_family(src / LORA_FILE if src.is_dir() else src)
    return FAMILIES[found or "sd2"]


def export_kohya(lora_dir: str | Path, out: str | Path, *, title: str | None = None) -> Path:
    """Write ``lora_dir``'s LoRA (a geosynth finetune output or any diffusers LoRA directory)
    as one kohya-convention safetensors file at ``out``, atomically."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from geosynth.artifacts import atomic_path, check_finite
    from geosynth.diffusion.loras import CARD_FILE, LORA_FILE

    src = Path(lora_dir)
    weights = src / LORA_FILE if src.is_dir() else src
    if not weights.is_file():
        raise GeosynthError(f"{src}: no {LORA_FILE} (expected a LoRA directory)")
    with safe_open(str(weights), framework="pt") as fh:
        metadata = dict(fh.metadata() or {})
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is no dict)
    check_finite(tensors, str(weights))  # a diverged run's NaNs are not passed on
    card_path = src / CARD_FILE if src.is_dir() else None
    card = json.loads(card_path.read_text()) if card_path and card_path.is_file() else {}
    fam = _lora_family(src, card)
    unet_config = fam.kohya_unet_config(card.get("base_model"))
    converted, meta = diffusers_to_kohya(tensors, metadata, fam, unet_config)
    if card:
        meta["ss_sd_model_name"] = str(card.get("base_model", ""))
        meta["geosynth_card"] = json_text(card, sort_keys=True)
    meta["modelspec.title"] = title or src.name
    target = Path(out)
    with atomic_path(target) as tmp:
        save_file(converted, str(tmp), metadata=dict(sorted(meta.items())))
    return target


def import_kohya(file: str | Path, model: str, out: str | Path) -> Path:
    """Load a kohya / A1111 / ComfyUI LoRA file onto ``model`` with diffusers' converter and write
    it as a geosynth LoRA directory (diffusers layout, adapter configs, a card naming the base
    model), so ``--lora OUT`` works in every command."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    from geosynth.artifacts import atomic_path, canonicalize_safetensors, load_tensors, write_json
    from geosynth.diffusion.family import check_family, detect_family
    from geosynth.diffusion.family.files import lora_file_family
    from geosynth.diffusion.identity import model_digest
    from geosynth.diffusion.loading import load_sd_pipeline
    from geosynth.diffusion.loras import CARD_FILE, LORA_FILE
    from geosynth.diffusion.training.trainable import _config_dict
    from geosynth.runtime import model_ref, recorded_ref

    src = Path(file)
    if not src.is_file():
        raise GeosynthError(f"{src}: no such file (expected a kohya-format .safetensors LoRA)")
    load_tensors(src)  # readable, and no NaN or infinite weight, before the model loads
    model_ref(model)
    fam = detect_family(model)
    check_family(lora_file_family(src), fam, str(src), model)
    pipe = load_sd_pipeline(model, device=torch.device("cpu"), dtype=torch.float32, family=fam)
    try:
        pipe.load_lora_weights(str(src), adapter_name="imported")
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GeosynthError(
            f"{src}: not a LoRA for {model} that diffusers can load ({first})"
        ) from None
    layers: dict[str, Any] = {}
    for component in ("unet", *fam.text_encoders):
        module = getattr(pipe, component)
        if "imported" not in (getattr(module, "peft_config", None) or {}):
            continue
        state = get_peft_model_state_dict(module, adapter_name="imported")
        state = convert_state_dict_to_diffusers({k: v for k, v in state.items() if "lora_" in k})
        layers[f"{component}_lora_layers"] = state
        layers[f"{component}_lora_adapter_metadata"] = _config_dict(module.peft_config["imported"])
    if not layers:
        raise GeosynthError(f"{src}: no UNet or text-encoder LoRA weights found")
    target = Path(out)
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        fam.pipeline_class().save_lora_weights(tmp, safe_serialization=True, **layers)
        # diffusers writes the metadata in no fixed order; finetune outputs are canonical too.
        canonicalize_safetensors(tmp / LORA_FILE)
        write_json(
            tmp / CARD_FILE,
            {
                "base_model": recorded_ref(model),
                "base_digest": model_digest(model),
                "base_family": fam.name,
                "imported_from": str(src),
                "format": "kohya",
            },
        )
    return target


def _new_path(out: str | Path) -> None:
    if Path(out).exists():
        raise GeosynthError(f"out={str(out)!r}: already exists; choose a new path")


def export_lora(lora: str | Path, out: str | Path, *, fmt: str = "kohya") -> Path:
    """What ``geosynth lora export`` does: write the LoRA directory ``lora`` as one file in the
    convention ``fmt`` (kohya, which A1111 and ComfyUI read) at the new path ``out``."""
    if fmt != "kohya":
        raise GeosynthError(f"fmt={fmt!r}: expected kohya")
    _new_path(out)
    return export_kohya(lora, out)


def import_lora(file: str | Path, model: str, out: str | Path) -> Path:
    """What ``geosynth lora import`` does: convert a kohya / A1111 / ComfyUI LoRA ``file`` for
    ``model`` into a LoRA directory at the new path ``out``."""
    _new_path(out)
    return import_kohya(file, model, out)
