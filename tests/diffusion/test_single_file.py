"""Single-file checkpoints in the original Stable Diffusion layout load offline and generate
what their diffusers folder generates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from geosynth.diffusion.identity import model_digest

GEN = ["--classes", "water,forest", "--per-class", "1", "--steps", "3", "--batch-size", "1"]


def to_original(folder: Path, levels: int = 2, lpb: int = 1) -> dict[str, torch.Tensor]:
    """The toy pipeline's weights under the original (CompVis LDM) key names, with the prefix
    renaming tables of diffusers' convert_diffusers_to_original_stable_diffusion.py, generalised
    from SD's 4 levels x 2 layers to the toy's ``levels`` x ``lpb`` (attention on the first
    down level and the last up level, as the toy's block types say)."""
    unet_cfg = json.loads((folder / "unet" / "config.json").read_text())
    down_attn = [t.startswith("CrossAttn") for t in unet_cfg["down_block_types"]]
    up_attn = [t.startswith("CrossAttn") for t in unet_cfg["up_block_types"]]
    n = lpb + 1
    pairs = [
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
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

    out: dict[str, torch.Tensor] = {}
    for key, t in load_file(folder / "unet" / "diffusion_pytorch_model.safetensors").items():
        name = key
        if "resnets" in name:
            for sd_part, hf_part in resnet:
                name = name.replace(hf_part, sd_part)
        for sd_part, hf_part in pairs:
            name = name.replace(hf_part, sd_part)
        out["model.diffusion_model." + name] = t

    vae_pairs = [("nin_shortcut", "conv_shortcut"), ("norm_out", "conv_norm_out"),
                 ("mid.attn_1.", "mid_block.attentions.0.")]  # fmt: skip
    vae_pairs += [(f"mid.block_{j + 1}.", f"mid_block.resnets.{j}.") for j in range(2)]
    for i in range(levels):
        for j in range(lpb):
            vae_pairs.append(
                (f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}.")
            )
        for j in range(n):
            vae_pairs.append(
                (f"decoder.up.{levels - 1 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}.")
            )
        if i < levels - 1:
            vae_pairs.append((f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."))
            vae_pairs.append((f"up.{levels - 1 - i}.upsample.", f"up_blocks.{i}.upsamplers.0."))
    attn = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."),
            ("proj_out.", "to_out.0.")]  # fmt: skip
    for key, t in load_file(folder / "vae" / "diffusion_pytorch_model.safetensors").items():
        name = key
        for sd_part, hf_part in vae_pairs:
            name = name.replace(hf_part, sd_part)
        if "attn_1" in name:
            for sd_part, hf_part in attn:
                name = name.replace(hf_part, sd_part)
            if name.endswith("weight") and t.ndim == 2:
                t = t[:, :, None, None]
        out["first_stage_model." + name] = t
    for key, t in load_file(folder / "text_encoder" / "model.safetensors").items():
        # transformers 5 saves CLIPTextModel without its ``text_model.`` prefix; the original
        # layout has it (cond_stage_model.transformer.text_model.*).
        name = key if key.startswith("text_model.") else "text_model." + key
        out["cond_stage_model.transformer." + name] = t
    return out


@pytest.fixture(scope="module")
def checkpoint(toy_models, tmp_path_factory) -> Path:
    """The toy pipeline as one original-layout file, with the A1111-style FILE.yaml that carries
    the latent scale and size (the original layout's place for them)."""
    folder = toy_models["sd"]
    path = tmp_path_factory.mktemp("single") / "toy-sd.safetensors"
    save_file({k: v.contiguous() for k, v in to_original(folder).items()}, path)
    vae = json.loads((folder / "vae" / "config.json").read_text())
    unet = json.loads((folder / "unet" / "config.json").read_text())
    path.with_suffix(".yaml").write_text(
        f"model:\n  params:\n    scale_factor: {vae['scaling_factor']!r}\n"
        f"    unet_config:\n      params:\n        image_size: {unet['sample_size']}\n"
    )
    return path


def test_single_file_generates_what_the_folder_generates(cli, toy_models, checkpoint, tmp_path,
                                                         monkeypatch):  # fmt: skip
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))
    folder = toy_models["sd"]
    a = cli("generate", "--model", folder, *GEN, "--out", tmp_path / "folder")
    assert a.code == 0, a.err
    b = cli("generate", "--model", checkpoint, *GEN, "--out", tmp_path / "file")
    assert b.code == 0, b.err
    for c in ("water", "forest"):
        png = Path(c) / "000000.png"
        assert (tmp_path / "file" / png).read_bytes() == (tmp_path / "folder" / png).read_bytes()
    # One identity for the same weights in either layout.
    assert model_digest(checkpoint) == model_digest(folder)


def test_clip_tokenizer_matches_open_clip():
    """The offline CLIP BPE tokenizer gives open_clip's token ids (SD 1.x/2.x vocabulary)."""
    import open_clip

    from geosynth.diffusion.single_file import clip_tokenizer

    tok = clip_tokenizer("!")
    assert len(tok) == 49408 and tok.pad_token_id == 0
    text = "a satellite photo of a herbaceous vegetation field near the sea"
    ref = open_clip.get_tokenizer("ViT-B-16")([text])[0].tolist()
    ids = tok(text, padding="max_length", max_length=77).input_ids
    assert ids == ref  # open_clip pads with 0, which is SD 2's pad token '!' here


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        (["model.diffusion_model.joint_blocks.0.x"], "an SD3 checkpoint"),
        (["double_blocks.0.img_attn.qkv.weight"], "a FLUX checkpoint"),
        (["conditioner.embedders.0.model.x", "model.diffusion_model.y"], "SDXL refiner"),
        (["conditioner.embedders.0.transformer.x", "model.diffusion_model.y"], "incomplete"),
        (["first_stage_model.x"], "not a Stable Diffusion checkpoint"),
    ],
)
def test_unsupported_checkpoints_are_one_line_errors(cli, tmp_path, keys, words):
    path = tmp_path / "other.safetensors"
    save_file({k: torch.zeros(1) for k in keys}, path)
    res = cli("generate", "--model", path, *GEN, "--out", tmp_path / "o")
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1, res.err
    assert words in res.err
    if "incomplete" not in words:
        assert "geosynth runs Stable Diffusion 1.x, 2.x and XL (SDXL) models" in res.err
    assert not (tmp_path / "o").exists()


