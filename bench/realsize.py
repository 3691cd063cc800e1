"""Real-size runs on the CPU: a model family's exact component configs with random weights, through
finetune, channel-means, generate and cluster-plora, each step in its own process.

Shared by ``bench/sd21_cpu.py`` (wall time and peak RSS for docs/benchmarks.md) and the slow
tests (``tests/test_real_size.py``, run by ``make test-all``), so that a fault that only shows at
the real size is a regression and not only a bench result. A family is one entry of
:data:`FAMILIES`: the script that builds its pipeline and what its steps need beyond the common
options; the tests run every entry.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Family:
    """How to build one family's real-size pipeline and run its steps."""

    name: str
    detected: str  # the family geosynth reads from its files (recorded in every card)
    build: str  # a script in bench/ run as ``python SCRIPT OUT_DIR``
    weights_gb: float  # the saved pipeline's size (for disk checks)
    ram_gb: float  # free memory its steps need (the largest peak RSS measured, with a margin)
    finetune: tuple[str, ...] = ("--lora-rank", "16", "--train-text-encoder", "lora")
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)  # more options per step
    #: More finetune runs (one LoRA, gradient checkpointing), one per precision: frozen weights
    #: in that half precision with float32 LoRA factors, as on a GPU.
    precisions: tuple[str, ...] = ()


#: The families run at real size. SD 2.1-base: UNet 865.9 M, OpenCLIP ViT-H text encoder
#: 340.4 M (23 layers), VAE 83.7 M, 5.2 GB of float32 safetensors. SDXL base 1.0: UNet
#: 2,567.5 M, CLIP ViT-L 123.1 M + OpenCLIP ViT-bigG with projection 694.7 M (``--train-text-encoder
#: lora`` puts a LoRA on both), VAE 83.7 M, 13.9 GB of float32 safetensors; its finetune runs
#: in float32 and again with bf16 frozen weights.
FAMILIES: dict[str, Family] = {
    "sd21": Family("sd21", "sd2", build="sd21.py", weights_gb=5.2, ram_gb=11.4),
    "sdxl": Family(
        "sdxl", "sdxl", build="sdxl.py", weights_gb=13.9, ram_gb=18.0, precisions=("bf16",)
    ),
}


@dataclass(frozen=True)
class Step:
    name: str
    args: tuple[str, ...]
    out: str  # relative to the work folder


@dataclass(frozen=True)
class Row:
    name: str
    wall_s: float
    peak_rss_gib: float


def environment(work: Path) -> dict[str, str]:
    """Offline, with the weight-digest cache inside ``work`` (the model's first use)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["GEOSYNTH_CACHE"] = str(work / "cache")
    return env


def run_step(name: str, args: list[str], env: dict[str, str]) -> Row:
    """``python -m geosynth ARGS`` in a fresh process: wall seconds and its own peak RSS."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "geosynth", *args], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    row = Row(name, time.perf_counter() - t0, usage.ru_maxrss / 2**20)  # ru_maxrss: KiB
    code = os.waitstatus_to_exitcode(status)
    print(
        f"{name}: rc={code} wall={row.wall_s:.1f}s peak_rss={row.peak_rss_gib:.2f}GiB", flush=True
    )
    if code != 0:
        raise RuntimeError(f"{name} failed (exit code {code})")
    return row


def build(family: Family, out: Path, env: dict[str, str]) -> Path:
    """The family's pipeline with random weights in ``out`` (kept when already there). In its
    own process: a child's peak RSS would otherwise count this one's from before exec."""
    if not (out / "model_index.json").is_file():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(HERE / family.build), str(out)], env=env, check=True)
        print(f"build {family.name}: {time.perf_counter() - t0:.1f}s", flush=True)
    return out


def plan(family: Family, model: Path, work: Path, resolution: int, steps: int) -> list[Step]:
    """finetune (per-class LoRAs, then one LoRA with gradient checkpointing, then the same in
    each of the family's ``precisions``), channel-means,
    generate (leak-aligned, fused per-class LoRAs), cluster-plora --train-loras; batch 1."""
    data, dino = str(work / "data"), str(work / "dinov2")
    common = ("--model", str(model), "--device", "cpu", "--resolution", str(resolution))
    ft = (*family.finetune, "--batch-size", "1", "--max-steps", str(steps))
    gen = ("--lora-dir", str(work / "ft-finetune"), "--noise", "leak-aligned", "--channel-means",
           str(work / "means.safetensors"), "--per-class", "1", "--steps", str(steps),
           "--batch-size", "1", "--fuse-lora")  # fmt: skip
    plora = ("--k", "2", "--features", dino, "--train-loras", "--max-steps", str(steps),
             "--batch-size", "1", "--lora-rank", "16")  # fmt: skip
    steps_ = [
        Step("finetune", ("finetune", data, *common, *ft, "--class-loras"), "ft-finetune"),
        Step(
            "finetune --gradient-checkpointing",
            ("finetune", data, *common, *ft, "--gradient-checkpointing"),
            "ft-gc",
        ),
        *(
            Step(
                f"finetune --gradient-checkpointing --precision {p}",
                ("finetune", data, *common, *ft, "--gradient-checkpointing", "--precision", p),
                f"ft-gc-{p}",
            )
            for p in family.precisions
        ),
        Step("channel-means", ("channel-means", data, *common), "means.safetensors"),
        Step("generate", ("generate", *common, *gen), "synth"),
        Step("cluster-plora --train-loras", ("cluster-plora", data, *common, *plora), "plora"),
    ]
    return [Step(s.name, (*s.args, *family.extra.get(s.name, ())), s.out) for s in steps_]


def run(
    family: Family,
    work: Path,
    *,
    model: Path | None = None,
    resolution: int = 64,
    steps: int = 2,
    skip_done: bool = True,
    on_row: Callable[[Row], None] = lambda row: None,
) -> list[Row]:
    """Build (or reuse ``model``), make the toy data and toy DINOv2, and run every step of
    :func:`plan` into ``work``; a step whose output exists is skipped when ``skip_done``."""
    work.mkdir(parents=True, exist_ok=True)
    env = environment(work)
    model = build(family, model or work / family.name, env)
    if not (work / "data").is_dir():
        run_step("toy data", ["toy", "data", "--out", str(work / "data"), "--per-class", "2",
                              "--classes", "2", "--size", str(resolution)], env)  # fmt: skip
    if not (work / "dinov2").is_dir():
        run_step("toy dinov2", ["toy", "model", "--kind", "dinov2", "--out",
                                str(work / "dinov2")], env)  # fmt: skip
    rows = []
    for step in plan(family, model, work, resolution, steps):
        out = work / step.out
        if skip_done and out.exists():
            print(f"{step.name}: {out} exists, skipped", flush=True)
            continue
        row = run_step(step.name, [*step.args, "--out", str(out)], env)
        rows.append(row)
        on_row(row)
    return rows


def table(rows: list[Row], resolution: int, steps: int) -> str:
    lines = [
        f"| step ({resolution} px, {steps} steps) | wall (s) | peak RSS (GiB) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r.name} | {r.wall_s:.0f} | {r.peak_rss_gib:.1f} |" for r in rows]
    return "\n".join(lines)
