"""SDXL single-file checkpoints in the original layout (``sd_xl_base_1.0.safetensors`` style) load
offline, generate what their diffusers folder generates, and give SDXL base's exact
configuration from the real tensor shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from geosynth.diffusion.identity import model_digest

GEN = ["--classes", "water,forest", "--per-class", "1", "--steps", "2", "--batch-size", "1"]


def unet_to_sgm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A diffusers UNet state dict under Stability's SGM names (``model.diffusion_model.*``), by
    the renaming tables of diffusers' convert_diffusers_to_original_sdxl.py, generalised to any
    number of levels and layers per block (attention where the block types say)."""
    down_attn = [t.startswith("CrossAttn") for t in config["down_block_types"]]
    up_attn = [t.startswith("CrossAttn") for t in config["up_block_types"]]
    levels, lpb = len(down_attn), config["layers_per_block"]
    n = lpb + 1
    pairs = [
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
        ("label_emb.0.0.", "add_embedding.linear_1."),
        ("label_emb.0.2.", "add_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."),
        ("out.0.", "conv_norm_out."),
        ("out.2.", "conv_out."),
        ("middle_block.1.", "mid_block.attentions.0."),
    ]
    pairs += [(f"middle_block.{2 * j}.", f"mid_block.resnets.{j}.") for j in range(2)]
    for i in range(levels):
        for j in range(lpb):
            pairs.append((f"input_blocks.{n * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if down_attn[i]:
                pairs.append(
                    (f"input_blocks.{n * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}.")
                )
        for j in range(n):
            pairs.append((f"output_blocks.{n * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if up_attn[i]:
                pairs.append((f"output_blocks.{n * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < levels - 1:
            pairs.append(
                (f"input_blocks.{n * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv.")
            )
            k = 2 if up_attn[i] else 1
            pairs.append((f"output_blocks.{n * i + lpb}.{k}.", f"up_blocks.{i}.upsamplers.0."))
    resnet = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"),
              ("out_layers.3", "conv2"), ("emb_layers.1", "time_emb_proj"),
              ("skip_connection", "conv_shortcut")]  # fmt: skip
    out = {}
    for key, t in state.items():
        name = key
        if "resnets" in name:
            for sd_part, hf_part in resnet:
                name = name.replace(hf_part, sd_part)
        for sd_part, hf_part in pairs:
            name = name.replace(hf_part, sd_part)
        out["model.diffusion_model." + name] = t
    return out


def bigg_to_open_clip(te: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CLIPTextModelWithProjection state dict under SDXL's OpenCLIP names
    (``conditioner.embedders.1.model.*``): fused q/k/v, bare embeddings, ``text_projection``
    applied as ``x @ P`` (the transpose of the linear weight), a ``logit_scale``."""
    pre = "conditioner.embedders.1.model."
    proj = te["text_projection.weight"]
    te = {k.removeprefix("text_model."): t for k, t in te.items()}
    out = {
        pre + "token_embedding.weight": te["embeddings.token_embedding.weight"],
        pre + "positional_embedding": te["embeddings.position_embedding.weight"],
        pre + "ln_final.weight": te["final_layer_norm.weight"],
        pre + "ln_final.bias": te["final_layer_norm.bias"],
        pre + "text_projection": proj.T.contiguous(),
        pre + "logit_scale": torch.tensor(4.6052),
    }
    layers = len({k.split(".")[2] for k in te if k.startswith("encoder.layers.")})
    for i in range(layers):
        src, dst = f"encoder.layers.{i}.", f"{pre}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            qkv = [te[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"]
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(qkv, dim=0)
            out[f"{dst}attn.out_proj.{kind}"] = te[f"{src}self_attn.out_proj.{kind}"]
            out[f"{dst}ln_1.{kind}"] = te[f"{src}layer_norm1.{kind}"]
            out[f"{dst}ln_2.{kind}"] = te[f"{src}layer_norm2.{kind}"]
            out[f"{dst}mlp.c_fc.{kind}"] = te[f"{src}mlp.fc1.{kind}"]
            out[f"{dst}mlp.c_proj.{kind}"] = te[f"{src}mlp.fc2.{kind}"]
    return out


def vae_to_ldm(state: dict[str, torch.Tensor], levels: int, lpb: int) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL state dict under the LDM names (``first_stage_model.*``)."""
    n = lpb + 1
    pairs = [("nin_shortcut", "conv_shortcut"), ("norm_out", "conv_norm_out"),
             ("mid.attn_1.", "mid_block.attentions.0.")]  # fmt: skip
    pairs += [(f"mid.block_{j + 1}.", f"mid_block.resnets.{j}.") for j in range(2)]
    for i in range(levels):
        for j in range(lpb):
            pairs.append((f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}."))
        for j in range(n):
            pairs.append(
                (f"decoder.up.{levels - 1 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}.")
            )
        if i < levels - 1:
            pairs.append((f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."))
            pairs.append((f"up.{levels - 1 - i}.upsample.", f"up_blocks.{i}.upsamplers.0."))
    attn = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."),
            ("proj_out.", "to_out.0.")]  # fmt: skip
    out = {}
    for key, t in state.items():
        name = key
        for sd_part, hf_part in pairs:
            name = name.replace(hf_part, sd_part)
        if "attn_1" in name:
            for sd_part, hf_part in attn:
                name = name.replace(hf_part, sd_part)
            if name.endswith("weight") and t.ndim == 2:
                t = t[:, :, None, None]
        out["first_stage_model." + name] = t
    return out


def to_sdxl_original(unet, vae, te1, te2, unet_cfg: dict, vae_cfg: dict) -> dict:
    """The four components' state dicts as one SDXL original-layout checkpoint."""
    out = unet_to_sgm(unet, unet_cfg)
    out |= vae_to_ldm(vae, len(vae_cfg["block_out_channels"]), vae_cfg["layers_per_block"])
    for k, t in te1.items():  # transformers 5 saves CLIPTextModel without ``text_model.``
        name = k if k.startswith("text_model.") else "text_model." + k
        out["conditioner.embedders.0.transformer." + name] = t
    return out | bigg_to_open_clip(te2)


@pytest.fixture(scope="module")
def checkpoint(toy_sdxl, tmp_path_factory) -> Path:
    """The toy SDXL as one original-layout file, with the FILE.yaml (A1111's convention) that
    carries its latent scale and size."""
    folder = toy_sdxl
    cfg = {c: json.loads((folder / c / "config.json").read_text()) for c in ("unet", "vae")}
    sd = to_sdxl_original(
        load_file(folder / "unet" / "diffusion_pytorch_model.safetensors"),
        load_file(folder / "vae" / "diffusion_pytorch_model.safetensors"),
        load_file(folder / "text_encoder" / "model.safetensors"),
        load_file(folder / "text_encoder_2" / "model.safetensors"),
        cfg["unet"],
        cfg["vae"],
    )
    path = tmp_path_factory.mktemp("sdxl-single") / "toy_sd_xl.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, path)
    path.with_suffix(".yaml").write_text(
        f"model:\n  params:\n    scale_factor: {cfg['vae']['scaling_factor']!r}\n"
        f"    network_config:\n      params:\n        image_size: {cfg['unet']['sample_size']}\n"
    )
    return path


def test_sdxl_single_file_generates_what_the_folder_generates(
    cli, toy_sdxl, checkpoint, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))
    a = cli("generate", "--model", toy_sdxl, *GEN, "--out", tmp_path / "folder")
    assert a.code == 0, a.err
    b = cli("generate", "--model", checkpoint, *GEN, "--out", tmp_path / "file")
    assert b.code == 0, b.err
    for c in ("water", "forest"):
        png = Path(c) / "000000.png"
        assert (tmp_path / "file" / png).read_bytes() == (tmp_path / "folder" / png).read_bytes()
    digest = model_digest(toy_sdxl)
    # both text encoders identify the model (a LoRA on either depends on its weights)
    assert digest is not None and {"text_encoder", "text_encoder_2"} <= set(digest)
    assert model_digest(checkpoint) == digest


def _plain(value):
    return list(value) if isinstance(value, list | tuple) else value


def test_sdxl_single_file_has_the_folders_weights_and_tokenizers(toy_sdxl, checkpoint) -> None:
    from diffusers import StableDiffusionXLPipeline

    from geosynth.diffusion.identity import state_digest
    from geosynth.diffusion.single_file import load_single_file

    ref = StableDiffusionXLPipeline.from_pretrained(toy_sdxl, add_watermarker=False)
    pipe = load_single_file(checkpoint, dtype=torch.float32)
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        assert state_digest(getattr(pipe, name).state_dict()) == state_digest(
            getattr(ref, name).state_dict()
        ), name
    assert pipe.tokenizer_2.pad_token == "!" and pipe.tokenizer.pad_token == "<|endoftext|>"
    for key in ("addition_time_embed_dim", "projection_class_embeddings_input_dim",
                "transformer_layers_per_block", "attention_head_dim"):  # fmt: skip
        assert _plain(pipe.unet.config[key]) == _plain(ref.unet.config[key]), key
    assert (
        pipe.vae.config.force_upcast and type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    )


#: SDXL base 1.0's configs (its unet/config.json, text_encoder*/config.json, vae/config.json).
SDXL_UNET = dict(
    sample_size=128, layers_per_block=2, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
    attention_head_dim=(5, 10, 20), use_linear_projection=True, addition_embed_type="text_time",
    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
)  # fmt: skip
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, hidden_act="quick_gelu")  # fmt: skip
BIG_G = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
             num_attention_heads=20, hidden_act="gelu", projection_dim=1280)  # fmt: skip
SDXL_VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, sample_size=1024)  # fmt: skip


def test_real_size_sdxl_configs_come_from_the_shapes(tmp_path) -> None:
    """SDXL base's exact architecture, built on the meta device (shapes only, no memory),
    written under the original names, gives back its configs: head counts, transformer depths,
    the added-embedding sizes, both text encoders and the VAE."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from geosynth.diffusion.ldm_layout import checkpoint_kind
    from geosynth.diffusion.single_file_sdxl import _parts, sdxl_configs

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET)
        vae = AutoencoderKL(**SDXL_VAE)
        te1 = CLIPTextModel(CLIPTextConfig(vocab_size=49408, **CLIP_L))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=49408, **BIG_G))
    sd = to_sdxl_original(
        unet.state_dict(), vae.state_dict(), te1.state_dict(), te2.state_dict(),
        dict(unet.config), dict(vae.config),
    )  # fmt: skip
    # Key names of sd_xl_base_1.0.safetensors.
    for key in (
        "model.diffusion_model.label_emb.0.0.weight",
        "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight",
        "model.diffusion_model.middle_block.1.transformer_blocks.9.ff.net.2.weight",
        "model.diffusion_model.output_blocks.2.2.conv.weight",
        "conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc2.weight",
        "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight",
        "conditioner.embedders.1.model.text_projection",
        "first_stage_model.decoder.up.3.block.2.conv2.weight",
    ):
        assert key in sd, key
    path = tmp_path / "sd_xl_base_1.0.safetensors"
    assert checkpoint_kind({k: list(v.shape) for k, v in sd.items()}, path) == "sdxl"
    cfg = sdxl_configs(_parts(sd), "sdxl", path)
    for key, value in SDXL_UNET.items():
        assert _plain(cfg["unet"][key]) == _plain(value), key
    assert cfg["unet"]["norm_num_groups"] == 32
    for key, value in CLIP_L.items():
        assert cfg["text_encoder"][key] == value, key
    for key, value in BIG_G.items():
        assert cfg["text_encoder_2"][key] == value, key
    assert cfg["vae"]["scaling_factor"] == 0.13025 and cfg["vae"]["force_upcast"]
    assert list(cfg["vae"]["block_out_channels"]) == [128, 256, 512, 512]


def test_kohya_unet_names_are_the_original_layouts_module_names() -> None:
    """The SGM names kohya, A1111 and ComfyUI give SDXL's UNet modules (what ``lora export``
    writes after ``lora_unet_``) are the module paths of the original single file: checked for
    every module of SDXL base's exact UNet against the independent renaming above."""
    from diffusers import UNet2DConditionModel

    from geosynth.diffusion.family.sdxl import SDXL

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET)
    state = unet.state_dict()
    original = unet_to_sgm(state, dict(unet.config))
    for (key, _), ldm in zip(state.items(), original, strict=True):
        module, _, param = key.rpartition(".")
        name = SDXL.kohya_module("unet", module, dict(unet.config))
        assert f"model.diffusion_model.{name}.{param}" == ldm, key
