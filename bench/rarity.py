"""Benchmark: exact PRDC + rarity (geosynth) against the ``prdc`` package.

Each measurement runs in its own subprocess so peak memory (max RSS) is attributable. Reports
wall time, peak RSS beyond the features, and the rate of the distance work (2*D flops per pair,
N^2 + M^2 + N*M pairs) against the machine's measured float32 matrix-multiply rate.

    python bench/rarity.py                       # default sizes
    python bench/rarity.py --sizes 20000x10000 --with-prdc
    python bench/rarity.py --device cuda --sizes 1000000x27000 --with-prdc ''   # GPU
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch


def matmul_rate(dim: int = 768, n: int = 4096, reps: int = 5, device: str = "cpu") -> float:
    """float32 GFLOP/s of a (n x dim) @ (dim x n) product, best of ``reps``."""
    if device.startswith("cuda"):
        n *= 4  # a GPU needs a larger product to reach its rate
    a, b = torch.randn(n, dim, device=device), torch.randn(dim, n, device=device)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n * n * dim / best / 1e9


def features(n: int, m: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n, dim), dtype=np.float32)
    fake = rng.standard_normal((m, dim), dtype=np.float32) * 1.1 + 0.1
    return real, fake.astype(np.float32)


def run_one(method: str, n: int, m: int, dim: int, k: int, device: str = "cpu") -> dict[str, float]:
    real, fake = features(n, m, dim)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    if method == "prdc":
        from prdc import compute_prdc

        out = {key: float(v) for key, v in compute_prdc(real, fake, k).items()}
    else:
        from geosynth.metrics.manifold import manifold_metrics

        res = manifold_metrics(
            torch.from_numpy(real), torch.from_numpy(fake), k=k, rarity_k=3, device=device
        )
        out = {
            key: res.summary()[key]
            for key in ("precision", "recall", "density", "coverage", "rarity_mean")
        }
    seconds = time.perf_counter() - t  # results are on the CPU: the GPU work has finished
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cuda:
        # On a GPU the features live in device memory; report the device's peak instead.
        peak, base = torch.cuda.max_memory_allocated() / 2**20, 0.0
    return {"seconds": seconds, "peak_mb_beyond_features": peak - base, **out}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5000x2500,20000x10000,100000x27000")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument(
        "--with-prdc", default="5000x2500,20000x10000", help="sizes at which prdc runs too"
    )
    ap.add_argument("--one", choices=["prdc", "geosynth"])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (geosynth only; prdc is numpy)")
    args = ap.parse_args()
    if args.one:
        n, m = map(int, args.sizes.split("x"))
        print(json.dumps(run_one(args.one, n, m, args.dim, args.k, args.device)))
        return
    torch.set_num_threads(torch.get_num_threads())
    rate = matmul_rate(args.dim, device=args.device)
    print(f"{args.device} float32 matmul: {rate:.1f} GFLOP/s ({torch.get_num_threads()} threads)")
    prdc_sizes = set(args.with_prdc.split(",")) if args.with_prdc else set()
    print(
        "| N reference | M target | method | seconds | peak MB beyond features | distance GFLOP/s "
        "| % of matmul | precision | recall | density | coverage |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in args.sizes.split(","):
        n, m = map(int, size.split("x"))
        flops = 2 * args.dim * (n * n + m * m + n * m)
        for method in (["prdc"] if size in prdc_sizes else []) + ["geosynth"]:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    method,
                    "--sizes",
                    size,
                    "--dim",
                    str(args.dim),
                    "--k",
                    str(args.k),
                    "--device",
                    args.device if method == "geosynth" else "cpu",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            gf = flops / r["seconds"] / 1e9
            print(
                f"| {n} | {m} | {method} | {r['seconds']:.1f} | {r['peak_mb_beyond_features']:.0f} "
                f"| {gf:.1f} | {100 * gf / rate:.0f}% | {r['precision']:.4f} | {r['recall']:.4f} "
                f"| {r['density']:.4f} | {r['coverage']:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
