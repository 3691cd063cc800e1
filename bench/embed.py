"""Benchmark: `embed` throughput (images/s) with DINOv2-base's architecture, end to end.

A random-weight ``Dinov2Model`` with facebook/dinov2-base's shape (ViT-B/14, 224 px crop after a
256 px resize, the hub processor's settings) is saved and loaded like any model directory; toy
64 px images are decoded, preprocessed in DataLoader workers and embedded through the library
call `geosynth embed` uses. Speed does not depend on the weights.

    python bench/embed.py                               # CPU, 128 images
    python bench/embed.py --device cuda --images 4096 --batch-size 256 --workers 8
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from geosynth.data import load_dataset
from geosynth.features.embed import embed_dataset
from geosynth.features.spec import create_extractor
from geosynth.toy import make_toy_dataset


def dinov2_base_random(out: Path) -> Path:
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config()).save_pretrained(out, safe_serialization=True)  # base: 768 x 12
    BitImageProcessor(
        size={"shortest_edge": 256},
        crop_size={"height": 224, "width": 224},
        do_center_crop=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", default="fp32", help="comma list of fp32, fp16, bf16")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    model = dinov2_base_random(root / "dinov2-base-random")
    per_class = max(1, args.images // 6)
    ds = load_dataset(make_toy_dataset(root / "data", per_class=per_class, size=64, seed=0))
    for prec in args.precisions.split(","):
        ex = create_extractor(str(model), device=args.device, precision=prec)
        warm = ds.subset(range(min(len(ds), args.batch_size)))
        embed_dataset(ex, warm, batch_size=args.batch_size)  # kernels, allocator, workers' import
        t = time.perf_counter()
        emb = embed_dataset(ex, ds, batch_size=args.batch_size, num_workers=args.workers)
        seconds = time.perf_counter() - t
        row = {
            "model": "dinov2-base (random weights)",
            "device": args.device,
            "precision": prec,
            "images": len(ds),
            "batch_size": args.batch_size,
            "workers": args.workers,
            "seconds": round(seconds, 2),
            "images_per_s": round(len(ds) / seconds, 1),
            "dim": int(emb.embeddings.shape[1]),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
