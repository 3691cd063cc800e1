"""finetune on the toy SDXL through the options users combine (issue 34, "Every diffusion step
on SDXL"): a LoRA target preset, offset noise in its variance reading, v-prediction with zero
terminal SNR and min-SNR weights, gradient checkpointing, a VAE decoder LoRA and a stage-1 LoRA
merged first (--init-lora); the size/crop conditioning of chips of several sizes, computed per
chip as it was resized and cropped, recorded in the card and fed to the UNet; the caches giving
what encoding every step gives; both text encoders trained in full with a learned token; and
per-class LoRAs generated fused and unfused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from geosynth.diffusion.family.sdxl import StableDiffusionXL

FAST = ["--resolution", "32", "--batch-size", "2", "--seed", "0", "--checkpoint-every", "1000"]
FAST += ["--lr", "5e-3", "--lora-rank", "4", "--lora-alpha", "8"]

#: Chip sizes (width, height) per class, and the six numbers each gives at 32 px: original
#: height and width, crop top and left in the resized image, target height and width; the
#: mirror image's crop left is resized width - left - 32. Worked by hand: 51x32 is not resized
#: and cropped at left (51 - 32) // 2 = 9 (mirrored: 51 - 9 - 32 = 10); 64x64 is halved, no
#: crop; 32x80 is cropped at top 24; 96x48 is resized to 64x32 and cropped at left 16 (mirrored
#: also 16).
CHIPS = {"water": [(51, 32), (64, 64)], "desert": [(32, 80), (96, 48)]}
SIZES = {
    (51, 32): [[32, 51, 0, 9, 32, 32], [32, 51, 0, 10, 32, 32]],
    (64, 64): [[64, 64, 0, 0, 32, 32]] * 2,
    (32, 80): [[80, 32, 24, 0, 32, 32]] * 2,
    (96, 48): [[48, 96, 0, 16, 32, 32]] * 2,
}


@pytest.fixture(scope="module")
def chips(tmp_path_factory) -> Path:
    """An imagefolder of chips of four sizes and aspect ratios, a colour per class."""
    root = tmp_path_factory.mktemp("sdxl-chips") / "data"
    rng = np.random.default_rng(0)
    for c, (cls, sizes) in enumerate(CHIPS.items()):
        (root / cls).mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            base = np.array([[40, 80, 200], [210, 180, 90]][c], dtype=float)
            arr = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.png")
    return root


def _card(out: Path) -> dict:
    return json.loads((out / "geosynth.json").read_text())


def _keys(path: Path) -> list[str]:
    with safe_open(str(path), framework="pt") as fh:
        return list(fh.keys())


@pytest.fixture(scope="module")
def stage1(toy_sdxl, chips, tmp_path_factory) -> Path:
    """A one-step UNet LoRA to merge first (2LoRA's stage 1)."""
    from geosynth.cli.main import main

    out = tmp_path_factory.mktemp("sdxl-stage1") / "stage1"
    args = ["finetune", chips, "--model", toy_sdxl, "--out", out, *FAST, "--max-steps", "1"]
    assert main([str(a) for a in [*args, "--train-text-encoder", "frozen"]]) == 0
    return out


def test_options_and_per_chip_size_conditioning(
    cli, toy_sdxl, chips, stage1, tmp_path, monkeypatch
) -> None:
    from diffusers import AutoencoderKL

    seen: list[torch.Tensor] = []
    real = StableDiffusionXL.unet_conditioning

    def spy(self, embeds, sizes, dtype):
        seen.append(sizes.detach().cpu().clone())
        return real(self, embeds, sizes, dtype)

    monkeypatch.setattr(StableDiffusionXL, "unet_conditioning", spy)
    out = tmp_path / "lora"
    res = cli("finetune", chips, "--model", toy_sdxl, "--out", out, *FAST, "--max-steps", "2",
              "--lora-targets", "attention-ff", "--offset-noise", "0.05",
              "--offset-noise-convention", "variance", "--prediction-type", "v_prediction",
              "--zero-terminal-snr", "--snr-gamma", "5", "--gradient-checkpointing",
              "--train-vae-decoder", "lora", "--init-lora", f"{stage1}:0.5")  # fmt: skip
    assert res.code == 0, res.err
    card = _card(out)
    # The size conditioning of every chip and its mirror image, as the card lists it.
    views = [tuple(v) for size in SIZES.values() for v in size]
    want = {v: views.count(v) for v in views}
    got = {tuple(r["original"] + r["crop_top_left"] + r["target"]): r["views"]
           for r in card["size_conditioning"]}  # fmt: skip
    assert got == want
    # ... and what the UNet was given: two steps of two chips, each a chip's own numbers.
    assert len(seen) == 2 and all(s.shape == (2, 6) for s in seen)
    assert {tuple(int(x) for x in row) for s in seen for row in s} <= set(want)
    # The options, as recorded and as saved.
    recipe = card["recipe"]
    assert recipe["offset_noise_convention"] == "variance"
    assert recipe["snr_gamma"] == 5 and recipe["gradient_checkpointing"] is True
    assert card["scheduler"] == {
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "timestep_spacing": "trailing",
    }
    assert card["lora_targets"]["preset"] == "attention-ff"
    keys = _keys(out / "pytorch_lora_weights.safetensors")
    assert any(".ff.net.2." in k for k in keys) and any("text_encoder_2." in k for k in keys)
    assert card["stack"] == [{"path": str(stage1.resolve()), "weight": 0.5}]
    assert set(card["files"]) == {"pytorch_lora_weights.safetensors", "vae"}
    with open(out / "loss.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 2 and all(np.isfinite(losses))
    vae = AutoencoderKL.from_pretrained(out / "vae")
    base = AutoencoderKL.from_pretrained(toy_sdxl, subfolder="vae")
    pairs = zip(vae.decoder.parameters(), base.decoder.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)  # the decoder LoRA, merged
    pairs = zip(vae.encoder.parameters(), base.encoder.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    # generate applies it all: the stage-1 LoRA from the card's stack, the trained VAE and the
    # v-prediction, zero-terminal-SNR schedule.
    gen = tmp_path / "gen"
    res = cli("generate", "--model", toy_sdxl, "--lora", out, "--classes", "water",
              "--per-class", "1", "--steps", "2", "--out", gen)  # fmt: skip
    assert res.code == 0, res.err
    row = json.loads((gen / "metadata.jsonl").read_text().splitlines()[0])
    assert {v["path"] for v in row["loras"].values()} == {str(out), str(stage1.resolve())}


#: UNet LoRA with frozen text encoders, where the text cache applies; offset noise in its
#: standard-deviation reading (the options test above takes the variance one).
RECIPE = dict(text_encoder="frozen", resolution=32, batch_size=2, max_steps=2, offset_noise=0.05,
              checkpoint_every=1000, lr=5e-3)  # fmt: skip


def _run(model, data, out: Path, **speed) -> tuple[list[float], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    from geosynth.data import load_dataset
    from geosynth.diffusion.training.finetune import finetune
    from geosynth.diffusion.training.recipe import Recipe

    finetune(load_dataset(data), out, Recipe(**RECIPE), model=str(model), log=lambda s: None,
             device="cpu", **speed)  # fmt: skip
    with open(out / "loss.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    return losses, load_file(str(out / "pytorch_lora_weights.safetensors"))


def test_cached_latents_and_text_equal_encoding_every_step(toy_sdxl, chips, tmp_path) -> None:
    """Both encoders' hidden states and the pooled embedding cached per prompt, and the VAE
    posteriors cached per chip and mirror image: the losses and weights of encoding every step
    (docs/finetune.md, "Throughput": same tolerances as SD 2.1's)."""
    cached = _run(toy_sdxl, chips, tmp_path / "cached")
    plain = _run(toy_sdxl, chips, tmp_path / "plain", cache_text=False, cache_latents=False)
    for a, b in zip(cached[0], plain[0], strict=True):
        assert abs(a - b) <= 1e-5 * abs(a), (cached[0], plain[0])
    assert cached[1].keys() == plain[1].keys()
    assert (
        max(float(v.abs().max()) for k, v in cached[1].items() if "lora_B" in k or "lora.up" in k)
        > 1e-3
    )
    for k, v in cached[1].items():
        rel = float((v.double() - plain[1][k].double()).norm() / v.double().norm().clamp(1e-30))
        assert rel <= 1e-3, (k, rel)


def test_full_text_encoders_carry_the_token(cli, toy_sdxl, chips, tmp_path) -> None:
    """Both encoders trained in full: each is saved with its tokenizer, both of which know the
    learned token, and generate puts them in place of the base model's."""
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

    out = tmp_path / "te"
    res = cli("finetune", chips, "--model", toy_sdxl, "--out", out, *FAST, "--max-steps", "2",
              "--train-unet", "frozen", "--train-text-encoder", "full", "--learn-token", "<sar>",
              "--gradient-checkpointing")  # fmt: skip
    assert res.code == 0, res.err
    card = _card(out)
    assert set(card["files"]) == {"text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"}
    for te, tok, cls in (("text_encoder", "tokenizer", CLIPTextModel),
                         ("text_encoder_2", "tokenizer_2", CLIPTextModelWithProjection)):  # fmt: skip
        tokenizer = AutoTokenizer.from_pretrained(out / tok)
        model = cls.from_pretrained(out / te)
        base = cls.from_pretrained(toy_sdxl, subfolder=te)
        assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
        assert len(tokenizer.encode("<sar>", add_special_tokens=False)) == 1
        # every weight trained, not only the token's row
        ref = dict(base.named_parameters())
        moved = [n for n, p in model.named_parameters() if "embed" not in n and
                 not torch.equal(p, ref[n])]  # fmt: skip
        assert moved, te
    gen = tmp_path / "gen"
    res = cli("generate", "--model", toy_sdxl, "--lora", out, "--classes", "water",
              "--per-class", "1", "--steps", "2", "--out", gen)  # fmt: skip
    assert res.code == 0, res.err
    row = json.loads((gen / "metadata.jsonl").read_text().splitlines()[0])
    assert row["prompt"] == "a satellite photo of a <sar> water"


def _images(out: Path) -> dict[str, np.ndarray]:
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    return {r["file_name"]: np.asarray(Image.open(out / r["file_name"])).astype(int) for r in rows}


@pytest.mark.slow  # two trainings and three generate runs: about 25 s on an idle 2-core machine
def test_per_class_loras_fused_and_unfused(cli, toy_sdxl, chips, tmp_path) -> None:
    """--class-loras on SDXL, then generate --lora-dir: each class gets its own LoRA, fused into
    the weights or run as adapters, within one grey level of each other (docs/generation.md)."""
    loras = tmp_path / "loras"
    res = cli("finetune", chips, "--model", toy_sdxl, "--out", loras, *FAST, "--max-steps", "1",
              "--class-loras", "--lr", "5e-2")  # fmt: skip
    assert res.code == 0, res.err
    assert sorted(p.name for p in loras.iterdir() if p.is_dir()) == ["desert", "water"]
    assert {_card(loras / c)["base_family"] for c in ("desert", "water")} == {"sdxl"}
    args = ["--model", toy_sdxl, "--lora-dir", loras, "--per-class", "1", "--steps", "2"]
    outs = {}
    for name, extra in (("fused", []), ("unfused", ["--no-fuse-lora"]), ("base", None)):
        outs[name] = tmp_path / name
        cmd = [*args, *extra] if extra is not None else [*args[:2], "--classes", "desert,water",
                                                        *args[4:]]  # fmt: skip
        res = cli("generate", *cmd, "--out", outs[name])
        assert res.code == 0, res.err
    rows = [json.loads(x) for x in (outs["fused"] / "metadata.jsonl").read_text().splitlines()]
    for r in rows:
        assert [v["path"] for v in r["loras"].values()] == [str(loras / r["class_name"])]
    fused, unfused, base = (_images(outs[n]) for n in ("fused", "unfused", "base"))
    assert fused.keys() == unfused.keys() == base.keys()
    for k in fused:
        assert int(np.abs(fused[k] - unfused[k]).max()) <= 1, k
    assert max(int(np.abs(fused[k] - base[k]).max()) for k in fused) > 1  # the LoRAs act
