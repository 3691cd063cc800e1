"""bench/validate.py's shared ground: where the real data is, the run sizes, the synthetic
sets, the run's options and the helpers every stage uses (logging, running geosynth commands,
the class list, the linked training folders). The stages are in ``validate_models``
(autoencoder, UNet variants, channel means), ``validate_arms`` (generation, filtering,
evaluation, classifiers) and ``validate_report``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: the script ``make validate`` runs (child processes of ``--jobs`` run it again)
ENTRY = Path(__file__).resolve().with_name("validate.py")
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


@dataclass
class RunOptions:
    """The command line's settings that the stages read (set once by ``validate.main``)."""

    #: How many independent jobs (variant trainings, generations) run at once (``--jobs``). On
    #: a shared machine each single-threaded process gets its own share of the cores.
    jobs: int = 1
    size_name: str = "full"
    only: list[str] | None = None  # --variant: restrict generate / evaluate / classify to these
    #: where synthetic sets, reports and classifiers go: WORK, or WORK/unetN when --unet-steps
    #: asks for another length than the size's (the trained models stay in WORK, shared)
    results_sub: str = ""


RUN = RunOptions()


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


def results(work: Path) -> Path:
    return work / RUN.results_sub if RUN.results_sub else work


def run_parallel(cmds: list[tuple[str, list[str]]]) -> None:
    """Run commands RUN.jobs at a time (each one thread); fail if any fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    pending, running = list(cmds), []
    while pending or running:
        while pending and len(running) < RUN.jobs:
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


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None
