"""The original (CompVis LDM / Stability "SGM") layout of single-file checkpoints, shared by the
families: reading a file, telling which family its keys belong to, renaming its UNet, VAE and
OpenCLIP text tower to diffusers' / transformers' names (and UNet module names back, for kohya
LoRA files), the CLIP BPE tokenizer built offline, and configs derived from tensor shapes.

The family modules (:mod:`.single_file` for SD 1.x/2.x, :mod:`.single_file_sdxl`) put these
together with what shapes cannot tell (head counts, activations, scaling factors).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosynth.artifacts.jsontext import json_text
from geosynth.errors import GeosynthError

if TYPE_CHECKING:
    import torch

UNET, VAE_P, TE = "model.diffusion_model.", "first_stage_model.", "cond_stage_model."
#: SDXL's text encoders: CLIP ViT-L (transformers layout) and OpenCLIP ViT-bigG.
SDXL_TE1, SDXL_TE2 = "conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."
_RESNET = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
_VAE_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
#: Key prefixes of families geosynth does not run, as their single files spell them.
_OTHER_FAMILIES = (
    ("model.diffusion_model.joint_blocks.", "an SD3"),
    ("joint_blocks.", "an SD3"),
    ("model.diffusion_model.double_blocks.", "a FLUX"),
    ("double_blocks.", "a FLUX"),
    ("model.diffusion_model.x_embedder.", "a diffusion transformer (PixArt / DiT)"),
    ("x_embedder.", "a diffusion transformer (PixArt / DiT)"),
)
#: What every refusal says geosynth runs.
RUNS = "geosynth runs Stable Diffusion 1.x, 2.x and XL (SDXL) models"


def what(path: Path) -> str:
    return f"model={str(path)!r}"


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """All tensors of a single-file checkpoint (safetensors only: nothing is unpickled)."""
    from safetensors.torch import load_file

    p = Path(path).expanduser()
    if not p.is_file():
        raise GeosynthError(f"{what(p)}: no such checkpoint file")
    try:
        return load_file(str(p))
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GeosynthError(f"{what(p)}: not a readable safetensors checkpoint ({first})") from None


def read_shapes(path: str | os.PathLike[str]) -> dict[str, list[int]]:
    """Every tensor's shape, from the file's header only (no tensor is read)."""
    from safetensors import safe_open

    p = Path(path).expanduser()
    if not p.is_file():
        raise GeosynthError(f"{what(p)}: no such checkpoint file")
    try:
        with safe_open(str(p), framework="pt") as fh:
            return {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GeosynthError(f"{what(p)}: not a readable safetensors checkpoint ({first})") from None


def checkpoint_kind(shapes: dict[str, list[int]], path: Path) -> str:
    """``sd1``, ``sd2`` or ``sdxl`` (with a ``toy-`` prefix for geosynth's toy pipelines, whose
    head counts and group norms are their own), or a one-line error naming what it looks like."""
    keys = shapes.keys()
    for prefix, kind in _OTHER_FAMILIES:
        if any(k.startswith(prefix) for k in keys):
            raise GeosynthError(f"{what(path)}: {kind} checkpoint; {RUNS}")
    if any(k.startswith("conditioner.embedders.") for k in keys):
        if not any(k.startswith(SDXL_TE1) for k in keys):
            raise GeosynthError(
                f"{what(path)}: an SDXL refiner checkpoint (no CLIP ViT-L text encoder); {RUNS}"
            )
        return "toy-sdxl" if _width(shapes, SDXL_TE1, path) < 64 else "sdxl"
    if not any(k.startswith(UNET) for k in keys):
        kind = "not a Stable Diffusion" if keys else "an empty"
    elif any(k.startswith(TE + "model.") for k in keys):
        return "sd2"
    elif any(k.startswith(TE + "transformer.") for k in keys):
        return "toy-sd" if _width(shapes, TE + "transformer.", path) < 64 else "sd1"
    else:
        kind = "an unknown (no text encoder)"
    raise GeosynthError(f"{what(path)}: {kind} checkpoint; {RUNS}")


def _width(shapes: dict[str, list[int]], prefix: str, path: Path) -> int:
    """The width of a CLIP text encoder in transformers' layout (its final layer norm)."""
    key = prefix + "text_model.final_layer_norm.weight"
    if key not in shapes:
        raise GeosynthError(f"{what(path)}: an incomplete checkpoint (no {key})")
    return int(shapes[key][0])


