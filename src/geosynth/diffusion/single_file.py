"""Stable Diffusion 1.x / 2.x-base single-file checkpoints (the original LDM layout), offline.

Model sites and A1111/ComfyUI users keep SD as one ``.safetensors`` with the original key names
(``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.*``). diffusers'
``from_single_file`` fetches configs from the hub; this module needs no network: it renames the
tensors to diffusers' layout and derives every size from the tensor shapes. What shapes cannot
tell comes from the family (published values):

* SD 1.x (``cond_stage_model.transformer.*``, a transformers CLIP ViT-L text encoder): 8 UNet
  attention heads, quick-GELU text encoder, 64-wide text heads.
* SD 2.x (``cond_stage_model.model.*``, OpenCLIP ViT-H): 64-channel UNet heads, GELU text
  encoder with its last layer dropped (SD 2 uses the penultimate layer), 64-wide text heads.
* geosynth's toy pipeline (``geosynth toy model --kind sd``, recognised by its 32-wide text
  encoder): its own head counts and group norms.

Both SD families use GroupNorm(32), VAE scaling factor 0.18215, 64x64 latents (512 px) and SD
2.1-base's scheduler. A ``FILE.yaml`` beside the checkpoint (the original config, as A1111 reads
it) may set ``model.params.scale_factor``, ``model.params.unet_config.params.image_size`` and
``model.params.parameterization: v``; without one, an SD 2.x file's prediction type (epsilon for
the 512 px base, v for the 768 px models) is read from its weights as ComfyUI reads it
(:mod:`geosynth.diffusion.ldm_prediction`, with a one-line note), other files are epsilon.
The tokenizer is CLIP's BPE (built from the copy open_clip bundles) for the real 49408-token
vocabulary, the toy tokenizer for the toy's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosynth.artifacts.jsontext import json_text
from geosynth.errors import GeosynthError

if TYPE_CHECKING:
    import torch

UNET, VAE_P, TE = "model.diffusion_model.", "first_stage_model.", "cond_stage_model."
_RESNET = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
_VAE_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


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


def _what(path: Path) -> str:
    return f"model={str(path)!r}"


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """All tensors of a single-file checkpoint (safetensors only: nothing is unpickled)."""
    from safetensors.torch import load_file

    p = Path(path).expanduser()
    if not p.is_file():
        raise GeosynthError(f"{_what(p)}: no such checkpoint file")
    try:
        return load_file(str(p))
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GeosynthError(
            f"{_what(p)}: not a readable safetensors checkpoint ({first})"
        ) from None


def family(sd: dict[str, torch.Tensor], path: Path) -> Family:
    """Which supported family a checkpoint is, or a one-line error naming what it looks like."""
    keys = sd.keys()
    if any(k.startswith("conditioner.embedders.") for k in keys):
        kind = "an SDXL"
    elif not any(k.startswith(UNET) for k in keys):
        kind = "not a Stable Diffusion" if keys else "an empty"
    elif any(k.startswith(TE + "model.") for k in keys):
        return SD2
    elif any(k.startswith(TE + "transformer.") for k in keys):
        width = sd[TE + "transformer.text_model.final_layer_norm.weight"].shape[0]
        return TOY if width < 64 else SD1
    else:
        kind = "an unknown (no text encoder)"
    raise GeosynthError(
        f"{_what(path)}: {kind} checkpoint; single files load for SD 1.x and 2.x-base only"
    )


def _sidecar(path: Path) -> dict[str, Any]:
    """``model.params`` of ``FILE.yaml`` beside the checkpoint (empty when there is none)."""
    yml = path.with_suffix(".yaml")
    if not yml.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(yml.read_text()) or {}
        return dict(data.get("model", {}).get("params", {}))
    except (yaml.YAMLError, AttributeError) as exc:
        raise GeosynthError(f"{yml}: not an LDM config ({exc})") from None


def _sub(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def _rename(name: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return name


def _unet_layout(u: dict[str, torch.Tensor]) -> tuple[int, int, list[bool]]:
    """(levels, layers per block, attention per level) of an LDM UNet state dict."""
    blocks = {int(k.split(".")[1]) for k in u if k.startswith("input_blocks.")}
    downs = sorted(n for n in blocks if f"input_blocks.{n}.0.op.weight" in u)
    lpb = downs[0] - 1 if downs else len(blocks) - 1
    levels = len(blocks) // (lpb + 1)
    attn = [f"input_blocks.{1 + i * (lpb + 1)}.1.proj_in.weight" in u for i in range(levels)]
    return levels, lpb, attn


def convert_unet(u: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LDM UNet keys (prefix stripped) to diffusers' ``UNet2DConditionModel`` keys."""
    levels, lpb, attn = _unet_layout(u)
    table = {
        "time_embed.0": "time_embedding.linear_1",
        "time_embed.2": "time_embedding.linear_2",
        "input_blocks.0.0": "conv_in",
        "out.0": "conv_norm_out",
        "out.2": "conv_out",
        "middle_block.0": "mid_block.resnets.0",
        "middle_block.1": "mid_block.attentions.0",
        "middle_block.2": "mid_block.resnets.1",
    }
    for i in range(levels):
        for j in range(lpb):
            n = 1 + i * (lpb + 1) + j
            table[f"input_blocks.{n}.0"] = f"down_blocks.{i}.resnets.{j}"
            table[f"input_blocks.{n}.1"] = f"down_blocks.{i}.attentions.{j}"
        if i < levels - 1:
            table[f"input_blocks.{(i + 1) * (lpb + 1)}.0.op"] = (
                f"down_blocks.{i}.downsamplers.0.conv"
            )
        for j in range(lpb + 1):
            n = i * (lpb + 1) + j
            table[f"output_blocks.{n}.0"] = f"up_blocks.{i}.resnets.{j}"
            up = 1
            if attn[levels - 1 - i]:
                table[f"output_blocks.{n}.1"] = f"up_blocks.{i}.attentions.{j}"
                up = 2
            if j == lpb and i < levels - 1:
                table[f"output_blocks.{n}.{up}.conv"] = f"up_blocks.{i}.upsamplers.0.conv"
    out = {}
    for k, v in u.items():
        name = _rename(k, table)
        if ".resnets." in name:
            head, _, tail = name.partition(".resnets.")
            idx, _, rest = tail.partition(".")
            name = f"{head}.resnets.{idx}.{_rename(rest, _RESNET)}"
        out[name] = v
    return out


