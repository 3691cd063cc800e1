"""Stable Diffusion XL through every diffusion step, on the toy SDXL pipeline: the family read
from the model's files, finetune (LoRA on the UNet and both text encoders; seed 003's hybrid)
-> channel-means -> generate with leak-aligned noise, the LoRA in plain diffusers, kohya files
with SDXL's names, and one-line refusals of LoRAs and channel means made for another family."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from geosynth.diffusion.family import detect_family
from geosynth.diffusion.sampling.noise import gaussian_latents
from geosynth.diffusion.sampling.spec import image_seed

CLASSES = "water,desert"
FAST = ["--classes", CLASSES, "--resolution", "32", "--batch-size", "2", "--seed", "0"]
FAST += ["--checkpoint-every", "1000", "--lr", "5e-3", "--lora-rank", "4", "--lora-alpha", "8"]
GEN = ["--classes", CLASSES, "--per-class", "2", "--steps", "2", "--batch-size", "2"]


def _keys(path: Path) -> list[str]:
    with safe_open(str(path), framework="pt") as fh:
        return list(fh.keys())


def _main(*args: str | Path) -> int:
    from geosynth.cli.main import main

    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def lora(toy_sdxl, toy_data, tmp_path_factory) -> Path:
    """A LoRA on the UNet and both text encoders, rank 4 / alpha 8 (scale 2)."""
    out = tmp_path_factory.mktemp("sdxl-ft") / "lora"
    args = ["finetune", toy_data, "--model", toy_sdxl, "--out", out, *FAST, "--max-steps", "3"]
    assert _main(*args) == 0
    return out


@pytest.fixture(scope="module")
def means(toy_sdxl, toy_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sdxl-cm") / "means.safetensors"
    args = ["channel-means", toy_data, "--model", toy_sdxl, "--classes", CLASSES, "--out", out]
    assert _main(*args) == 0
    return out


def test_family_is_read_from_the_files(toy_sdxl, toy_models, tmp_path) -> None:
    assert detect_family(toy_sdxl).name == "sdxl"
    assert detect_family(toy_models["sd"]).name == "sd2"  # SD 2.1-shaped toy
    # The folder's name says nothing: a copy named like SD 2.1 is still SDXL.
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(toy_sdxl, add_watermarker=False)
    assert pipe.text_encoder_2.config.projection_dim == 32
    assert pipe.unet.config.addition_embed_type == "text_time"


@pytest.mark.parametrize(
    ("index", "words"),
    [
        ({"_class_name": "FluxPipeline", "transformer": ["diffusers", "X"]}, "a FLUX model"),
        ({"_class_name": "StableDiffusion3Pipeline"}, "an SD3 model"),
        ({"_class_name": "PixArtSigmaPipeline"}, "a PixArt model"),
        ({"_class_name": "MyPipeline", "transformer": ["diffusers", "X"]}, "with a transformer"),
    ],
)
def test_other_families_are_refused_in_one_line(cli, toy_data, tmp_path, index, words) -> None:
    model = tmp_path / "sd-2-1-base"  # a misleading name: the files decide
    model.mkdir()
    (model / "model_index.json").write_text(json.dumps(index))
    res = cli("finetune", toy_data, "--model", model, "--out", tmp_path / "out", *FAST)
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1, res.err
    assert words in res.err
    assert "geosynth runs Stable Diffusion 1.x, 2.x and XL (SDXL) models" in res.err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.parts").exists()


def test_finetune_card_and_lora_cover_both_text_encoders(lora) -> None:
    card = json.loads((lora / "geosynth.json").read_text())
    assert card["base_family"] == "sdxl"
    assert card["lora_targets"]["text_encoders"] == ["text_encoder", "text_encoder_2"]
    # Each 32 px toy chip fits the 32 px target as it is: original 32x32, no crop.
    assert card["size_conditioning"] == [
        {"original": [32, 32], "crop_top_left": [0, 0], "target": [32, 32], "views": 24}
    ]
    keys = _keys(lora / "pytorch_lora_weights.safetensors")
    for part in ("unet.", "text_encoder.", "text_encoder_2."):
        assert any(k.startswith(part) for k in keys), part


def _images(out: Path) -> dict[str, np.ndarray]:
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    return {r["file_name"]: np.asarray(Image.open(out / r["file_name"])) for r in rows}


def test_leak_aligned_generation_writes_per_class_images(cli, lora, means, toy_sdxl, tmp_path):
    meta = json.loads(_meta(means))
    assert meta["family"] == "sdxl"
    out = tmp_path / "synth"
    res = cli("generate", "--model", toy_sdxl, "--lora", lora, "--noise", "leak-aligned",
              "--channel-means", means, *GEN, "--out", out)  # fmt: skip
    assert res.code == 0, res.err
    images = _images(out)
    assert sorted(images) == [f"{c}/00000{i}.png" for c in ("desert", "water") for i in (0, 1)]
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert {r["noise"] for r in rows} == {"leak-aligned"} and rows[0]["sqrt_alpha_bar"] > 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["extra"]["spec"]["family"] == "sdxl"


def _meta(path: Path) -> str:
    with safe_open(str(path), framework="pt") as fh:
        return json.dumps(fh.metadata())


def test_lora_in_plain_diffusers_gives_generates_images(cli, lora, toy_sdxl, tmp_path) -> None:
    """``StableDiffusionXLPipeline.load_lora_weights(DIR)`` (alpha read from the file) gives the
    images of ``geosynth generate --lora DIR`` (fused LoRA, cached prompt embeddings), from the
    same starting noise: within one grey level (docs/generation.md, "Throughput")."""
    from diffusers import StableDiffusionXLPipeline

    out = tmp_path / "gen"
    res = cli("generate", "--model", toy_sdxl, "--lora", lora, *GEN, "--guidance", "3",
              "--out", out)  # fmt: skip
    assert res.code == 0, res.err
    ours = _images(out)
    pipe = StableDiffusionXLPipeline.from_pretrained(toy_sdxl, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(lora))
    scaling = {m.scaling["default_0"] for m in pipe.unet.modules() if hasattr(m, "scaling")}
    assert scaling == {2.0}
    assert any(hasattr(m, "scaling") for m in pipe.text_encoder_2.modules())
    for c in ("water", "desert"):
        gens = [torch.Generator().manual_seed(image_seed(0, c, i)) for i in range(2)]
        latents = gaussian_latents((4, 16, 16), gens)
        images = pipe(
            [f"a satellite photo of a {c}"] * 2,
            latents=latents,
            num_inference_steps=2,
            guidance_scale=3.0,
            height=32,
            width=32,
            generator=gens,
        ).images
        for i, img in enumerate(images):
            diff = np.abs(np.asarray(img).astype(int) - ours[f"{c}/00000{i}.png"].astype(int))
            assert diff.max() <= 1, (c, i, diff.max())


def test_hybrid_full_unet_text_lora_and_token_in_both_encoders(
    cli, toy_sdxl, toy_data, tmp_path
) -> None:
    """Seed 003's best setting: the whole UNet, LoRA on both text encoders, a learned token
    placed in both encoders' embeddings; generate applies all of it."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    out = tmp_path / "hybrid"
    res = cli("finetune", toy_data, "--model", toy_sdxl, "--out", out, *FAST, "--max-steps", "2",
              "--train-unet", "full", "--learn-token", "<sar>")  # fmt: skip
    assert res.code == 0, res.err
    card = json.loads((out / "geosynth.json").read_text())
    assert set(card["files"]) == {
        "pytorch_lora_weights.safetensors",
        "learned_embeds.safetensors",
        "unet",
    }
    with safe_open(str(out / "learned_embeds.safetensors"), framework="pt") as fh:
        rows = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    assert {k: tuple(v.shape) for k, v in rows.items()} == {"clip_l": (1, 32), "clip_g": (1, 64)}
    for name, cls, key in (
        ("text_encoder", CLIPTextModel, "clip_l"),
        ("text_encoder_2", CLIPTextModelWithProjection, "clip_g"),
    ):
        base = cls.from_pretrained(toy_sdxl, subfolder=name).get_input_embeddings().weight
        assert rows[key].shape[1] == base.shape[1] and not torch.isnan(rows[key]).any()
    gen = tmp_path / "gen"
    res = cli("generate", "--model", toy_sdxl, "--lora", out, "--classes", "water",
              "--per-class", "1", "--steps", "2", "--out", gen)  # fmt: skip
    assert res.code == 0, res.err
    row = json.loads((gen / "metadata.jsonl").read_text().splitlines()[0])
    assert row["prompt"] == "a satellite photo of a <sar> water"