def sidecar(path: Path) -> dict[str, Any]:
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


def sidecar_image_size(params: dict[str, Any], default: int) -> int:
    """The latent size a sidecar's UNet config names (SD: ``unet_config``, SDXL:
    ``network_config``), else ``default``."""
    for key in ("unet_config", "network_config"):
        size = params.get(key, {}).get("params", {}).get("image_size")
        if size is not None:
            return int(size)
    return default


def sub(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def _rename(name: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return name


def unet_layout(u: dict[str, Any]) -> tuple[int, int, list[bool]]:
    """(levels, layers per block, attention per level) of an LDM UNet state dict."""
    blocks = {int(k.split(".")[1]) for k in u if k.startswith("input_blocks.")}
    downs = sorted(n for n in blocks if f"input_blocks.{n}.0.op.weight" in u)
    lpb = downs[0] - 1 if downs else len(blocks) - 1
    levels = len(blocks) // (lpb + 1)
    attn = [f"input_blocks.{1 + i * (lpb + 1)}.1.proj_in.weight" in u for i in range(levels)]
    return levels, lpb, attn


def unet_table(levels: int, lpb: int, attn: list[bool]) -> dict[str, str]:
    """LDM UNet module prefixes -> diffusers' (``attn``: attention per down level)."""
    table = {
        "time_embed.0": "time_embedding.linear_1",
        "time_embed.2": "time_embedding.linear_2",
        "label_emb.0.0": "add_embedding.linear_1",  # SDXL's added (pooled text + size) embedding
        "label_emb.0.2": "add_embedding.linear_2",
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
    return table


def convert_unet(u: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LDM UNet keys (prefix stripped) to diffusers' ``UNet2DConditionModel`` keys."""
    table = unet_table(*unet_layout(u))
    out = {}
    for k, v in u.items():
        name = _rename(k, table)
        if ".resnets." in name:
            head, _, tail = name.partition(".resnets.")
            idx, _, rest = tail.partition(".")
            name = f"{head}.resnets.{idx}.{_rename(rest, _RESNET)}"
        out[name] = v
    return out


def ldm_unet_module(module: str, levels: int, lpb: int, attn: list[bool]) -> str:
    """A diffusers UNet module path in LDM / SGM names (the inverse of :func:`convert_unet`):
    ``down_blocks.1.attentions.0.proj_in`` -> ``input_blocks.4.1.proj_in`` for SDXL."""
    inverse = {new: old for old, new in unet_table(levels, lpb, attn).items()}
    name = module
    if ".resnets." in name:
        head, _, tail = name.partition(".resnets.")
        idx, _, rest = tail.partition(".")
        rest = _rename(rest, {new: old for old, new in _RESNET.items()})
        name = f"{head}.resnets.{idx}.{rest}" if rest else f"{head}.resnets.{idx}"
    return _rename(name, dict(sorted(inverse.items(), key=lambda kv: -len(kv[0]))))


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


def convert_open_clip(c: dict[str, torch.Tensor], *, drop_last: bool = True) -> dict[str, Any]:
    """OpenCLIP text tower to transformers' ``CLIPTextModel`` keys. SD 2 conditions on the
    penultimate layer, so its last layer is dropped (``drop_last``); SDXL's second encoder keeps
    every layer (its pooled output comes from the last one), and its ``text_projection``
    (applied as ``x @ P``) becomes the linear ``text_projection.weight`` (``P.T``)."""
    layers = len({k.split(".")[2] for k in c if k.startswith("transformer.resblocks.")})
    out = {
        "text_model.embeddings.token_embedding.weight": c["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": c["positional_embedding"],
        "text_model.final_layer_norm.weight": c["ln_final.weight"],
        "text_model.final_layer_norm.bias": c["ln_final.bias"],
    }
    if not drop_last and "text_projection" in c:
        out["text_projection.weight"] = c["text_projection"].T.contiguous()
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1"}
    names |= {"mlp.c_proj": "mlp.fc2", "attn.out_proj": "self_attn.out_proj"}
    for i in range(layers - 1 if drop_last else layers):
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


def clip_tokenizer(pad: str):  # -> transformers.CLIPTokenizer
    """CLIP's BPE tokenizer (SD 1.x, 2.x and both SDXL encoders share its 49408-token
    vocabulary), built offline from the merges file open_clip bundles; ``pad`` is SD 1's (and
    SDXL's first tokenizer's) ``<|endoftext|>`` or SD 2's (SDXL's second's) ``!``."""
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


def tokenizer_for(vocab: int, pad: str, toy: bool, path: Path):
    """The tokenizer of a text encoder with ``vocab`` tokens: CLIP's, or the toy one."""
    from geosynth.diffusion.tokenizer import build_toy_tokenizer

    if toy:
        tok = build_toy_tokenizer(pad_token=pad)
    elif vocab == 49408:
        tok = clip_tokenizer(pad)
    else:
        raise GeosynthError(f"{what(path)}: no tokenizer known for a {vocab}-token vocabulary")
    if len(tok) != vocab:
        raise GeosynthError(f"{what(path)}: text encoder has {vocab} tokens, tokenizer {len(tok)}")
    return tok


def unet_config(u: dict[str, Any], head_width: int | None, heads: int, groups: int) -> dict:
    """A ``UNet2DConditionModel`` config from converted UNet shapes: attention heads of
    ``head_width`` channels, or ``heads`` heads everywhere when ``head_width`` is None."""
    levels = 1 + max(int(k.split(".")[1]) for k in u if k.startswith("down_blocks."))
    lpb = 1 + max(int(k.split(".")[3]) for k in u if k.startswith("down_blocks.0.resnets."))
    chans = [u[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in range(levels)]
    attn = [f"down_blocks.{i}.attentions.0.proj_in.weight" in u for i in range(levels)]
    depth = [
        len({k.split(".")[5] for k in u if k.startswith(f"down_blocks.{i}.attentions.0.transf")})
        or 1
        for i in range(levels)
    ]
    proj = next(k for k in u if k.endswith("attn2.to_k.weight"))
    config: dict[str, Any] = {
        "in_channels": u["conv_in.weight"].shape[1],
        "out_channels": u["conv_out.weight"].shape[0],
        "layers_per_block": lpb,
        "block_out_channels": chans,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in attn[::-1]],
        "cross_attention_dim": u[proj].shape[1],
        "attention_head_dim": [c // head_width for c in chans] if head_width else heads,
        "use_linear_projection": u["mid_block.attentions.0.proj_in.weight"].ndim == 2,
        "norm_num_groups": groups,
    }
    if any(d > 1 for d in depth):
        config["transformer_layers_per_block"] = depth
    return config


def vae_config(v: dict[str, Any], groups: int, sample_size: int, scaling: float) -> dict:
    """An ``AutoencoderKL`` config from converted VAE shapes."""
    vlevels = 1 + max(int(k.split(".")[2]) for k in v if k.startswith("encoder.down_blocks."))
    return {
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
        "norm_num_groups": groups,
        "sample_size": sample_size * 2 ** (vlevels - 1),
        "scaling_factor": scaling,
    }


def text_config(t: dict[str, Any], heads: int | None, act: str) -> dict[str, Any]:
    """A ``CLIPTextConfig``'s sizes from converted text-encoder shapes (heads 64 wide when
    ``heads`` is None)."""
    width = t["text_model.final_layer_norm.weight"].shape[0]
    config = {
        "vocab_size": t["text_model.embeddings.token_embedding.weight"].shape[0],
        "hidden_size": width,
        "intermediate_size": t["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        "num_hidden_layers": len({k.split(".")[3] for k in t if ".encoder.layers." in k}),
        "num_attention_heads": heads or width // 64,
        "max_position_embeddings": t["text_model.embeddings.position_embedding.weight"].shape[0],
        "hidden_act": act,
    }
    if "text_projection.weight" in t:
        config["projection_dim"] = t["text_projection.weight"].shape[0]
    return config


def load_weights(model: Any, state: dict[str, torch.Tensor], name: str, path: Path) -> None:
    """Load converted weights into a freshly built model; any key that does not fit is a
    one-line error naming the component."""
    keys = {k for k, _ in model.state_dict().items()}
    if not any(k.startswith("text_model.") for k in keys) and any(
        k.startswith("text_model.") for k in state
    ):  # transformers 5 builds CLIPTextModel without the ``text_model.`` level
        state = {k.removeprefix("text_model."): t for k, t in state.items()}
    try:
        res = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        first = str(exc).splitlines()[-1].strip()
        raise GeosynthError(f"{what(path)}: {name} weights do not fit ({first})") from None
    bad = [k for k in [*res.missing_keys, *res.unexpected_keys] if "position_ids" not in k]
    if bad:
        raise GeosynthError(f"{what(path)}: {name} weights do not fit (key {bad[0]})")
