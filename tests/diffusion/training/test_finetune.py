"""geosynth finetune on the toy pipeline: LoRA, full, hybrid, scratch, two-stage, resume."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from geosynth.data import load_dataset
from geosynth.diffusion.latents import images_to_tensor
from geosynth.diffusion.training.finetune import finetune, parts_dir
from geosynth.diffusion.training.recipe import Recipe
from geosynth.errors import GeosynthError
from geosynth.toy import make_toy_lora

FAST = ["--resolution", "32", "--batch-size", "4", "--checkpoint-every", "1000"]


def _plain_pipe(sd: Path):
    """A pipeline loaded by plain diffusers, not through geosynth."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(sd), safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def _denoise_loss(pipe, data: Path) -> float:
    """The epsilon loss on the toy images at fixed timesteps and noise (seeded, not random)."""
    ds = load_dataset(data)
    x = images_to_tensor([ds.image(i) for i in range(len(ds))], 32)
    lat = pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor
    prompts = [f"a satellite photo of a {ds.class_names[s.label]}" for s in ds.samples]
    ids = pipe.tokenizer(
        prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids
    cond = pipe.text_encoder(ids)[0]
    g = torch.Generator().manual_seed(0)
    total = 0.0
    for t in (100, 300, 500, 700, 900):
        noise = torch.randn(lat.shape, generator=g)
        tt = torch.full((len(lat),), t)
        noisy = pipe.scheduler.add_noise(lat, noise, tt)
        pred = pipe.unet(noisy, tt, cond).sample
        total += torch.mean((pred - noise) ** 2).item()
    return total / 5


def _finetune(cli, data: Path, sd: str, out: Path, *args: str | Path):
    """``geosynth finetune`` on ``data`` with the fast toy settings."""
    return cli("finetune", data, "--model", sd, "--out", out, *FAST, *args)


def _generate_water(cli, sd: str, lora: Path, out: Path) -> dict:
    """``generate --lora`` one water image; its metadata row."""
    args = ["--classes", "water", "--per-class", "1", "--steps", "2", "--out", out]
    res = cli("generate", "--model", sd, "--lora", lora, *args)
    assert res.code == 0, res.err
    return json.loads((out / "metadata.jsonl").read_text().splitlines()[0])


@pytest.fixture(scope="module")
def trained(toy_models, toy_data, tmp_path_factory) -> Path:
    """A LoRA trained with rank 8 / alpha 16 (scale 2, to check that alpha survives)."""
    from geosynth.cli.main import main

    out = tmp_path_factory.mktemp("ft") / "lora"
    args = ["finetune", str(toy_data), "--model", str(toy_models["sd"]), "--out", str(out)]
    args += [*FAST, "--max-steps", "40", "--lr", "5e-3", "--lora-rank", "8", "--lora-alpha", "16"]
    assert main(args) == 0
    return out


def test_lora_lowers_loss_and_loads_in_plain_diffusers(trained, toy_models, toy_data) -> None:
    card = json.loads((trained / "geosynth.json").read_text())
    assert card["base_model"] == str(toy_models["sd"])
    assert card["class_names"] == ["water", "forest", "desert", "cropland", "urban"]
    assert card["prompt_template"] == "a satellite photo of a {}"
    assert card["recipe"]["rank"] == 8 and card["steps"] == 40
    assert card["data"]["images"] == 30 and len(card["data"]["fingerprint"]) > 8
    rows = (trained / "loss.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,loss,lr" and len(rows) == 41
    assert (trained / "loss.png").stat().st_size > 1000
    assert not parts_dir(trained).exists()

    pipe = _plain_pipe(toy_models["sd"])
    before = _denoise_loss(pipe, toy_data)
    gen = torch.Generator().manual_seed(1)
    img0 = pipe(
        "a satellite photo of a water", num_inference_steps=2, generator=gen, output_type="np"
    ).images
    pipe.load_lora_weights(str(trained))
    scaling = {m.scaling["default_0"] for m in pipe.unet.modules() if hasattr(m, "scaling")}
    assert scaling == {2.0}  # alpha 16 / rank 8, read from the file's metadata
    te_lora = [m for m in pipe.text_encoder.modules() if hasattr(m, "scaling")]
    assert te_lora, "the text encoder LoRA was not loaded"
    after = _denoise_loss(pipe, toy_data)
    assert after < 0.95 * before, (before, after)
    gen = torch.Generator().manual_seed(1)
    img1 = pipe(
        "a satellite photo of a water", num_inference_steps=2, generator=gen, output_type="np"
    ).images
    assert np.abs(img1 - img0).mean() > 1e-3


def _small(**kw) -> Recipe:
    base = dict(resolution=32, batch_size=4, max_steps=6, checkpoint_every=2, lr=1e-3)
    base.update(kw)
    return Recipe(**base)


def test_resume_after_interruption_gives_identical_weights(toy_models, toy_data, tmp_path) -> None:
    ds = load_dataset(toy_data)
    sd = str(toy_models["sd"])
    ref = finetune(ds, tmp_path / "ref", _small(offset_noise=0.1), model=sd, log=lambda s: None)

    class Stop(Exception):
        pass

    def crash(info) -> None:
        if info.step == 3:
            raise Stop

    out = tmp_path / "cut"
    with pytest.raises(Stop):
        finetune(ds, out, _small(offset_noise=0.1), model=sd, on_step=crash, log=lambda s: None)
    assert not out.exists()  # nothing half-written
    assert (parts_dir(out) / "checkpoints" / "step-00000002").is_dir()
    with pytest.raises(GeosynthError, match=r"other settings \(offset_noise 0\.1 -> 0\.2\)"):
        finetune(ds, out, _small(offset_noise=0.2), model=sd, resume=True, log=lambda s: None)
    res = finetune(ds, out, _small(offset_noise=0.1), model=sd, resume=True, log=lambda s: None)
    assert res["cards"]["all"]["resumed_from_step"] == 2
    a = load_file(str(tmp_path / "ref" / "pytorch_lora_weights.safetensors"))
    b = load_file(str(out / "pytorch_lora_weights.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "ref" / "loss.csv").read_text() == (out / "loss.csv").read_text()
    assert ref["cards"]["all"]["final_loss"] == res["cards"]["all"]["final_loss"]


def test_two_stage_lora_records_stack_and_generate_applies_it(
    trained, toy_models, toy_data, tmp_path, cli
) -> None:
    from geosynth.diffusion.training.trainable import fuse_init_loras

    sd = str(toy_models["sd"])
    # Merging equals running the adapter at that weight.
    pipe = _plain_pipe(toy_models["sd"])
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1))
    pipe.load_lora_weights(str(trained), adapter_name="s1")
    pipe.set_adapters(["s1"], adapter_weights=[0.5])
    with torch.no_grad():
        want = pipe.unet(x, 500, cond).sample
    fused = _plain_pipe(toy_models["sd"])
    fuse_init_loras(fused, [(str(trained), 0.5)])
    assert not [m for m in fused.unet.modules() if hasattr(m, "scaling")]  # adapters gone
    with torch.no_grad():
        got = fused.unet(x, 500, cond).sample
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)

    out = tmp_path / "stage2"
    res = _finetune(
        cli,
        toy_data,
        sd,
        out,
        "--max-steps",
        "2",
        "--lora-rank",
        "4",
        "--init-lora",
        f"{trained}:0.5",
        "--train-text-encoder",
        "frozen",
        "--classes",
        "water,desert",
    )
    assert res.code == 0, res.err
    card = json.loads((out / "geosynth.json").read_text())
    assert card["stack"] == [{"path": str(trained.resolve()), "weight": 0.5}]
    row = _generate_water(cli, sd, out, tmp_path / "gen")
    weights = {v["path"]: v["weight"] for v in row["loras"].values()}
    assert weights == {str(trained.resolve()): 0.5, str(out): 1.0}
    # Without --classes the classes are stage 2's, not those of the stage-1 card it pulled in.
    res = cli(
        "generate",
        "--model",
        sd,
        "--lora",
        out,
        "--per-class",
        "1",
        "--steps",
        "2",
        "--out",
        tmp_path / "gen2",
    )
    assert res.code == 0, res.err
    rows = (tmp_path / "gen2" / "metadata.jsonl").read_text().splitlines()
    assert sorted(json.loads(r)["class_name"] for r in rows) == ["desert", "water"]


def test_full_unet_hybrid_token_and_generate(toy_models, toy_data, tmp_path, cli) -> None:
    """Seed 003's hybrid: LoRA text encoder + full UNet + learned token."""
    from diffusers import UNet2DConditionModel

    sd = str(toy_models["sd"])
    out = tmp_path / "hybrid"
    res = _finetune(
        cli,
        toy_data,
        sd,
        out,
        "--max-steps",
        "3",
        "--lr",
        "1e-3",
        "--train-unet",
        "full",
        "--learn-token",
        "<sar>",
    )
    assert res.code == 0, res.err
    card = json.loads((out / "geosynth.json").read_text())
    assert set(card["files"]) == {
        "pytorch_lora_weights.safetensors",
        "learned_embeds.safetensors",
        "unet",
    }
    assert card["prompt_template"] == "a satellite photo of a <sar> {}"
    base = UNet2DConditionModel.from_pretrained(sd, subfolder="unet")
    tuned = UNet2DConditionModel.from_pretrained(out / "unet")
    diffs = [
        (a - b).abs().max().item()
        for a, b in zip(base.parameters(), tuned.parameters(), strict=True)
    ]
    assert min(diffs) >= 0 and sum(d > 0 for d in diffs) > 0.9 * len(diffs)

    pipe = _plain_pipe(toy_models["sd"])
    init = (
        pipe.text_encoder.get_input_embeddings()
        .weight[pipe.tokenizer.encode("satellite", add_special_tokens=False)]
        .mean(0)
    )
    pipe.load_textual_inversion(str(out / "learned_embeds.safetensors"), token="<sar>")
    row = pipe.tokenizer.convert_tokens_to_ids("<sar>")
    learned = pipe.text_encoder.get_input_embeddings().weight[row]
    assert not torch.allclose(learned, init)

    row = _generate_water(cli, sd, out, tmp_path / "gen")
    assert row["prompt"] == "a satellite photo of a <sar> water"


def test_per_class_loras_feed_generate_lora_dir(toy_models, toy_data, tmp_path, cli) -> None:
    sd = str(toy_models["sd"])
    out = tmp_path / "clora"
    res = _finetune(
        cli,
        toy_data,
        sd,
        out,
        "--max-steps",
        "1",
        "--class-loras",
        "--classes",
        "water,desert",
        "--json",
    )
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert sorted(summary["cards"]) == ["desert", "water"]
    assert json.loads((out / "water" / "geosynth.json").read_text())["class_names"] == ["water"]
    res = cli(
        "generate",
        "--model",
        sd,
        "--lora-dir",
        out,
        "--per-class",
        "1",
        "--steps",
        "2",
        "--out",
        tmp_path / "gen",
    )
    assert res.code == 0, res.err
    rows = (tmp_path / "gen" / "metadata.jsonl").read_text().splitlines()
    assert sorted(json.loads(r)["class_name"] for r in rows) == ["desert", "water"]
    res = cli(
        "finetune",
        toy_data,
        "--model",
        sd,
        "--out",
        tmp_path / "t",
        "--class-loras",
        "--learn-token",
        "<sar>",
    )
    assert res.code == 2 and "--learn-token with --class-loras would" in res.err


def test_scratch_unet_vpred_zero_snr_and_vae_decoder(toy_models, toy_data, tmp_path, cli) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    sd = str(toy_models["sd"])
    config = dict(UNet2DConditionModel.load_config(sd, subfolder="unet"))
    config["block_out_channels"] = [16, 32]
    config["norm_num_groups"] = 8
    cfg = tmp_path / "unet.json"
    cfg.write_text(json.dumps(config))
    out = tmp_path / "scratch"
    res = _finetune(
        cli,
        toy_data,
        sd,
        out,
        "--max-steps",
        "2",
        "--init",
        "scratch",
        "--unet-config",
        cfg,
        "--train-unet",
        "full",
        "--train-text-encoder",
        "frozen",
        "--train-vae-decoder",
        "lora",
        "--prediction-type",
        "v_prediction",
        "--zero-terminal-snr",
        "--snr-gamma",
        "5",
        "--offset-noise",
        "0.1",
    )
    assert res.code == 0, res.err
    card = json.loads((out / "geosynth.json").read_text())
    assert card["trained"]["unet"] == "scratch"
    assert card["scheduler"]["prediction_type"] == "v_prediction"
    unet = UNet2DConditionModel.from_pretrained(out / "unet")
    assert list(unet.config.block_out_channels) == [16, 32]
    vae = AutoencoderKL.from_pretrained(out / "vae")
    base = AutoencoderKL.from_pretrained(sd, subfolder="vae")
    changed = [
        not torch.equal(a, b)
        for a, b in zip(vae.decoder.parameters(), base.decoder.parameters(), strict=True)
    ]
    assert any(changed)  # the decoder LoRA was merged into the saved weights
    for a, b in zip(vae.encoder.parameters(), base.encoder.parameters(), strict=True):
        assert torch.equal(a, b)  # the encoder never trains
    # generate samples it with the UNet and VAE from the card and a scheduler that honours the
    # rescaled betas (SD's PNDM would ignore them).
    row = _generate_water(cli, sd, out, tmp_path / "gen")
    assert row["scheduler"] == "DDIMScheduler"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**config, "cross_attention_dim": 99}))
    res = _finetune(
        cli,
        toy_data,
        sd,
        tmp_path / "x",
        "--init",
        "scratch",
        "--unet-config",
        bad,
        "--train-unet",
        "full",
    )
    assert res.code == 2 and "cross_attention_dim" in res.err
    assert not (tmp_path / "x").exists()


