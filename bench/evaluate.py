"""Benchmark: the pieces of ``geosynth evaluate`` that grow with the data.

* Fréchet distance at D = 2048 (FID Inception size): geosynth's symmetric eigen route against
  ``scipy.linalg.sqrtm`` on S1 @ S2 (pytorch-fid's route) and torchmetrics' ``eigvals`` route,
  with the values each returns (they must agree) for a full-rank and a rank-deficient case;
* KID at its defaults (100 subsets of 1000, D = 2048);
* the pixel scan (channel stats, amplitude sample, GLCM at 64 levels) in images per second on
  real EuroSAT 64 px images.

    python bench/evaluate.py
    python bench/evaluate.py --dim 2048 --n 5000 --eurosat ../shared/data/eurosat-rgb
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from geosynth.metrics.frechet import frechet_distance, gaussian_stats, kid


def _timed(fn, reps: int = 3) -> tuple[float, float]:
    best, value = float("inf"), float("nan")
    for _ in range(reps):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    return best, float(value)


def _scipy_route(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def _torchmetrics_route(mu1, s1, mu2, s2) -> float:
    from torchmetrics.image.fid import _compute_fid

    t = [torch.from_numpy(v) for v in (mu1, s1, mu2, s2)]
    return float(_compute_fid(*t))


def bench_fid(n: int, m: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    real = rng.standard_normal((n, dim)) @ mix
    synth = rng.standard_normal((m, dim)) @ mix * 1.1 + 0.05
    stats = (*gaussian_stats(real), *gaussian_stats(synth))
    print(f"## Fréchet distance, D={dim}, N={n} real x M={m} synthetic")
    print("| route | seconds | value |\n| --- | --- | --- |")
    for name, fn in (
        ("geosynth (eigh of A S2 A)", lambda: frechet_distance(*stats)),
        ("scipy.linalg.sqrtm(S1 S2)", lambda: _scipy_route(*stats)),
        ("torchmetrics (eigvals of S1 S2)", lambda: _torchmetrics_route(*stats)),
    ):
        sec, val = _timed(fn, reps=2)
        print(f"| {name} | {sec:.2f} | {val:.6f} |")


def bench_kid(n: int, dim: int) -> None:
    rng = np.random.default_rng(1)
    real = rng.standard_normal((n, dim))
    synth = rng.standard_normal((n, dim)) * 1.05
    t = time.perf_counter()
    res = kid(real, synth)
    print(
        f"\nKID, D={dim}, {n} x {n}, {res['subsets']} subsets of {res['subset_size']}: "
        f"{time.perf_counter() - t:.2f} s (mean {res['mean']:.5f}, std {res['std']:.5f})"
    )


def bench_scan(eurosat: Path) -> None:
    from geosynth.data import load_dataset
    from geosynth.metrics.pixels import scan_images

    ds = load_dataset(eurosat, split="val")
    t = time.perf_counter()
    scan_images(ds, greyscale=False, glcm_levels=64)
    sec = time.perf_counter() - t
    print(
        f"\npixel scan of {len(ds)} EuroSAT val images: {sec:.2f} s ({len(ds) / sec:.0f} images/s)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--eurosat", type=Path, default=Path("../shared/data/eurosat-rgb"))
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    bench_fid(args.n, args.n // 2, args.dim)
    print()
    bench_fid(1000, 500, args.dim)  # rank-deficient: fewer images than dimensions
    bench_kid(args.n, args.dim)
    if (args.eurosat / "val").is_dir():
        bench_scan(args.eurosat)


if __name__ == "__main__":
    main()