def test_missing_checkpoint_is_a_one_line_error(cli, tmp_path):
    missing = tmp_path / "nope.safetensors"
    res = cli("generate", "--model", missing, *GEN, "--out", tmp_path / "m")
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1
    assert "nope.safetensors" in res.err and "no such checkpoint file" in res.err
    assert not (tmp_path / "m").exists()


def to_open_clip(te: dict[str, torch.Tensor], extra_layer: bool = True) -> dict[str, torch.Tensor]:
    """A CLIPTextModel state dict under SD 2.x's OpenCLIP names (``cond_stage_model.model.*``):
    q/k/v fused into ``attn.in_proj_*``, the embeddings as bare parameters, a
    ``text_projection`` and ``logit_scale``, and (as real SD 2.x files have) one more resblock
    than diffusers keeps, since SD 2 conditions on the penultimate layer."""
    te = {k.removeprefix("text_model."): t for k, t in te.items()}
    pre = "cond_stage_model.model."
    width = te["final_layer_norm.weight"].shape[0]
    out = {
        pre + "token_embedding.weight": te["embeddings.token_embedding.weight"],
        pre + "positional_embedding": te["embeddings.position_embedding.weight"],
        pre + "ln_final.weight": te["final_layer_norm.weight"],
        pre + "ln_final.bias": te["final_layer_norm.bias"],
        pre + "text_projection": torch.randn(width, width),
        pre + "logit_scale": torch.tensor(4.6052),
    }
    layers = len({k.split(".")[2] for k in te if k.startswith("encoder.layers.")})
    g = torch.Generator().manual_seed(1)
    for i in range(layers + extra_layer):
        src, dst = f"encoder.layers.{i}.", f"{pre}transformer.resblocks.{i}."

        def get(name: str, shape: tuple[int, ...], src: str = src) -> torch.Tensor:
            # The extra (last) resblock: random weights a correct loader never reads.
            return te[src + name] if src + name in te else torch.randn(shape, generator=g)

        fc = te["encoder.layers.0.mlp.fc1.weight"].shape[0]
        for kind, shape in (("weight", (width, width)), ("bias", (width,))):
            qkv = [get(f"self_attn.{p}_proj.{kind}", shape) for p in "qkv"]
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(qkv, dim=0)
            out[f"{dst}attn.out_proj.{kind}"] = get(f"self_attn.out_proj.{kind}", shape)
            out[f"{dst}ln_1.{kind}"] = get(f"layer_norm1.{kind}", shape[:1])
            out[f"{dst}ln_2.{kind}"] = get(f"layer_norm2.{kind}", shape[:1])
        out[f"{dst}mlp.c_fc.weight"] = get("mlp.fc1.weight", (fc, width))
        out[f"{dst}mlp.c_fc.bias"] = get("mlp.fc1.bias", (fc,))
        out[f"{dst}mlp.c_proj.weight"] = get("mlp.fc2.weight", (width, fc))
        out[f"{dst}mlp.c_proj.bias"] = get("mlp.fc2.bias", (width,))
    return out