def test_bad_input(toy_models, toy_data, tmp_path, cli) -> None:
    sd = str(toy_models["sd"])
    run = ["finetune", toy_data, "--model", sd]
    # A resolution the VAE and UNet cannot take.
    res = cli(*run, "--out", tmp_path / "a", "--resolution", "30")
    assert res.code == 2 and "--resolution 30" in res.err and "multiple of 4" in res.err
    assert not (tmp_path / "a").exists() and not parts_dir(tmp_path / "a").exists()
    # A stage-1 LoRA made for another base model.
    other = make_toy_lora(sd, tmp_path / "other", base_model="someone/else")
    res = cli(*run, "--out", tmp_path / "b", "--init-lora", other)
    assert res.code == 2 and "trained for base model 'someone/else'" in res.err
    # Contradictory recipes.
    res = cli(*run, "--out", tmp_path / "c", "--zero-terminal-snr")
    assert res.code == 2 and "v_prediction" in res.err
    res = cli(
        *run, "--out", tmp_path / "c", "--train-unet", "frozen", "--train-text-encoder", "frozen"
    )
    assert res.code == 2 and "nothing to train" in res.err
    # A class folder without images.
    empty = tmp_path / "data"
    for name in ("water", "desert"):
        (empty / name).mkdir(parents=True)
    (empty / "water" / "a.png").write_bytes(
        (toy_data / "water").glob("*.png").__next__().read_bytes()
    )
    res = cli("finetune", empty, "--model", sd, "--out", tmp_path / "d", *FAST)
    assert res.code == 2 and "desert" in res.err
    # Images smaller than the resolution: upscaled, with a warning.
    res = cli(
        *run, "--out", tmp_path / "e", "--resolution", "64", "--max-steps", "1", "--batch-size", "2"
    )
    assert res.code == 0, res.err
    assert "smaller than 64 px" in res.err
    # An existing output is not replaced silently.
    res = cli(*run, "--out", tmp_path / "e", "--max-steps", "1")
    assert res.code == 2 and "already exists" in res.err


