"""``geosynth embed``: features of a dataset or of webdataset shards, to a safetensors file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth import embed as run_embed
from geosynth.cli.options import (
    BatchOpt,
    ClassesOpt,
    DatasetArg,
    DeviceOpt,
    FeaturesOpt,
    JsonOpt,
    PrecisionOpt,
    SeedOpt,
    ShotsOpt,
    SplitOpt,
    split_list,
)
from geosynth.cli.output import message, print_json, track
from geosynth.defaults import FEATURE_MODEL
from geosynth.errors import GeosynthError


def embed(
    dataset: DatasetArg,
    out: Annotated[
        Path, typer.Option("--out", help="Output .safetensors file.", show_default=False)
    ],
    features: FeaturesOpt = FEATURE_MODEL,
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    shots: ShotsOpt = None,
    seed: SeedOpt = 0,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            help="Shards only: keep N samples, a deterministic subset under --seed.",
        ),
    ] = None,
    bands: Annotated[
        str | None,
        typer.Option(
            "--bands",
            help="Embed these bands of native (16-bit, float, multispectral) data: all, or "
            "comma-separated 0-based indices or band names (B04,B03,B02); each standardised "
            "with per-band mean/std (recorded). Needs a timm:NAME model (in_chans).",
        ),
    ] = None,
    band_stats: Annotated[
        str | None,
        typer.Option(
            "--band-stats",
            help="With --bands: the dataset (e.g. the training set) whose per-band mean and std "
            "standardise the input (default: DATASET itself, same selection).",
        ),
    ] = None,
    batch_size: BatchOpt = 64,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=0,
            help="Data-loader worker processes that decode images in parallel (per rank); "
            "for shard directories each worker decodes whole shards.",
        ),
    ] = 0,
    part_size: Annotated[
        int,
        typer.Option(
            "--part-size",
            min=1,
            help="Datasets: rows per resumable part (rounded up to whole batches); a killed "
            "job resumes at its first unfinished part.",
        ),
    ] = 4096,
    device: DeviceOpt = None,
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Embed every image of a dataset, or of a directory of webdataset shards, with a feature model.

    Shard directories (00000.tar with <key>.jpg/.txt/.json, as img2dataset writes LAION) are
    streamed; corrupt samples are skipped and counted; a killed job resumes at the first
    unfinished shard (datasets: at the first unfinished part of --part-size rows).

    Under torchrun / accelerate launch each process embeds its own contiguous block of shards
    (or of parts) on its own GPU, resumable on its own; rank 0 writes OUT, identical row for
    row to a single-process run.

    \b
    Examples:
      geosynth embed ../shared/data/eurosat-rgb --split train --features dinov2-base --out eurosat.safetensors
      torchrun --nproc-per-node 8 -m geosynth embed laion-shards/ --workers 6 --out laion.safetensors
    """
    if out.suffix != ".safetensors":
        raise GeosynthError(f"--out {out}: expected a path ending in .safetensors")
    report = run_embed(
        dataset,
        out,
        features=features,
        split=split,
        classes=split_list(classes),
        shots=shots,
        seed=seed,
        limit=limit,
        bands=bands,
        band_stats=band_stats,
        batch_size=batch_size,
        workers=workers,
        part_size=part_size,
        device=device,
        precision=precision,
        track=track,
        log=message,
    )
    if report is None:  # not rank 0: rank 0 reports
        return
    if as_json:
        print_json(report)
    else:
        skipped = report.get("corrupt_skipped")
        message(
            f"wrote {report['samples']} x {report['feature_dim']} embeddings to {out}"
            + (f" ({skipped} corrupt samples skipped)" if skipped else "")
        )
