"""``geosynth data``: look at a dataset, and write the subset a pipeline step should use."""

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
    dataset_from_options,
)
from geosynth.cli.output import message, print_json, print_table, track
from geosynth.data import export_dataset
from geosynth.data.stats import class_color_stats

app = typer.Typer(help="Inspect datasets and write K-shot subsets.", no_args_is_help=True)


@app.command("info")
def info(
    dataset: DatasetArg,
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    shots: ShotsOpt = None,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Classes, image counts, sizes and per-class mean colour.

    Reads every image once, so it also finds unreadable files.

    [bold]Example[/bold]: geosynth data info ../shared/data/eurosat-rgb --split train
    """
    ds = dataset_from_options(dataset, split, classes, shots, seed)
    rows = class_color_stats(ds, track)
    report = {
        "source": ds.source,
        "kind": ds.kind,
        "selection": ds.selection,
        "images": len(ds),
        "fingerprint": ds.fingerprint(),
        "classes": rows,
    }
    if as_json:
        print_json(report)
        return
    print_table(
        f"{ds.source} ({ds.kind}, {len(ds)} images)",
        ["class", "prompt name", "images", "mean RGB", "std RGB", "sizes"],
        [
            (
                r["class_name"],
                r["prompt_name"],
                r["images"],
                " ".join(f"{v:.3f}" for v in r["mean_rgb"]),
                " ".join(f"{v:.3f}" for v in r["std_rgb"]),
                ", ".join(r["sizes"]),
            )
            for r in rows
        ],
    )


@app.command("export")
def export(
    dataset: DatasetArg,
    out: Annotated[Path, typer.Option("--out", help="Output imagefolder.", show_default=False)],
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    shots: ShotsOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Write a dataset, or its --classes / --shots subset, as an imagefolder.

    The output (OUT/<class>/<id>.png + metadata.jsonl) is the format every step reads; each
    metadata row records the image it came from.

    [bold]Example[/bold]: geosynth data export ../shared/data/eurosat-rgb --split pool --shots 16 --seed 0 --out eurosat-16shot
    """
    ds = dataset_from_options(dataset, split, classes, shots, seed)
    prov = Provenance.start("data export", seeds={"seed": seed}, selection=ds.selection)
    prov.inputs[f"dataset:{dataset}"] = ds.fingerprint()
    export_dataset(ds, out, prov, track(range(len(ds)), len(ds), "writing images"))
    message(f"wrote {len(ds)} images in {len(ds.class_names)} classes to {out}")
