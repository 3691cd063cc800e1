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
    RadiometryOpt,
    SeedOpt,
    ShotsOpt,
    SplitOpt,
    dataset_from_options,
    split_list,
)
from geosynth.cli.output import message, print_json, print_table, track
from geosynth.data import export_dataset, load_dataset
from geosynth.data.stats import band_stats, class_color_stats

app = typer.Typer(help="Inspect datasets and write K-shot subsets.", no_args_is_help=True)


@app.command("info")
def info(
    dataset: DatasetArg,
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    shots: ShotsOpt = None,
    seed: SeedOpt = 0,
    radiometry: RadiometryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Classes, image counts, sizes, per-class mean colour and per-band statistics in native units.

    Reads every image, so it also finds unreadable files. The band table is in the file's own
    units (SAR backscatter, reflectance x 10000, ...); the mean colour is that of the model's
    3-channel input (through the radiometry spec for non-8-bit data).

    \b
    Example:
      geosynth data info ../shared/data/eurosat-ms --split train
    """
    ds = dataset_from_options(dataset, split, classes, shots, seed, radiometry)
    bands = band_stats(ds, track)
    rows = class_color_stats(ds, track)
    report = {
        "source": ds.source,
        "kind": ds.kind,
        "selection": ds.selection,
        "images": len(ds),
        "fingerprint": ds.fingerprint(),
        "classes": rows,
        "native": bands,
        "radiometry": None if ds.radiometry is None else ds.radiometry.to_dict(),
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
    crs = ", ".join(bands["crs"]) or "none"
    print_table(
        f"bands in native units ({bands['dtype']}, nodata {bands['nodata']}, CRS {crs})",
        ["band", "name", "mean", "std", "min", "max", "NaN/nodata px"],
        [
            (
                b["band"],
                b["name"] or "",
                f"{b['mean']:.6g}",
                f"{b['std']:.6g}",
                f"{b['min']:.6g}" if b["min"] is not None else "-",
                f"{b['max']:.6g}" if b["max"] is not None else "-",
                b["invalid_pixels"],
            )
            for b in bands["bands"]
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
    metadata row records the image it came from. 16-bit, float, multispectral or georeferenced
    images are written as OUT/<class>/<id>.tif in native units, bit for bit, CRS kept.

    \b
    Example:
      geosynth data export ../shared/data/eurosat-rgb --split pool --shots 16 --seed 0 --out eurosat-16shot
    """
    # Native export: no radiometry is involved, the values are copied as they are.
    ds = load_dataset(dataset, split=split, classes=split_list(classes), shots=shots, seed=seed)
    prov = Provenance.start("data export", seeds={"seed": seed}, selection=ds.selection)
    prov.inputs[f"dataset:{dataset}"] = ds.fingerprint()
    export_dataset(ds, out, prov, track(range(len(ds)), len(ds), "writing images"))
    message(f"wrote {len(ds)} images in {len(ds.class_names)} classes to {out}")
