"""``geosynth cluster-plora``: prototype LoRAs for imbalanced classes (seed 001's pLoRA)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth.artifacts import Provenance, load_embeddings
from geosynth.cli.finetune import parse_init_lora
from geosynth.cli.options import (
    ClassesOpt,
    DatasetArg,
    JsonOpt,
    SeedOpt,
    ShotsOpt,
    SplitOpt,
    dataset_from_options,
    split_list,
)
from geosynth.cli.output import LiveProgress, message, print_json, print_table, track
from geosynth.defaults import FEATURE_MODEL, PROMPT_TEMPLATE, SD_MODEL
from geosynth.diffusion.training.recipe import Recipe
from geosynth.errors import GeosynthError
from geosynth.features.resolve import resolve_embeddings
from geosynth.plora.build import (
    check_features,
    cluster_name,
    cluster_plora,
    finetune_commands,
    train_clusters,
)


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
    train: Annotated[
        bool, typer.Option("--train", help="Fine-tune the K cluster LoRAs now.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Keep OUT's clusters; train what is missing.")
    ] = False,
    model: Annotated[str, typer.Option("--model", help="Base pipeline for the LoRAs.")] = SD_MODEL,
    rank: Annotated[int, typer.Option("--rank", help="Cluster LoRA rank (seed 001: 4).")] = 4,
    alpha: Annotated[float | None, typer.Option("--alpha", help="Default: the rank.")] = None,
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
    as_json: JsonOpt = False,
) -> None:
    """Cluster all images regardless of class, and mix one LoRA per cluster per class.

    Writes OUT/clusters/cluster_<j>/ (datasets with their class labels), assignments.json,
    weights.json (bias scores b_ij = N(c_i, p_j) / sum_i' N(c_i', p_j), w_i = b_i / |b_i|_1)
    and weights-uniform.json (1/K). With --train it fine-tunes the K LoRAs into OUT/loras/;
    without, it prints the K finetune commands. Then: generate --lora-weights OUT/weights.json.

    [bold]Example[/bold]: geosynth cluster-plora sar-ships/ --k 4 --init-lora ors-lora/ --train --out plora/
    """
    recipe = Recipe(
        rank=rank,
        alpha=alpha if alpha is not None else float(rank),
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        resolution=resolution,
        offset_noise=offset_noise,
        offset_noise_convention=offset_noise_convention,
        prompt_template=prompt_template,
        lora_targets=lora_targets,
        init_loras=[parse_init_lora(s) for s in (init_lora or [])],
        seed=seed,
    )
    recipe.check()
    summary = None
    if resume and (out / "assignments.json").is_file():
        message(f"keeping the clusters in {out}")
    else:
        if out.exists():
            raise GeosynthError(f"--out {out}: already exists; choose a new path (or --resume)")
        ds = dataset_from_options(dataset, split, classes, shots, seed)
        if embeddings is not None:
            x = check_features(load_embeddings(embeddings), ds, f"--embeddings {embeddings}")
            feature_model = str(embeddings)
        else:
            emb = resolve_embeddings(
                dataset,
                features=features,
                split=split,
                classes=split_list(classes),
                shots=shots,
                seed=seed,
                track=track,
                log=message,
                dataset=ds,
            )
            x = check_features(emb, ds, f"--features {features}")
            feature_model = features
        prov = Provenance.start("cluster-plora", seeds={"seed": seed}, features=feature_model)
        prov.inputs[f"dataset:{dataset}"] = ds.fingerprint()
        summary = cluster_plora(
            ds,
            x,
            out,
            k=k,
            seed=seed,
            restarts=restarts,
            feature_model=feature_model,
            provenance=prov,
        )
    commands = finetune_commands(out, model, recipe)
    trained = []
    if train:
        live = LiveProgress()
        trained = [
            str(p) for p in train_clusters(out, model, recipe, track=live.track, log=message)
        ]
    if as_json:
        print_json({"summary": summary, "commands": commands, "trained": trained})
        return
    if summary is not None:
        cols = [cluster_name(j) for j in range(summary["k"])]
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
    if not train:
        message("train the cluster LoRAs with (or rerun with --train):")
        for cmd in commands:
            typer.echo(cmd)
    message(f"then: geosynth generate --model {model} --lora-weights {out / 'weights.json'} ...")
