"""``geosynth rarity``: how far a target set lies from a reference set, exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth import rarity as run_rarity
from geosynth.cli.options import (
    BatchOpt,
    ClassesOpt,
    DeviceOpt,
    FeaturesOpt,
    JsonOpt,
    PrecisionOpt,
    SeedOpt,
    ShotsOpt,
    SplitOpt,
    split_list,
)
from geosynth.cli.output import message, print_json, print_table, track
from geosynth.defaults import FEATURE_MODEL

#: Library parameters that this command's options feed under other names (cli/errors.py).
LIBRARY_PARAMS = {"per_class": "--by-class"}

METRICS = (
    "precision",
    "recall",
    "density",
    "coverage",
    "rarity_mean",
    "rarity_median",
    "rarity_fraction_inside",
)


def rarity(
    target: Annotated[
        str,
        typer.Argument(
            help="Embeddings file, dataset or shard directory (plays 'fake').", show_default=False
        ),
    ],
    reference: Annotated[
        str,
        typer.Argument(
            help="Embeddings file, dataset or shard directory (plays 'real'), e.g. LAION shards.",
            show_default=False,
        ),
    ],
    k: Annotated[int, typer.Option("--k", min=1, help="k of the k-NN balls (PRDC).")] = 5,
    rarity_k: Annotated[int, typer.Option("--rarity-k", min=1, help="k of the rarity score.")] = 3,
    features: FeaturesOpt = FEATURE_MODEL,
    by_class: Annotated[
        bool, typer.Option("--by-class", help="Also report per target class.")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write the report as JSON.")] = None,
    split: SplitOpt = None,
    reference_split: Annotated[
        str | None,
        typer.Option("--reference-split", help="Split of REFERENCE when it is a dataset."),
    ] = None,
    classes: ClassesOpt = None,
    shots: ShotsOpt = None,
    seed: SeedOpt = 0,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", min=1, help="Shard directories: embed a deterministic subset of N samples."
        ),
    ] = None,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
    precision: PrecisionOpt = "auto",
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="blocked: one pass over all distances; lifted: ball "
            "membership as faiss range searches over lifted balls. Both exact.",
        ),
    ] = "blocked",
    approximate: Annotated[
        bool,
        typer.Option(
            "--approximate",
            help="IVF range searches instead of exact ones, for "
            "billion-scale references; the report says APPROXIMATE.",
        ),
    ] = False,
    nprobe: Annotated[
        int, typer.Option("--nprobe", min=1, help="IVF lists visited per query (--approximate).")
    ] = 32,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Re-embed even if cached.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Precision, recall, density, coverage and rarity of TARGET against REFERENCE.

    Exact k-NN metrics (Naeem et al. 2020; Han et al. 2022) computed block by block, so
    LAION-sized references fit in memory. Datasets are embedded with --features and cached;
    --split/--classes/--shots apply to TARGET.

    Under torchrun / accelerate launch the exact passes split across the processes (one GPU
    each, NCCL; gloo on CPU) and rank 0 writes the report, identical to a single process.

    \b
    Examples:
      geosynth rarity eurosat-16shot/ laion-shards/ --limit 100000 --by-class --out rarity.json
      torchrun --nproc-per-node 4 -m geosynth rarity synth.safetensors laion.safetensors
    """
    report = run_rarity(
        target,
        reference,
        out=out,
        k=k,
        rarity_k=rarity_k,
        features=features,
        per_class=by_class,
        split=split,
        reference_split=reference_split,
        classes=split_list(classes),
        shots=shots,
        seed=seed,
        limit=limit,
        batch_size=batch_size,
        device=device,
        precision=precision,
        method=method,
        approximate=approximate,
        nprobe=nprobe,
        use_cache=not no_cache,
        track=track,
        log=message,
    )
    if report is None:
        return  # another rank of a distributed run: rank 0 reports
    if as_json:
        print_json(report)
        return
    rows = [("all", report["n_target"], *(_fmt(report["metrics"][m]) for m in METRICS))]
    for name, s in report.get("per_class", {}).items():
        rows.append((name, s["n_target"], *(_fmt(s[m]) for m in METRICS)))
    if approximate:
        message("note: --approximate: values are approximate (IVF search may miss balls)")
    print_table(
        f"{target} vs {reference} (k={k}, rarity k={rarity_k}, {report['n_reference']} reference, "
        f"features {report['feature_model']})",
        [
            "target",
            "n",
            "precision",
            "recall",
            "density",
            "coverage",
            "rarity mean",
            "rarity median",
            "inside",
        ],
        rows,
    )


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{v:.4f}"