def test_kohya_export_has_sdxl_names_and_imports_back(cli, lora, toy_sdxl, tmp_path) -> None:
    """``lora_te1_``, ``lora_te2_`` and SGM-named ``lora_unet_`` keys (the UNet's module names
    in the original single-file layout, which kohya, A1111 and ComfyUI use for SDXL); plain
    diffusers loads the file, and importing it back gives the same tensors, rank and alpha."""
    from diffusers import StableDiffusionXLPipeline

    file = tmp_path / "lora.safetensors"
    assert cli("lora", "export", lora, "--out", file).code == 0
    keys = _keys(file)
    downs = [k for k in keys if k.endswith(".lora_down.weight")]
    assert any(k.startswith("lora_te1_text_model_encoder_layers_") for k in downs)
    assert any(k.startswith("lora_te2_text_model_encoder_layers_") for k in downs)
    unet = [k for k in downs if k.startswith("lora_unet_")]
    assert unet and all(
        k.startswith(("lora_unet_input_blocks_", "lora_unet_middle_block_",
                      "lora_unet_output_blocks_")) for k in unet
    )  # fmt: skip
    # The toy's second level (one layer per block: input block 3, output blocks 0-1) holds its
    # attention, two transformer blocks deep.
    assert "lora_unet_input_blocks_3_1_transformer_blocks_1_attn2_to_k.lora_down.weight" in keys
    assert "lora_unet_output_blocks_1_1_transformer_blocks_0_attn1_to_out_0.lora_up.weight" in keys
    meta = json.loads(_meta(file))
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"

    pipe = StableDiffusionXLPipeline.from_pretrained(toy_sdxl, add_watermarker=False)
    pipe.load_lora_weights(str(file))
    assert any(hasattr(m, "scaling") for m in pipe.text_encoder_2.modules())

    back = tmp_path / "back"
    assert cli("lora", "import", file, "--model", toy_sdxl, "--out", back).code == 0
    assert json.loads((back / "geosynth.json").read_text())["base_family"] == "sdxl"
    original = _tensors(lora / "pytorch_lora_weights.safetensors")
    again = _tensors(back / "pytorch_lora_weights.safetensors")
    assert original.keys() == again.keys()
    for k in original:
        torch.testing.assert_close(again[k], original[k], rtol=0, atol=0, msg=k)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118


