"""``geosynth embed``: features of a dataset or of webdataset shards, to a safetensors file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth.artifacts import Provenance
from geosynth.cli.options import (
    ClassesOpt,
    DatasetArg,
    JsonOpt,
    SeedOpt,
    ShotsOpt,
    SplitOpt,
    split_list,
)
from geosynth.cli.output import message, print_json, track
from geosynth.defaults import FEATURE_MODEL
from geosynth.errors import GeosynthError
from geosynth.features import create_extractor
from geosynth.features.embed import embed_to_file

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "--features",
        help="dinov2-small|base|large|giant, a transformers "
        "hub id or directory, open_clip:NAME/PRETRAINED, open_clip:local-dir:DIR, "
        "timm:NAME or timm:local-dir:DIR.",
    ),
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda, cuda:1 (default: cuda when present).")
]
PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="auto (fp16 on GPU), fp32, fp16, bf16.")
]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")]


def embed(
    dataset: DatasetArg,
    out: Annotated[
        Path, typer.Option("--out", help="Output .safetensors file.", show_default=False)
    ],
    model: ModelOpt = FEATURE_MODEL,
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
    num_workers: Annotated[
        int, typer.Option("--num-workers", min=0, help="Data-loader workers (datasets).")
    ] = 0,
    device: DeviceOpt = None,
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Embed every image of a dataset, or of a directory of webdataset shards, with a feature model.

    Shard directories (00000.tar with <key>.jpg/.txt/.json, as img2dataset writes LAION) are
    streamed; corrupt samples are skipped and counted; a killed job resumes at the first
    unfinished shard.

    \b
    Example:
      geosynth embed ../shared/data/eurosat-rgb --split train --model dinov2-base --out eurosat.safetensors
    """
    if out.suffix != ".safetensors":
        raise GeosynthError(f"--out {out}: expected a path ending in .safetensors")
    bi = None
    if bands is not None:
        from geosynth.data import load_dataset
        from geosynth.data.multiband import band_input

        if band_stats is not None:
            ref = load_dataset(band_stats)
        else:
            ref = load_dataset(
                dataset, split=split, classes=split_list(classes), shots=shots, seed=seed
            )
        bi = band_input(ref, bands, what="--bands", track=track)
    elif band_stats is not None:
        raise GeosynthError("--band-stats: only used with --bands")
    extractor = create_extractor(model, device=device, precision=precision, bands=bi)
    prov = Provenance.start("embed", seeds={"seed": seed}, model=model)
    report = embed_to_file(
        extractor,
        dataset,
        out,
        provenance=prov,
        split=split,
        classes=split_list(classes),
        shots=shots,
        seed=seed,
        limit=limit,
        batch_size=batch_size,
        num_workers=num_workers,
        track=track,
        log=message,
    )
    report = {"out": str(out), "feature_model": model, "feature_dim": extractor.dim, **report}
    if as_json:
        print_json(report)
    else:
        skipped = report.get("corrupt_skipped")
        message(
            f"wrote {report['samples']} x {extractor.dim} embeddings to {out}"
            + (f" ({skipped} corrupt samples skipped)" if skipped else "")
        )
