"""``geosynth cluster-plora``: prototype LoRAs for imbalanced classes (seed 001's pLoRA)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth import build_plora
from geosynth.cli.options import (
    ClassesOpt,
    CompileOpt,
    DatasetArg,
    DeviceOpt,
    JsonOpt,
    SeedOpt,
    ShotsOpt,
    SplitOpt,
    split_list,
)
from geosynth.cli.output import LiveProgress, message, print_json, print_table, track
from geosynth.defaults import FEATURE_MODEL, PROMPT_TEMPLATE, SD_MODEL

#: Library parameters that this command's options feed under other names (cli/errors.py).
LIBRARY_PARAMS = {
    "rank": "--lora-rank",
    "alpha": "--lora-alpha",
    "init_loras": "--init-lora",
    "compile_unet": "--compile",
}


def cluster_plora_cmd(
    dataset: DatasetArg,
    out: Annotated[Path, typer.Option("--out", help="Output directory.", show_default=False)],
    k: Annotated[int, typer.Option("--k", help="Number of clusters (prototype LoRAs).")] = 4,
    features: Annotated[
        str, typer.Option("--features", help="Feature extractor for clustering.")
    ] = FEATURE_MODEL,
    embeddings: Annotated[
        Path | None,
        typer.Option(
            "--embeddings", help="Use this embeddings file (rows = the dataset's images)."
        ),
    ] = None,
    restarts: Annotated[int, typer.Option("--restarts", min=1, help="K-Means restarts.")] = 10,
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    shots: ShotsOpt = None,
    seed: SeedOpt = 0,
    train_loras: Annotated[
        bool, typer.Option("--train-loras", help="Fine-tune the K cluster LoRAs now.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Keep OUT's clusters; train what is missing.")
    ] = False,
    model: Annotated[str, typer.Option("--model", help="Base pipeline for the LoRAs.")] = SD_MODEL,
    lora_rank: Annotated[
        int, typer.Option("--lora-rank", help="Cluster LoRA rank (seed 001: 4).")
    ] = 4,
    lora_alpha: Annotated[
        float | None, typer.Option("--lora-alpha", help="Default: the rank.")
    ] = None,
    device: DeviceOpt = None,
    epochs: Annotated[int, typer.Option("--epochs")] = 200,
    max_steps: Annotated[int | None, typer.Option("--max-steps")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    lr: Annotated[float, typer.Option("--lr")] = 1e-4,
    resolution: Annotated[int | None, typer.Option("--resolution")] = None,
    offset_noise: Annotated[float, typer.Option("--offset-noise")] = 0.0,
    offset_noise_convention: Annotated[
        str, typer.Option("--offset-noise-convention", help="std or variance (see finetune).")
    ] = "std",
    prompt_template: Annotated[
        str,
        typer.Option(
            "--prompt-template",
            help="Training prompt, e.g. 'a SAR image of a {} ship' (seed 001's pLoRA).",
        ),
    ] = PROMPT_TEMPLATE,
    lora_targets: Annotated[
        str,
        typer.Option(
            "--lora-targets",
            help="attention, cross-attention-qkv (2LoRA), attention-ff or module names.",
        ),
    ] = "attention",
    init_lora: Annotated[
        list[str] | None,
        typer.Option("--init-lora", help="DIR[:weight]: stage-1 LoRA(s) to train on top of."),
    ] = None,
    compile: CompileOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Cluster all images regardless of class, and mix one LoRA per cluster per class.

    Writes OUT/clusters/cluster_<j>/ (datasets with their class labels), assignments.json,
    weights.json (bias scores b_ij = N(c_i, p_j) / sum_i' N(c_i', p_j), w_i = b_i / |b_i|_1)
    and weights-uniform.json (1/K). With --train-loras it fine-tunes the K LoRAs into OUT/loras/;
    without, it prints the K finetune commands. Then: generate --lora-weights OUT/weights.json.

    \b
    Example:
      geosynth cluster-plora sar-ships/ --k 4 --init-lora ors-lora/ --train-loras --out plora/
    """
    recipe = dict(
        rank=lora_rank,
        alpha=lora_alpha if lora_alpha is not None else float(lora_rank),
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        resolution=resolution,
        offset_noise=offset_noise,
        offset_noise_convention=offset_noise_convention,
        prompt_template=prompt_template,
        lora_targets=lora_targets,
        init_loras=init_lora or [],
        seed=seed,
    )
    live = LiveProgress()
    result = build_plora(
        dataset,
        out,
        k=k,
        features=features,
        embeddings=embeddings,
        restarts=restarts,
        split=split,
        classes=split_list(classes),
        shots=shots,
        seed=seed,
        train_loras=train_loras,
        resume=resume,
        model=model,
        recipe=recipe,
        device=device,
        compile_unet=compile,
        track=live.track if train_loras else track,
        log=message,
    )
    summary, trained, commands = result["summary"], result["trained"], result["commands"]
    if as_json:
        print_json({"summary": summary, "commands": commands, "trained": trained})
        return
    if summary is not None:
        cols = result["clusters"]
        rows = [
            (
                c,
                *[
                    f"{n} ({w:.2f})"
                    for n, w in zip(summary["counts"][i], summary["weights"][i], strict=True)
                ],
            )
            for i, c in enumerate(summary["class_names"])
        ]
        print_table(
            f"images per class and cluster (weight) - inertia {summary['inertia']:.4g}",
            ["class", *cols],
            rows,
        )
    if not train_loras:
        message("train the cluster LoRAs with (or rerun with --train-loras):")
        for cmd in commands:
            typer.echo(cmd)
    message(f"then: geosynth generate --model {model} --lora-weights {out / 'weights.json'} ...")