def _fake_lora(path: Path, width: int) -> Path:
    """A UNet LoRA whose cross-attention key projection reads ``width``-wide text features."""
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    key = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    save_file(
        {f"{key}.lora_A.weight": torch.zeros(4, width), f"{key}.lora_B.weight": torch.zeros(64, 4)},
        str(path / "pytorch_lora_weights.safetensors"),
    )
    return path


def _refused(res, *words: str) -> None:
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1, res.err
    for w in words:
        assert w in res.err, (w, res.err)


def test_other_family_loras_and_means_are_refused(
    cli, lora, means, toy_sdxl, toy_models, toy_data, tmp_path
) -> None:
    sd = toy_models["sd"]
    out = tmp_path / "out"
    # An SDXL LoRA (its card says so) on an SD 2.x model, and the reverse (an SD 2.1-sized LoRA
    # read from its weights: 1024-wide cross-attention).
    _refused(cli("generate", "--model", sd, "--lora", lora, *GEN, "--out", out),
             "made for an SDXL model", "(SD 2.x)", "--lora")  # fmt: skip
    sd21 = _fake_lora(tmp_path / "sd21-lora", 1024)
    _refused(cli("generate", "--model", toy_sdxl, "--lora", sd21, *GEN, "--out", out),
             "made for an SD 2.x model", "(SDXL)")  # fmt: skip
    _refused(cli("finetune", toy_data, "--model", toy_sdxl, "--init-lora", sd21, *FAST,
                 "--out", out), "made for an SD 2.x model")  # fmt: skip
    _refused(cli("channel-means", toy_data, "--model", sd, "--lora", lora, "--out",
                 tmp_path / "m.safetensors"), "made for an SDXL model")  # fmt: skip
    # SDXL channel means with an SD 2.x model.
    _refused(cli("generate", "--model", sd, "--noise", "leak-aligned", "--channel-means", means,
                 *GEN, "--out", out), "--channel-means", "made for an SDXL model")  # fmt: skip
    # A kohya SDXL file imported onto an SD 2.x model.
    file = tmp_path / "x.safetensors"
    assert cli("lora", "export", lora, "--out", file).code == 0
    _refused(cli("lora", "import", file, "--model", sd, "--out", out), "made for an SDXL model")
    assert not out.exists() and not (tmp_path / "out.parts").exists()
    assert not (tmp_path / "m.safetensors").exists()