def convert_vae(v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LDM autoencoder keys to diffusers' ``AutoencoderKL`` keys (1x1 attention convs become
    linear weights)."""
    ups = {int(k.split(".")[2]) for k in v if k.startswith("decoder.up.")}
    out = {}
    for k, t in v.items():
        parts = k.split(".")
        coder, rest = parts[0], parts[1:]
        if rest[0] in ("down", "up"):
            i = int(rest[1]) if rest[0] == "down" else max(ups) - int(rest[1])
            kind = rest[0] + "_blocks"
            if rest[2] == "block":
                name = f"{kind}.{i}.resnets.{rest[3]}." + ".".join(rest[4:])
            else:  # downsample / upsample
                sampler = "downsamplers" if rest[0] == "down" else "upsamplers"
                name = f"{kind}.{i}.{sampler}.0." + ".".join(rest[3:])
        elif rest[0] == "mid":
            if rest[1].startswith("block_"):
                name = f"mid_block.resnets.{int(rest[1][-1]) - 1}." + ".".join(rest[2:])
            else:
                name = "mid_block.attentions.0." + _rename(".".join(rest[2:]), _VAE_ATTN)
                if t.ndim == 4:
                    t = t[:, :, 0, 0]
        elif rest[0] == "norm_out":
            name = "conv_norm_out." + ".".join(rest[1:])
        else:
            name = ".".join(rest)
        out[f"{coder}.{name}".replace("nin_shortcut", "conv_shortcut")] = t
    return out


def convert_open_clip(c: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP text tower (SD 2) to transformers' ``CLIPTextModel`` keys, without the last
    layer (SD 2 conditions on the penultimate one)."""
    layers = len({k.split(".")[2] for k in c if k.startswith("transformer.resblocks.")})
    out = {
        "text_model.embeddings.token_embedding.weight": c["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": c["positional_embedding"],
        "text_model.final_layer_norm.weight": c["ln_final.weight"],
        "text_model.final_layer_norm.bias": c["ln_final.bias"],
    }
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1"}
    names |= {"mlp.c_proj": "mlp.fc2", "attn.out_proj": "self_attn.out_proj"}
    for i in range(layers - 1):
        pre, dst = f"transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}."
        for k, t in c.items():
            if not k.startswith(pre):
                continue
            rest = k[len(pre) :]
            if rest.startswith("attn.in_proj_"):
                kind = rest.rsplit("_", 1)[1]
                for proj, part in zip(("q", "k", "v"), t.chunk(3, dim=0), strict=True):
                    out[f"{dst}self_attn.{proj}_proj.{kind}"] = part
            else:
                out[dst + _rename(rest, names)] = t
    return out


def component_state_dicts(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor] | None = None
) -> dict[str, dict[str, torch.Tensor]]:
    """The checkpoint's ``unet``, ``vae`` and ``text_encoder`` weights in diffusers' names.
    ``tensors``: the file's tensors when already at hand (the weight digest passes meta tensors
    and hashes the file's bytes each result views, so conversions must rename and take views,
    not compute)."""
    p = Path(path).expanduser()
    sd = read_checkpoint(p) if tensors is None else tensors
    fam = family(sd, p)
    te = convert_open_clip(_sub(sd, TE + "model.")) if fam is SD2 else _sub(sd, TE + "transformer.")
    return {
        "unet": convert_unet(_sub(sd, UNET)),
        "vae": convert_vae(_sub(sd, VAE_P)),
        "text_encoder": te,
    }