def test_data_parallel_two_processes_write_one_output(toy_models, toy_data, tmp_path) -> None:
    """torchrun (what `accelerate launch` starts) with 2 CPU processes over gloo."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "geosynth",
        "finetune",
        str(toy_data),
        "--model",
        str(toy_models["sd"]),
        "--out",
        str(out),
        *FAST,
        "--max-steps",
        "2",
        "--json",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count('"out":') == 1  # only rank 0 reports
    card = json.loads((out / "geosynth.json").read_text())
    assert card["steps"] == 2
    # Two processes of batch 4 per step: 2 steps cover 16 samples, i.e. 16/30 of an epoch.
    rows = (out / "loss.csv").read_text().splitlines()
    assert rows[-1].split(",")[1] == str(round(16 / 30, 6))


def test_full_text_encoder_with_token_and_checkpointing(
    toy_models, toy_data, tmp_path, cli
) -> None:
    """A fully trained text encoder carries the new token itself (no learned_embeds file)."""
    from transformers import AutoTokenizer, CLIPTextModel

    sd = str(toy_models["sd"])
    out = tmp_path / "te"
    res = _finetune(
        cli,
        toy_data,
        sd,
        out,
        "--max-steps",
        "2",
        "--train-unet",
        "frozen",
        "--train-text-encoder",
        "full",
        "--learn-token",
        "<sar>",
        "--gradient-checkpointing",
    )
    assert res.code == 0, res.err
    card = json.loads((out / "geosynth.json").read_text())
    assert set(card["files"]) == {"text_encoder", "tokenizer"}
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    te = CLIPTextModel.from_pretrained(out / "text_encoder")
    assert te.get_input_embeddings().weight.shape[0] == len(tok)
    assert len(tok.encode("<sar>", add_special_tokens=False)) == 1
    row = _generate_water(cli, sd, out, tmp_path / "gen")
    assert row["prompt"] == "a satellite photo of a <sar> water"


def test_report_to_tensorboard_logs_every_step_beside_the_output(
    cli, toy_models, toy_data, tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "lora"
    args = ["finetune", toy_data, "--model", toy_models["sd"], "--out", out, *FAST]
    res = cli(*args, "--max-steps", "3", "--report-to", "tensorboard")
    assert res.code == 0, res.err
    events = list((tmp_path / "lora.logs").rglob("events.out.tfevents.*"))
    assert events, sorted(p.name for p in (tmp_path / "lora.logs").rglob("*"))
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    losses = [e.value for e in acc.Scalars("loss")]
    rows = (out / "loss.csv").read_text().splitlines()[1:]
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3]
    assert losses == pytest.approx([float(r.split(",")[2]) for r in rows], rel=1e-6)
    assert not any(p.name.startswith("events") for p in out.rglob("*"))

    base = ["finetune", toy_data, "--model", toy_models["sd"]]
    res = cli(*base, "--out", tmp_path / "x", "--report-to", "mlflowz")
    assert res.code == 2 and "--report-to mlflowz" in res.err and not (tmp_path / "x").exists()
