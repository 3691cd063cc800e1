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

The stages live beside this script, one file per kind: ``validate_data.py`` (sizes, synthetic
sets, options, shared helpers), ``validate_models.py`` (vae, variants, means),
``validate_arms.py`` (generate, filter, evaluate, classify) and ``validate_report.py``.

``--unet-steps N`` continues every UNet from its longest cached run (``ft-NAME``, then
``ft-NAME-toN``) instead of starting over, so a longer model is built across several runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

# One thread: on a busy machine two threads per process wait on each other at every small
# operator (measured here: 10x slower for these small models). Set OMP_NUM_THREADS to override.
# Set before the stage modules (and torch) are imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from validate_arms import stage_classify, stage_evaluate, stage_filter, stage_generate
from validate_data import EUROSAT, RUN, SIZES, STAGES, Size, log
from validate_models import stage_means, stage_vae, stage_variants
from validate_report import stage_report


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
    RUN.jobs, RUN.size_name, RUN.only = max(1, args.jobs), args.size, args.variant
    size = SIZES[args.size]
    if args.unet_steps is not None and args.unet_steps != size.unet_steps:
        size = Size(**{**asdict(size), "unet_steps": args.unet_steps})
        RUN.results_sub = f"unet{args.unet_steps}"
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
