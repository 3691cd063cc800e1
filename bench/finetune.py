"""Benchmark: geosynth finetune vs the plain diffusers LoRA training loop, same settings.

Both train LoRA (rank 16, alpha 16) on the UNet attention projections and the text encoder (or,
with --text-encoder frozen, the UNet only, as diffusers' train_text_to_image_lora.py does), with
AdamW and batch B at resolution R, for S steps. The plain loop is what diffusers' LoRA training
script does per step: VAE-encode the batch, encode the prompts, noise, UNet, loss, step. geosynth
encodes latents once (the frozen encoder's posterior, sampled every step), encodes each prompt
once while the text encoder is frozen, keeps frozen weights in half precision and the UNet
channels-last on GPU, and with --compile runs the UNet through torch.compile. Each variant runs
in its own process so peak memory is its own; variant geosynth-nchw is geosynth with the default
memory layout (what channels-last brings). geosynth also identifies the base model by a digest of
its weights (SHA-256 of 5.2 GB at SD 2.1 size); every run starts with an empty digest cache, as
on a model's first use, and the digest's seconds are listed apart (they are not training steps).

    python bench/finetune.py --model toy                       # CPU, toy pipeline
    python bench/finetune.py --model sd21-random --device cuda --resolution 512 --batch-size 8
        [--gradient-checkpointing] [--text-encoder frozen] [--compile]
        [--variants plain,geosynth,geosynth-nchw]              # SD 2.1-base shapes, random weights
    python bench/finetune.py --model sdxl-random --device cuda --resolution 1024 --batch-size 2
        --precision bf16 --gradient-checkpointing              # SDXL base shapes (bench/sdxl.py)

With an SDXL model both loops put a LoRA on both text encoders (unless --text-encoder frozen) and
condition the UNet on the pooled text and the six size numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = ["plain", "geosynth", "geosynth-nchw"]


def peak_memory(device: torch.device) -> float:
    """Peak GPU memory allocated (GB), or the process's peak RSS on CPU (GB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def run_geosynth(args) -> dict:
    from geosynth.data import load_dataset
    from geosynth.diffusion.training.finetune import finetune
    from geosynth.diffusion.training.recipe import Recipe

    device = torch.device(args.device)
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GEOSYNTH_CACHE"] = str(Path(tmp) / "cache")  # first use: nothing cached
        recipe = Recipe(
            resolution=args.resolution,
            batch_size=args.batch_size,
            max_steps=args.warmup + args.steps,
            checkpoint_every=10**9,
            gradient_checkpointing=args.gradient_checkpointing,
            mixed_precision=args.precision,
            text_encoder=args.text_encoder,
        )
        finetune(
            load_dataset(args.data),
            Path(tmp) / "out",
            recipe,
            model=args.model,
            on_step=lambda info: stamps.append(time.perf_counter()),
            log=lambda s: None,
            device=args.device,
            compile_unet=args.compile,
            channels_last=False if args.variant == "geosynth-nchw" else None,
        )
        prov = json.loads((Path(tmp) / "out" / "provenance.json").read_text())
    timed = stamps[args.warmup :]
    return {
        "variant": args.variant + (" (compiled)" if args.compile else ""),
        "steps_per_s": (len(timed) - 1) / (timed[-1] - timed[0]),
        "peak_gb": peak_memory(device),
        "digest": prov["extra"]["model_digest"],
    }


def _plain_prompts(pipe, prompts: list[str], device: torch.device):
    """The UNet's text conditioning as diffusers' LoRA scripts compute it: SD's last hidden
    states; for SDXL (two encoders) the penultimate states of both, concatenated, and the
    second encoder's pooled projection (None for SD)."""
    pairs = [(pipe.tokenizer, pipe.text_encoder)]
    if getattr(pipe, "text_encoder_2", None) is None:
        ids = _ids(pipe.tokenizer, prompts, device)
        return pipe.text_encoder(ids)[0], None
    pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
    hidden, pooled = [], None
    for tok, te in pairs:
        out = te(_ids(tok, prompts, device), output_hidden_states=True)
        hidden.append(out.hidden_states[-2])
        pooled = out[0]
    return torch.cat(hidden, dim=-1), pooled


def _ids(tok, prompts: list[str], device: torch.device) -> torch.Tensor:
    return tok(
        prompts,
        padding="max_length",
        max_length=tok.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)