@pytest.fixture(scope="module")
def sd2(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny pipeline with SD 2.x's structure (64-channel UNet heads, linear proj_in/out,
    GroupNorm(32), a GELU text encoder with 64-wide heads and CLIP's 49408-token vocabulary,
    v-prediction as SD 2.1-768) saved as a diffusers folder and as one SD 2.x-layout file."""
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from geosynth.diffusion.single_file import clip_tokenizer
    from geosynth.toy.models import SD21_SCHEDULER_CONFIG

    torch.manual_seed(0)
    tok = clip_tokenizer("!")
    te = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=1, max_position_embeddings=77, hidden_act="gelu",
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )  # fmt: skip
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 64), layers_per_block=1, latent_channels=4, sample_size=32,
    )  # fmt: skip
    unet = UNet2DConditionModel(
        sample_size=16, layers_per_block=1, block_out_channels=(64, 128),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=64,
        attention_head_dim=[1, 2], use_linear_projection=True,
    )  # fmt: skip
    for model in (unet, vae):  # diffusers zero-inits some output layers: make every weight count
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * torch.randn_like(p))
    sched = PNDMScheduler(**{**SD21_SCHEDULER_CONFIG, "prediction_type": "v_prediction"})
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    root = tmp_path_factory.mktemp("sd2")
    folder = root / "folder"
    pipe.save_pretrained(folder, safe_serialization=True)
    sd = {k: v for k, v in to_original(folder).items() if not k.startswith("cond_stage_model.")}
    sd |= to_open_clip(load_file(folder / "text_encoder" / "model.safetensors"))
    path = root / "tiny-sd2.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, path)
    path.with_suffix(".yaml").write_text(
        "model:\n  params:\n    parameterization: v\n    scale_factor: 0.18215\n"
        "    unet_config:\n      params:\n        image_size: 16\n"
    )
    return folder, path


def test_sd2_single_file_loads_the_folder_weights(sd2):
    """SD 2.x layout: OpenCLIP text tower (fused q/k/v, extra last resblock ignored), 64-channel
    UNet heads, v-prediction from FILE.yaml; the same weights and configs as the folder."""
    from diffusers import StableDiffusionPipeline

    from geosynth.diffusion.identity import state_digest
    from geosynth.diffusion.single_file import load_single_file

    folder, path = sd2
    ref = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    pipe = load_single_file(path, dtype=torch.float32)
    for name in ("unet", "vae", "text_encoder"):
        assert state_digest(getattr(pipe, name).state_dict()) == state_digest(
            getattr(ref, name).state_dict()
        ), name
    assert pipe.text_encoder.config.num_hidden_layers == 2
    assert pipe.text_encoder.config.hidden_act == "gelu"
    assert pipe.unet.config.attention_head_dim == [1, 2]
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert model_digest(path) == model_digest(folder)


def test_sd2_single_file_generates_what_the_folder_generates(cli, sd2, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))
    folder, path = sd2
    a = cli("generate", "--model", folder, *GEN, "--out", tmp_path / "folder")
    assert a.code == 0, a.err
    b = cli("generate", "--model", path, *GEN, "--out", tmp_path / "file")
    assert b.code == 0, b.err
    for c in ("water", "forest"):
        png = Path(c) / "000000.png"
        assert (tmp_path / "file" / png).read_bytes() == (tmp_path / "folder" / png).read_bytes()


def test_single_file_digest_hashes_views_of_the_file(sd2, monkeypatch):
    """The digest of a single file equals hashing its converted state dicts (the SD 2 text
    tower's fused q/k/v split, the VAE's 1x1 attention convs reshaped), computed from byte
    ranges of the file: the checkpoint is never loaded whole."""
    from geosynth.diffusion import single_file
    from geosynth.diffusion.identity import single_file_digest, state_digest

    _, path = sd2
    parts = single_file.component_state_dicts(path)
    want = {c: state_digest(parts[c]) for c in ("unet", "text_encoder", "vae")}

    def no_full_read(p):
        raise AssertionError(f"{p} read whole")

    monkeypatch.setattr(single_file, "read_checkpoint", no_full_read)
    assert single_file_digest(path) == want


def test_sd2_prediction_type_from_the_weights_unless_a_yaml_or_the_caller_says(
    sd2, tmp_path, caplog
):
    """Without FILE.yaml an SD 2.x file is v-prediction when the first norm bias of its last
    output block's transformer spreads wider than 0.09 (ComfyUI's rule), with a one-line note;
    FILE.yaml, and then the caller's ``prediction_type``, decide over the weights."""
    from geosynth.diffusion.ldm_prediction import detect_prediction, norm_bias_key
    from geosynth.diffusion.single_file import UNET, load_single_file

    _, path = sd2
    sd = load_file(path)
    unet = {k.removeprefix(UNET): t for k, t in sd.items() if k.startswith(UNET)}
    key = norm_bias_key(unet)
    assert key == "output_blocks.3.1.transformer_blocks.0.norm1.bias"  # SD 2.x: block 11
    real_layout = {f"output_blocks.{n}.1.transformer_blocks.0.norm1.bias": None for n in range(12)}
    assert norm_bias_key(real_layout) == "output_blocks.11.1.transformer_blocks.0.norm1.bias"
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(sd[UNET + key].shape, generator=g)
    spread = spread / spread.std(unbiased=False)  # unit population std, scaled below
    assert detect_prediction({**unet, key: 0.05 * spread})[0] == "epsilon"
    assert detect_prediction({**unet, key: 0.15 * spread})[0] == "v_prediction"
    inpaint = {**unet, key: 0.15 * spread, "input_blocks.0.0.weight": torch.zeros(64, 9, 3, 3)}
    assert detect_prediction(inpaint)[0] == "epsilon"  # SD 2 inpainting models predict epsilon

    v_file = tmp_path / "tiny-sd2-v.safetensors"
    save_file({**sd, UNET + key: 0.15 * spread}, v_file)
    with caplog.at_level("WARNING", logger="geosynth"):
        pipe = load_single_file(v_file, dtype=torch.float32)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    notes = [r.getMessage() for r in caplog.records if r.name == "geosynth"]
    assert len(notes) == 1 and "\n" not in notes[0], notes
    assert "v_prediction" in notes[0] and key in notes[0] and "tiny-sd2-v.yaml" in notes[0]

    # FILE.yaml wins: the 512 px base config has no parameterization (LDM's default: epsilon)
    v_file.with_suffix(".yaml").write_text(
        "model:\n  params:\n    scale_factor: 0.18215\n"
        "    unet_config:\n      params:\n        image_size: 16\n"
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="geosynth"):
        pipe = load_single_file(v_file, dtype=torch.float32)
    assert pipe.scheduler.config.prediction_type == "epsilon"
    assert not [r for r in caplog.records if r.name == "geosynth"]
    # and the caller's choice wins over both
    pipe = load_single_file(v_file, dtype=torch.float32, prediction_type="v_prediction")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