def configs(parts: dict[str, dict[str, torch.Tensor]], fam: Family, path: Path) -> dict[str, Any]:
    """diffusers / transformers configs of the three components, from the converted shapes and
    the family (see the module docstring); the prediction type is
    :func:`geosynth.diffusion.ldm_prediction.pick_prediction`'s."""
    u, v, t = parts["unet"], parts["vae"], parts["text_encoder"]
    params = _sidecar(path)
    levels = 1 + max(int(k.split(".")[1]) for k in u if k.startswith("down_blocks."))
    lpb = 1 + max(int(k.split(".")[3]) for k in u if k.startswith("down_blocks.0.resnets."))
    chans = [u[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in range(levels)]
    attn = [f"down_blocks.{i}.attentions.0.proj_in.weight" in u for i in range(levels)]
    proj = next(k for k in u if k.endswith("attn2.to_k.weight"))
    linear = u["mid_block.attentions.0.proj_in.weight"].ndim == 2
    heads: int | list[int] = fam.unet_heads or [c // 64 for c in chans]
    unet = {
        "sample_size": int(params.get("unet_config", {}).get("params", {}).get("image_size", 64)),
        "in_channels": u["conv_in.weight"].shape[1],
        "out_channels": u["conv_out.weight"].shape[0],
        "layers_per_block": lpb,
        "block_out_channels": chans,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in attn[::-1]],
        "cross_attention_dim": u[proj].shape[1],
        "attention_head_dim": heads,
        "use_linear_projection": linear,
        "norm_num_groups": fam.unet_groups,
    }
    vlevels = 1 + max(int(k.split(".")[2]) for k in v if k.startswith("encoder.down_blocks."))
    vae = {
        "in_channels": v["encoder.conv_in.weight"].shape[1],
        "out_channels": v["decoder.conv_out.weight"].shape[0],
        "down_block_types": ["DownEncoderBlock2D"] * vlevels,
        "up_block_types": ["UpDecoderBlock2D"] * vlevels,
        "block_out_channels": [
            v[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in range(vlevels)
        ],
        "layers_per_block": 1
        + max(int(k.split(".")[4]) for k in v if k.startswith("encoder.down_blocks.0.resnets.")),
        "latent_channels": v["quant_conv.weight"].shape[0] // 2,
        "norm_num_groups": fam.vae_groups,
        "sample_size": unet["sample_size"] * 2 ** (vlevels - 1),
        "scaling_factor": float(params.get("scale_factor", 0.18215)),
    }
    width = t["text_model.final_layer_norm.weight"].shape[0]
    text = {
        "vocab_size": t["text_model.embeddings.token_embedding.weight"].shape[0],
        "hidden_size": width,
        "intermediate_size": t["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        "num_hidden_layers": len({k.split(".")[3] for k in t if ".encoder.layers." in k}),
        "num_attention_heads": fam.te_heads or width // 64,
        "max_position_embeddings": t["text_model.embeddings.position_embedding.weight"].shape[0],
        "hidden_act": fam.te_act,
    }
    return {"unet": unet, "vae": vae, "text_encoder": text}


def clip_tokenizer(pad: str):  # -> transformers.CLIPTokenizer
    """CLIP's BPE tokenizer (SD 1.x and 2.x share its 49408-token vocabulary), built offline from
    the merges file open_clip bundles; ``pad`` is SD 1's ``<|endoftext|>`` or SD 2's ``!``."""
    import gzip
    import tempfile

    from open_clip.tokenizer import default_bpe
    from transformers import CLIPTokenizer

    from geosynth.diffusion.tokenizer import _bytes_to_unicode

    with gzip.open(default_bpe()) as fh:
        lines = fh.read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(_bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json_text({w: i for i, w in enumerate(vocab)}))
        merge_text = "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n"
        (Path(tmp) / "merges.txt").write_text(merge_text)
        return CLIPTokenizer(
            str(Path(tmp) / "vocab.json"),
            str(Path(tmp) / "merges.txt"),
            pad_token=pad,
            model_max_length=77,  # SD's prompt length; unset, transformers' 1e30 overflows
        )


def load_single_file(
    path: str | os.PathLike[str], *, dtype: torch.dtype, prediction_type: str | None = None
):
    """A ``StableDiffusionPipeline`` (no safety checker) from a single-file checkpoint, offline.
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
    from geosynth.diffusion.tokenizer import build_toy_tokenizer

    p = Path(path).expanduser()
    sd = read_checkpoint(p)
    fam = family(sd, p)
    if prediction_type not in (None, "epsilon", "v_prediction"):
        raise GeosynthError(
            f"prediction_type={prediction_type!r}: expected epsilon or v_prediction"
        )
    prediction = prediction_type or pick_prediction(
        p, _sidecar(p), _sub(sd, UNET) if fam is SD2 else None
    )
    del sd
    parts = component_state_dicts(p)
    cfg = configs(parts, fam, p)
    vocab = cfg["text_encoder"]["vocab_size"]
    if fam is TOY:
        tok = build_toy_tokenizer()
    elif vocab == 49408:
        tok = clip_tokenizer("!" if fam is SD2 else "<|endoftext|>")
    else:
        raise GeosynthError(f"{_what(p)}: no tokenizer known for a {vocab}-token vocabulary")
    if len(tok) != vocab:
        raise GeosynthError(f"{_what(p)}: text encoder has {vocab} tokens, tokenizer {len(tok)}")
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    te = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"], **ids, pad_token_id=tok.pad_token_id))
    unet = UNet2DConditionModel(**cfg["unet"])
    vae = AutoencoderKL(**cfg["vae"])
    if not any(k.startswith("text_model.") for k in te.state_dict()):  # transformers 5 naming
        parts["text_encoder"] = {
            k.removeprefix("text_model."): t for k, t in parts["text_encoder"].items()
        }
    for name, model in (("unet", unet), ("vae", vae), ("text_encoder", te)):
        try:
            res = model.load_state_dict(parts[name], strict=False)
        except RuntimeError as exc:
            first = str(exc).splitlines()[-1].strip()
            raise GeosynthError(f"{_what(p)}: {name} weights do not fit ({first})") from None
        bad = [k for k in [*res.missing_keys, *res.unexpected_keys] if "position_ids" not in k]
        if bad:
            raise GeosynthError(f"{_what(p)}: {name} weights do not fit (key {bad[0]})")
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


def is_single_file(model: str | os.PathLike[str]) -> bool:
    """Whether a model reference names a single-file checkpoint."""
    return str(model).endswith(".safetensors")


def sample_size(path: str | os.PathLike[str]) -> int:
    """The UNet's latent size (64 for SD: 512 px), without loading the weights."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise GeosynthError(f"{_what(p)}: no such checkpoint file")
    params = _sidecar(p)
    return int(params.get("unet_config", {}).get("params", {}).get("image_size", 64))