def run_plain(args) -> dict:
    """diffusers' LoRA recipe, step by step, with nothing cached (for SDXL as
    train_text_to_image_lora_sdxl.py: LoRA on both text encoders, size numbers as time ids, the
    VAE in float32 under fp16 unless its config says it is safe)."""
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from peft import LoraConfig

    from geosynth.data import load_dataset
    from geosynth.diffusion.latents import images_to_tensor
    from geosynth.diffusion.loading import load_sd_pipeline

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    weight_dtype = torch.float32
    if cuda and args.precision != "fp32":
        weight_dtype = torch.bfloat16 if args.precision == "bf16" else torch.float16
    pipe = load_sd_pipeline(args.model, device=device, dtype=weight_dtype)
    unet, vae = pipe.unet, pipe.vae
    tes = [te for te in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if te]
    sdxl = len(tes) == 2
    vae_dtype = weight_dtype
    if sdxl and weight_dtype == torch.float16 and vae.config.get("force_upcast", True):
        vae_dtype = torch.float32
    vae.to(dtype=vae_dtype)
    for m in (unet, *tes, vae):
        m.requires_grad_(False)
    lora = dict(r=16, lora_alpha=16, init_lora_weights="gaussian")
    unet.add_adapter(LoraConfig(target_modules=["to_q", "to_k", "to_v", "to_out.0"], **lora))
    if args.text_encoder == "lora":
        for te in tes:
            te.add_adapter(
                LoraConfig(target_modules=["q_proj", "k_proj", "v_proj", "out_proj"], **lora)
            )
    params = [p for m in (unet, *tes) for p in m.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if args.text_encoder == "lora":
            for te in tes:
                te.gradient_checkpointing_enable()
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    sched = DDPMScheduler.from_pretrained(args.model, subfolder="scheduler")
    ds = load_dataset(args.data)
    pixels = images_to_tensor([ds.image(i) for i in range(len(ds))], args.resolution)
    prompts = [f"a satellite photo of a {ds.class_names[s.label]}" for s in ds.samples]
    # Original size, crop top-left, target size: the chips are already at the resolution.
    time_ids = torch.tensor([[args.resolution] * 2 + [0, 0] + [args.resolution] * 2])
    stamps = []
    for step in range(args.warmup + args.steps):
        idx = [(step * args.batch_size + i) % len(ds) for i in range(args.batch_size)]
        x = pixels[idx].to(device, vae_dtype)
        with torch.no_grad(), torch.autocast(device.type, weight_dtype, enabled=cuda and not sdxl):
            lat = vae.encode(x).latent_dist.sample() * vae.config.scaling_factor
        with torch.autocast(device.type, dtype=weight_dtype, enabled=cuda):
            lat = lat.to(weight_dtype)
            noise = torch.randn_like(lat)
            t = torch.randint(0, 1000, (len(idx),), device=device)
            noisy = sched.add_noise(lat, noise, t)
            cond, pooled = _plain_prompts(pipe, [prompts[i] for i in idx], device)
            added = None
            if sdxl:
                added = {"text_embeds": pooled, "time_ids": time_ids.repeat(len(idx), 1).to(device)}
            pred = unet(noisy, t, cond, added_cond_kwargs=added).sample
            loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
    timed = stamps[args.warmup :]
    return {
        "variant": "plain diffusers loop",
        "steps_per_s": (len(timed) - 1) / (timed[-1] - timed[0]),
        "peak_gb": peak_memory(device),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model",
        default="toy",
        help="toy, toy-sdxl, sd21-random, sdxl-random, or a pipeline id/dir",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--precision", default="auto")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--text-encoder", choices=["lora", "frozen"], default="lora")
    p.add_argument("--compile", action="store_true", help="torch.compile geosynth's UNet")
    p.add_argument(
        "--variants",
        default="plain,geosynth",
        help="comma-separated: plain, geosynth, geosynth-nchw (no channels-last)",
    )
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:  # child process
        fn = run_plain if args.variant == "plain" else run_geosynth
        print(json.dumps(fn(args)))
        return
    from geosynth.toy import make_toy_dataset
    from geosynth.toy.models import make_toy_sd_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.model == "toy":
            args.model = str(make_toy_sd_pipeline(root / "sd", vae_steps=0))
        elif args.model == "toy-sdxl":
            from geosynth.toy import make_toy_sdxl_pipeline

            args.model = str(make_toy_sdxl_pipeline(root / "sd", vae_steps=0))
        elif args.model in ("sd21-random", "sdxl-random"):
            # In its own process: building holds 5+ GB (SDXL: 10+ GB) that this parent would
            # keep resident while the variants run.
            script = Path(__file__).with_name(args.model.removesuffix("-random") + ".py")
            subprocess.run([sys.executable, str(script), str(root / "sd")], check=True)
            args.model = str(root / "sd")
        data = make_toy_dataset(root / "data", per_class=4, size=args.resolution, seed=0)
        results = []
        variants = args.variants.split(",")
        if variants[0] != "plain" or not set(variants) <= set(VARIANTS):
            p.error(f"--variants: plain first, then some of {', '.join(VARIANTS[1:])}")
        for variant in variants:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--variant", variant]
            cmd += ["--data", str(data), "--model", args.model]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    base = results[0]["steps_per_s"]
    for r in results:
        digest = r.get("digest")
        print(
            f"{r['variant']:>25}: {r['steps_per_s']:.3f} steps/s, peak {r['peak_gb']:.2f} GB, "
            f"{r['steps_per_s'] / base:.2f}x plain"
            + ("" if digest is None else f"; weight digest {digest['seconds']:.1f} s apart")
        )


if __name__ == "__main__":
    main()
