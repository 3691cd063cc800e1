"""``geosynth filter``: keep the generated images worth training on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth import filter as filter_dataset
from geosynth.cli.options import (
    BatchOpt,
    ClassesOpt,
    DeviceOpt,
    FeaturesOpt,
    JsonOpt,
    PrecisionOpt,
    SplitOpt,
    split_list,
)
from geosynth.cli.output import message, print_json, print_table, track
from geosynth.defaults import FEATURE_MODEL, PROMPT_TEMPLATE

#: Library parameters that this command's options feed under other names (cli/errors.py).
LIBRARY_PARAMS = {"copies": "--no-copies", "use_cache": "--no-cache"}


def filter_cmd(
    synth: Annotated[
        str,
        typer.Argument(help="Generated dataset (what generate writes).", show_default=False),
    ],
    out: Annotated[Path, typer.Option("--out", help="Where the kept subset goes (a new folder).")],
    train: Annotated[
        str | None,
        typer.Option(
            "--train",
            help="The real shots the model was trained on: drop near-copies of them (flips, "
            "rotations, shifts up to 3 px and re-encodes included).",
        ),
    ] = None,
    no_copies: Annotated[
        bool, typer.Option("--no-copies", help="With --train: record copy distances, drop none.")
    ] = False,
    copy_threshold: Annotated[
        float,
        typer.Option(
            "--copy-threshold",
            help="An image is a copy when its distance to a training image is at most this "
            "fraction of that image's distance to its nearest other training image "
            "(docs/filter.md).",
        ),
    ] = 0.5,
    classifier: Annotated[
        str | None,
        typer.Option(
            "--classifier",
            help="clf:DIR, a train-clf output (or its seed-S folder), or clip:REF, zero-shot "
            "CLIP with the class prompts (REF: NAME/PRETRAINED, hf-hub:ID or an open_clip "
            "directory): drop images it does not classify as their intended class.",
        ),
    ] = None,
    prompt_template: Annotated[
        str,
        typer.Option("--prompt-template", help="Class prompt of --classifier clip:REF."),
    ] = PROMPT_TEMPLATE,
    min_confidence: Annotated[
        float | None,
        typer.Option(
            "--min-confidence",
            help="With --classifier: keep images whose intended class has at least this "
            "probability, instead of 'predicted as intended'.",
        ),
    ] = None,
    real: Annotated[
        str | None,
        typer.Option(
            "--real",
            help="Real images: drop generated images outside every k-NN ball of their class's "
            "real images, in --features space (PRDC's manifold).",
        ),
    ] = None,
    real_split: Annotated[
        str | None, typer.Option("--real-split", help="Split of --real when it has splits.")
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="k of the real k-NN balls.")] = 5,
    features: FeaturesOpt = FEATURE_MODEL,
    per_class: Annotated[
        int | None,
        typer.Option(
            "--per-class",
            min=1,
            help="Keep at most N per class: the most confident first (--classifier), else the "
            "closest to the real manifold (--real), else in dataset order.",
        ),
    ] = None,
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
    precision: PrecisionOpt = "auto",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Re-embed even if cached.")] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=0,
            help="Data-loader worker processes that decode the images and compute their copy "
            "descriptors and classifier inputs (per rank); the output is the same for any N.",
        ),
    ] = 0,
    part_size: Annotated[
        int,
        typer.Option(
            "--part-size",
            min=1,
            help="Rows per resumable part of the scores (rounded up to whole batches and to "
            "whole 64-row copy-search blocks).",
        ),
    ] = 1024,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue a killed run from the scores it kept in OUT.parts/ (same settings).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Keep the generated images worth training on: drop memorised copies, off-class and
    off-manifold samples, and cap each class.

    Writes OUT in generate's layout (files copied byte for byte; GeoTIFFs stay native), with the
    scores as filter_* columns of metadata.jsonl and OUT/filter.jsonl recording every image,
    kept or not, with the reason it was dropped.

    Copy distances and confidences are scored in parts kept in OUT.parts/ until OUT is written:
    a killed run continues with --resume. Under torchrun each process scores its own block of
    parts; rank 0 writes OUT, the same bytes as one process.

    \b
    Examples:
      geosynth filter synth/ --train eurosat-16shot/ --out synth-kept/
      geosynth filter synth/ --train shots/ --classifier clf:clf-16shot/seed-0 --per-class 500 \\
          --out synth-kept/
      geosynth filter synth/ --classifier clip:ViT-B-16/openai --out synth-kept/
      geosynth filter synth/ --real eurosat/ --real-split train --k 5 --out synth-on-manifold/
      torchrun --nproc-per-node 4 -m geosynth filter synth/ --train shots/ --classifier \\
          clf:clf-16shot/seed-0 --workers 4 --out synth-kept/
    """
    report = filter_dataset(
        synth,
        out,
        train=train,
        copies=not no_copies,
        copy_threshold=copy_threshold,
        classifier=classifier,
        min_confidence=min_confidence,
        prompt_template=prompt_template,
        real=real,
        real_split=real_split,
        features=features,
        k=k,
        per_class=per_class,
        split=split,
        classes=split_list(classes),
        batch_size=batch_size,
        device=device,
        precision=precision,
        use_cache=not no_cache,
        workers=workers,
        part_size=part_size,
        resume=resume,
        track=track,
        log=message,
    )
    if report is None:  # not rank 0: rank 0 reports
        return
    if as_json:
        print_json(report.to_dict())
        return
    print_table(
        f"{synth} -> {out} (kept / dropped per reason)",
        ["class", *report.columns],
        report.table_rows(),
    )