def test_controlnet_on_sdxl(cli, toy_sdxl, toy_data, tmp_path) -> None:
    """``--control`` with an SDXL ControlNet (built from the toy SDXL's UNet, so it takes the
    added conditioning): the family's ControlNet pipeline runs it, and it changes the images."""
    from geosynth.toy import make_toy_controlnet

    cn = make_toy_controlnet(toy_sdxl, tmp_path / "cn")
    args = ["--model", toy_sdxl, "--classes", "water", "--per-class", "1", "--steps", "2"]
    plain = tmp_path / "plain"
    assert cli("generate", *args, "--out", plain).code == 0
    res = cli("generate", *args, "--controlnet", cn, "--control", "image", "--control-images",
              toy_data, "--out", tmp_path / "control")  # fmt: skip
    assert res.code == 0, res.err
    row = json.loads((tmp_path / "control" / "metadata.jsonl").read_text().splitlines()[0])
    assert row["control"]["mode"] == "image"
    a, b = _images(plain), _images(tmp_path / "control")
    assert np.abs(a["water/000000.png"].astype(int) - b["water/000000.png"]).max() > 0


def test_replay_and_config_reproduce_an_sdxl_finetune(cli, lora, tmp_path) -> None:
    res = cli("replay", lora / "geosynth.json", "--out", tmp_path / "again")
    assert res.code == 0, res.err
    for name in ("pytorch_lora_weights.safetensors", "geosynth.json", "loss.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (lora / name).read_bytes(), name
    res = cli("finetune", "--config", lora, "--max-steps", "1", "--out", tmp_path / "other")
    assert res.code == 0, res.err
    card = json.loads((tmp_path / "other" / "geosynth.json").read_text())
    assert card["base_family"] == "sdxl" and card["steps"] == 1


def test_seed003_recipe_file_runs_the_hybrid(cli, toy_sdxl, toy_data, tmp_path) -> None:
    """docs/recipes/seed003-sdxl-hybrid.toml is a valid ``--config``: with the toy model and a
    tiny run given as flags, it trains seed 003's hybrid."""
    recipe = Path(__file__).resolve().parents[2] / "docs" / "recipes" / "seed003-sdxl-hybrid.toml"
    out = tmp_path / "hybrid"
    res = cli("finetune", toy_data, "--config", recipe, "--model", toy_sdxl, "--resolution", "32",
              "--classes", "water", "--batch-size", "2", "--max-steps", "1", "--out", out)  # fmt: skip
    assert res.code == 0, res.err
    card = json.loads((out / "geosynth.json").read_text())
    assert card["trained"]["unet"] == "full" and card["trained"]["text_encoder"] == "lora"
    assert card["learned_token"] == "<sar>" and card["base_family"] == "sdxl"
    assert card["prompt_template"] == "a SAR image of a <sar> {}"
    assert card["lora_targets"]["text_encoders"] == ["text_encoder", "text_encoder_2"]
