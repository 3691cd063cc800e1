"""SD 2.1-base at its real size (exact component configs, random weights) through the commands.

Runs ``finetune`` (LoRA r16 on UNet + text encoder, per-class LoRAs; again with gradient
checkpointing), ``channel-means``, ``generate`` (leak-aligned noise, two classes, fused LoRAs) and
``cluster-plora --train`` on the CPU at a small resolution with few steps, each as its own
process, and prints wall time and peak RSS (``getrusage`` of the child) per step. Results go to
docs/benchmarks.md ("SD 2.1-base size on the CPU"). Needs about 12 GB of free RAM and 6 GB disk.

    python bench/sd21_cpu.py WORK_DIR [--resolution 64] [--steps 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_step(name: str, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``python -m geosynth ARGS`` in a fresh process: (wall seconds, peak RSS GiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "geosynth", *args], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    rss_gib = usage.ru_maxrss / 2**20  # ru_maxrss is KiB on Linux
    code = os.waitstatus_to_exitcode(status)
    print(f"{name}: rc={code} wall={wall:.1f}s peak_rss={rss_gib:.2f}GiB", flush=True)
    if code != 0:
        raise SystemExit(f"{name} failed (exit code {code})")
    return wall, rss_gib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2, help="optimiser / sampling steps")
    opts = ap.parse_args()
    work = opts.work
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["GEOSYNTH_CACHE"] = str(work / "cache")
    res, steps = str(opts.resolution), str(opts.steps)
    sd = work / "sd21"
    rows: list[tuple[str, float, float]] = []
    if not (sd / "model_index.json").is_file():
        # In its own process: a child's peak RSS counts its parent's from before exec.
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(HERE / "sd21.py"), str(sd)], env=env, check=True)
        print(f"build: {time.perf_counter() - t0:.1f}s", flush=True)
    data, dino = work / "data", work / "dinov2"
    if not data.is_dir():
        run_step(
            "toy data",
            [
                "toy",
                "data",
                "--out",
                str(data),
                "--per-class",
                "2",
                "--classes",
                "2",
                "--size",
                res,
            ],
            env,
        )
    if not dino.is_dir():
        run_step("toy dinov2", ["toy", "model", "--kind", "dinov2", "--out", str(dino)], env)
    common = ["--model", str(sd), "--device", "cpu", "--resolution", res]
    ft = ["--lora-rank", "16", "--train-text-encoder", "lora", "--batch-size", "1"]
    ft += ["--max-steps", steps]
    plan: list[tuple[str, list[str]]] = [
        ("finetune", ["finetune", str(data), *common, *ft, "--class-loras"]),
        (
            "finetune --gradient-checkpointing",
            ["finetune", str(data), *common, *ft, "--gradient-checkpointing"],
        ),
        ("channel-means", ["channel-means", str(data), *common]),
        (
            "generate",
            [
                "generate",
                *common,
                "--lora-dir",
                "ft-finetune",
                "--noise",
                "leak-aligned",
                "--channel-means",
                "means.safetensors",
                "--per-class",
                "1",
                "--steps",
                steps,
                "--batch-size",
                "1",
                "--fuse-lora",
            ],
        ),
        (
            "cluster-plora --train-loras",
            [
                "cluster-plora",
                str(data),
                *common,
                "--k",
                "2",
                "--features",
                str(dino),
                "--train-loras",
                "--max-steps",
                steps,
                "--batch-size",
                "1",
                "--lora-rank",
                "16",
            ],
        ),
    ]
    outs = {
        "finetune": "ft-finetune",
        "finetune --gradient-checkpointing": "ft-gc",
        "channel-means": "means.safetensors",
        "generate": "synth",
        "cluster-plora --train": "plora",
    }
    for name, args in plan:
        out = work / outs[name]
        if out.exists():
            print(f"{name}: {out} exists, skipped", flush=True)
            continue
        args = [str(work / a) if a in outs.values() else a for a in args]
        wall, rss = run_step(name, [*args, "--out", str(out)], env)
        rows.append((name, wall, rss))
    print(f"\n| step ({res} px, {steps} steps) | wall (s) | peak RSS (GiB) |")
    print("|---|---:|---:|")
    for name, wall, rss in rows:
        print(f"| {name} | {wall:.0f} | {rss:.1f} |")


if __name__ == "__main__":
    main()
