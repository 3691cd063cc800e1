"""SD 2.1-base at its real size (exact component configs, random weights) through the commands.

Runs ``finetune`` (LoRA r16 on UNet + text encoder, per-class LoRAs; again with gradient
checkpointing), ``channel-means``, ``generate`` (leak-aligned noise, two classes, fused LoRAs) and
``cluster-plora --train-loras`` on the CPU at a small resolution with few steps, each as its own
process, and prints wall time and peak RSS (``getrusage`` of the child) per step. Results go to
docs/benchmarks.md ("SD 2.1-base size on the CPU"). Needs about 12 GB of free RAM and 6 GB disk.
The steps are ``bench/realsize.py``'s, which the slow tests (tests/test_real_size.py) also run;
``--family`` picks another family of its ``FAMILIES``: ``--family sdxl`` runs SDXL base's exact
configurations (``bench/sdxl.py``; finetune also with bf16 frozen weights; docs/benchmarks.md,
"SDXL base size on the CPU"), which needs about 17 GB of free RAM and 15 GB of disk.

    python bench/sd21_cpu.py WORK_DIR [--resolution 64] [--steps 2] [--family sd21]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from realsize import FAMILIES, run, table  # bench/ is on sys.path when a bench script runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2, help="optimiser / sampling steps")
    ap.add_argument("--family", choices=sorted(FAMILIES), default="sd21")
    opts = ap.parse_args()
    rows = run(FAMILIES[opts.family], opts.work, resolution=opts.resolution, steps=opts.steps)
    print()
    print(table(rows, opts.resolution, opts.steps))


if __name__ == "__main__":
    main()
