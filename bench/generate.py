"""Benchmark: geosynth generate vs the plain loop DataDream uses.

The plain loop reloads the pipeline for every class and calls it once per batch of 10 images;
geosynth loads once, batches per class (--batch-size) and writes each image as it finishes. Both
run in this process on the same model, steps and guidance; images/s and peak RSS are reported.

    python bench/generate.py --model toy        # builds the toy pipeline first (CPU)
    python bench/generate.py --model stabilityai/stable-diffusion-2-1-base --resolution 512 --device cuda
    python bench/generate.py --model sd21-random --resolution 512 --device cuda   # no hub needed
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from geosynth.artifacts import Provenance
from geosynth.diffusion.loading import load_sd_pipeline
from geosynth.diffusion.sampling.generate import GenerationSpec, run_generation
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
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        pipe.unet(x, 999, encoder_hidden_states=ctx)
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


def plain_loop(
    model: str,
    classes: list[str],
    per_class: int,
    steps: int,
    size: int,
    device: torch.device,
    dtype: torch.dtype,
) -> float:
    t = time.perf_counter()
    for c in classes:
        pipe = load_sd_pipeline(model, device=device, dtype=dtype)  # reloaded per class
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
    dtype: torch.dtype,
    batch_size: int,
) -> float:
    t = time.perf_counter()
    pipe = load_sd_pipeline(model, device=device, dtype=dtype)
    spec = GenerationSpec(
        model=model,
        classes=classes,
        per_class=per_class,
        prompt_template="a satellite photo of a {}",
        steps=steps,
        resolution=size,
    )
    with tempfile.TemporaryDirectory() as tmp:
        run_generation(
            pipe,
            spec,
            Path(tmp) / "out",
            provenance=Provenance.start("bench"),
            batch_size=batch_size,
        )
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
    args = ap.parse_args()
    model = args.model
    if model == "toy":
        from geosynth.toy import make_toy_sd_pipeline

        model = str(make_toy_sd_pipeline(Path(tempfile.mkdtemp()) / "sd", vae_steps=0))
    elif model == "sd21-random":
        from sd21 import sd21_random  # bench/ is on sys.path when a bench script runs

        model = str(sd21_random(Path(tempfile.mkdtemp()) / "sd"))
    device = torch.device(args.device)
    dtype = pick_dtype(args.precision, device)
    classes = [f"class{i}" for i in range(args.classes)]
    n = args.classes * args.per_class
    base = peak_mb()
    t_plain = plain_loop(model, classes, args.per_class, args.steps, args.resolution, device, dtype)
    t_ours = geosynth_run(
        model, classes, args.per_class, args.steps, args.resolution, device, dtype, args.batch_size
    )
    print(f"{n} images, {args.steps} steps, CFG 2.0, {args.resolution} px, {device}, {dtype}")
    print("| method | seconds | images/s |")
    print("| --- | --- | --- |")
    print(f"| plain loop (reload per class, batches of 10) | {t_plain:.1f} | {n / t_plain:.2f} |")
    print(f"| geosynth (batch {args.batch_size}) | {t_ours:.1f} | {n / t_ours:.2f} |")
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
