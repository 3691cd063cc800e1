"""bench/validate.py's model stages: ``vae`` (a small autoencoder on real EuroSAT and an
SD-shaped pipeline around it), ``variants`` (class-conditional UNets from scratch with equal
budgets, continued across runs by ``--unet-steps``) and ``means`` (per-class latent channel
means for leak-aligned noise)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from validate_data import (
    EUROSAT,
    RUN,
    Size,
    _read,
    class_list,
    geosynth,
    link_splits,
    log,
    run_parallel,
    variants,
)


def unet_config(size: Size, latent: int, text_dim: int) -> dict[str, Any]:
    """A small SD-shaped class-conditional UNet: cross-attention on the lower resolution(s)."""
    n = len(size.unet_blocks)
    return {
        "sample_size": latent,
        "in_channels": 4,
        "out_channels": 4,
        "layers_per_block": 1,
        "block_out_channels": list(size.unet_blocks),
        "down_block_types": ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (n - 1),
        "up_block_types": ["CrossAttnUpBlock2D"] * (n - 1) + ["UpBlock2D"],
        "cross_attention_dim": text_dim,
        "attention_head_dim": 8,
        "norm_num_groups": min(16, size.unet_blocks[0]),
        "use_linear_projection": True,
    }


def stage_vae(work: Path, size: Size) -> None:
    from geosynth.data import load_dataset
    from geosynth.diffusion.vae import VaeRecipe, make_domain_pipeline, train_vae

    classes = size.train_classes or class_list(Size(**{**asdict(size), "classes": None}))
    data = link_splits(work / "data/train-images", size.splits, classes)
    if not (work / "vae").is_dir():
        recipe = VaeRecipe(
            resolution=size.resolution,
            block_out_channels=size.vae_blocks,
            norm_num_groups=min(16, size.vae_blocks[0]),
            steps=size.vae_steps,
            batch_size=size.vae_batch,
            lr=2e-3,
        )
        held = load_dataset(
            EUROSAT, split="val", classes=classes, shots=size.held_out_shots, seed=0
        )
        summary = train_vae(load_dataset(data), work / "vae", recipe, held_out=held, log=log)
        log(f"VAE reconstruction: {json.dumps(summary['reconstruction'])}")
    if not (work / "sd-base").is_dir():
        factor = 2 ** (len(size.vae_blocks) - 1)
        cfg = unet_config(size, size.resolution // factor, 64)
        (work / "unet.json").write_text(json.dumps(cfg, indent=2))
        make_domain_pipeline(work / "vae", work / "sd-base", cfg)


def _finetune_common(size: Size, steps: int, lr: float) -> list[str]:
    return [
        "--train-unet",
        "full",
        "--train-text-encoder",
        "frozen",
        "--max-steps",
        str(steps),
        "--batch-size",
        str(size.batch_size),
        "--lr",
        str(lr),
        "--resolution",
        str(size.resolution),
        "--checkpoint-every",
        "200",
        "--precision",
        "fp32",
    ]


def model_flags(size: Size) -> dict[str, list[str]]:
    lo, hi = size.offsets
    return {
        "gauss": [],
        f"offset{lo}": ["--offset-noise", str(lo)],
        f"offset{hi}": ["--offset-noise", str(hi)],
        "ztsnr": ["--prediction-type", "v_prediction", "--zero-terminal-snr"],
    }


def trained_steps(ft: Path) -> int:
    """Optimiser steps behind a trained UNet: ``ft-NAME`` holds the first run (its card's
    ``steps``), ``ft-NAME-toN`` a continuation up to N steps in all."""
    if "-to" in ft.name:
        return int(ft.name.rsplit("-to", 1)[1])
    card = _read(ft / "geosynth.json") or {}
    return int(card.get("steps", 0))


def latest_model(work: Path, name: str) -> tuple[Path, Path] | None:
    """(base model, finetune output) of the longest-trained UNet of variant ``name``."""
    runs = [p for p in [work / f"ft-{name}", *work.glob(f"ft-{name}-to*")] if p.is_dir()]
    if not runs:
        return None
    ft = max(runs, key=trained_steps)
    if ft.name == f"ft-{name}":
        return work / "sd-base", ft
    card = _read(ft / "geosynth.json") or {}
    return Path(card.get("base_model", "")), ft  # the pipeline the continuation started from


def continue_base(work: Path, prev: tuple[Path, Path], name: str) -> Path:
    """A model folder that is ``prev``'s pipeline with its trained UNet: what a continuation
    starts from (components linked, nothing copied)."""
    base, ft = prev
    dest = work / f"base-ft-{name}-to{trained_steps(ft)}"
    if dest.is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.mkdir(exist_ok=True)
    for item in base.resolve().iterdir():
        link = tmp / item.name
        if not link.exists() and not link.is_symlink():
            link.symlink_to((ft / "unet" if item.name == "unet" else item).resolve())
    tmp.rename(dest)
    return dest


def stage_variants(work: Path, size: Size) -> None:
    """Equal budgets: each variant's UNet trains from scratch (same seed, data order and steps)
    on the measured classes, the four side by side (``--jobs``). When ``--unet-steps`` asks for
    more steps than the longest cached UNet of a variant has, training continues from that UNet
    (``--init pretrained`` on a pipeline holding it) for the missing steps, into
    ``ft-NAME-toN``: a longer model is built across several runs. The continuation's learning
    rate restarts its schedule (warm-up, cosine) and its data order is a fresh pass, so N steps
    built as 600 + 400 are not bit-identical to 1000 in one run."""
    data = link_splits(work / "data/measured-classes", size.splits, class_list(size))
    cmds = []
    needed = {v.model for v in variants(size) if RUN.only is None or v.name in RUN.only}
    for name, flags in model_flags(size).items():
        if name not in needed:  # --variant: only the models those sets need
            continue
        prev = latest_model(work, name)
        done = trained_steps(prev[1]) if prev else 0
        if prev and done >= size.unet_steps:
            continue
        if prev is None or not (work / f"ft-{name}").is_dir():
            out, model, init, steps = (
                work / f"ft-{name}",
                work / "sd-base",
                "scratch",
                size.unet_steps,
            )
            init_flags = ["--init", init, "--unet-config", str(work / "unet.json")]
        else:
            out = work / f"ft-{name}-to{size.unet_steps}"
            model, steps = continue_base(work, prev, name), size.unet_steps - done
            init_flags = ["--init", "pretrained"]
            log(f"finetune {name}: continuing from {prev[1].name} ({done} steps) for {steps}")
        resume = ["--resume"] if out.with_name(out.name + ".parts").is_dir() else []
        args = [
            "finetune",
            str(data),
            "--model",
            str(model),
            *init_flags,
            *_finetune_common(size, steps, size.unet_lr),
            *flags,
            *resume,
            "--out",
            str(out),
        ]
        cmds.append((f"finetune {name}", [sys.executable, "-m", "geosynth", *args]))
    run_parallel(cmds)


def stage_means(work: Path, size: Size) -> None:
    if not (work / "means.safetensors").is_file():
        geosynth(
            "channel-means",
            str(EUROSAT),
            "--split",
            "train",
            "--classes",
            ",".join(class_list(size)),
            "--model",
            str(work / "sd-base"),
            "--resolution",
            str(size.resolution),
            "--out",
            str(work / "means.safetensors"),
        )


def trained_models(work: Path, size: Size) -> dict[str, tuple[Path, Path | None]]:
    models = {}
    for name in model_flags(size):
        latest = latest_model(work, name)
        if latest is not None:
            models[name] = latest
    return models
