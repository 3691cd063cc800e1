"""``geosynth data``: look at a dataset, and write the subset a pipeline step should use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth import dataset_info, export_subset
from geosynth.cli.data_tile import tile
from geosynth.cli.options import (
    ClassesOpt,
    DatasetArg,
    IgnoreOpt,
    JsonOpt,
    LabelMapOpt,
    MapLegendOpt,
    MetadataTableOpt,
    RadiometryOpt,
    SeedOpt,
    ShotsOpt,
    SplitOpt,
    dataset_from_options,
    split_list,
)
from geosynth.cli.output import message, print_json, print_table, track

app = typer.Typer(
    help="Inspect datasets, write K-shot subsets, cut scenes into chips.", no_args_is_help=True
)
app.command("tile")(tile)


@app.command("info")
def info(
    dataset: DatasetArg,
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    shots: ShotsOpt = None,
    seed: SeedOpt = 0,
    radiometry: RadiometryOpt = None,
    label_map: LabelMapOpt = None,
    metadata_table: MetadataTableOpt = None,
    by_sample: Annotated[
        bool,
        typer.Option(
            "--by-sample", help="Also list every sample's metadata (JSON: metadata.by_sample)."
        ),
    ] = False,
    map_legend: MapLegendOpt = None,
    ignore: IgnoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Classes, image counts, sizes, per-class mean colour, per-band statistics in native units
    and the metadata the samples carry.

    Reads every image, so it also finds unreadable files. The band table is in the file's own
    units (SAR backscatter, reflectance x 10000, ...); the mean colour is that of the model's
    3-channel input (through the radiometry spec for non-8-bit data). Sentinel-1 layouts
    (BigEarthNet-S1, reBEN, SSL4EO-S12) are read as VV/VH samples; for BigEarthNet it also says
    which labels the one-class-per-patch rule dropped. The metadata table says how many samples
    know their centre lon/lat (WGS84), GSD (m), cloud cover, acquisition date and each sidecar
    column, with ranges and sources (docs/formats.md#metadata). Segmentation datasets (images/ + masks/
    folders, tables of pairs, datasets with a mask column) also get each legend class's share
    of the mask pixels, the ignored share and the mask sizes; a mask colour the legend does not
    name is an error (exit 2) naming the colour, the file and its pixel count.

    \b
    Examples:
      geosynth data info ../shared/data/eurosat-ms --split train
      geosynth data info ../shared/data/sar-real/bigearthnet-s1 --by-sample --json
      geosynth data info scenes/ --metadata-table scenes.csv
      geosynth data info ../shared/data/aerial-seg/dubai --map-legend legend.json --ignore "#000000"
    """
    ds = dataset_from_options(
        dataset,
        split,
        classes,
        shots,
        seed,
        radiometry,
        label_map,
        metadata_table=metadata_table,
        map_legend=map_legend,
        ignore=ignore,
    )
    report = dataset_info(ds, track=track, by_sample=by_sample)
    rows, bands = report["classes"], report["native"]
    if as_json:
        print_json(report)
        return
    labels = ds.selection.get("labels")
    if labels and labels.get("dropped"):
        dropped = ", ".join(f"{k} ({v})" for k, v in labels["dropped"].items())
        message(
            f"labels: class = {labels['rule']}; dropped: {dropped}; patches left out: "
            f"{labels['patches_left_out']}"
        )
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
    meta = report["metadata"]
    print_table(
        f"metadata ({meta['samples']} samples; lon/lat: WGS84 centre, gsd: m, cloud_cover: 0-1)",
        ["field", "known", "min", "max", "from"],
        [
            (
                name,
                f["known"],
                _value(f.get("min")) if "min" in f else f"{f['distinct']} distinct",
                _value(f.get("max")) if "max" in f else "",
                ", ".join(f"{k} ({v})" for k, v in f["sources"].items()) or "-",
            )
            for name, f in meta["fields"].items()
        ],
    )
    if by_sample:
        names = list(meta["fields"])
        print_table(
            "metadata by sample",
            ["sample", *names],
            [(r["key"], *(_value(r.get(n)) for n in names)) for r in meta["by_sample"]],
        )
    if "masks" in report:
        _print_masks(report["masks"])


def _value(v: object) -> str:
    """A metadata value for a table cell: numbers to 7 significant digits, missing as '-'."""
    if v is None:
        return "-"
    return f"{v:.7g}" if isinstance(v, float) else str(v)


def _print_masks(masks: dict) -> None:
    sizes = ", ".join(f"{s} ({n})" for s, n in masks["sizes"].items())
    if masks["legend"] is None:
        print_table(
            "masks without a legend (give --map-legend): the values or colours they hold",
            ["value or colour", "pixels"],
            masks["found"],
        )
        message(f"mask sizes: {sizes}")
        return
    print_table(
        f"masks: {masks['masks']} ({masks['pixels']} px), legend {masks['legend']}",
        ["class", "colour", "pixels", "fraction", "masks holding it"],
        [
            (c["class_name"], c["color"], c["pixels"], f"{c['fraction']:.4f}", c["masks"])
            for c in masks["classes"]
        ]
        + [
            (
                "(ignored: " + (", ".join(map(str, masks["ignore"])) or "none") + ")",
                "",
                masks["ignored_pixels"],
                f"{masks['ignored_fraction']:.4f}",
                "",
            )
        ],
    )
    message(f"mask sizes: {sizes}")


@app.command("export")
def export(
    dataset: DatasetArg,
    out: Annotated[Path, typer.Option("--out", help="Output imagefolder.", show_default=False)],
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    shots: ShotsOpt = None,
    seed: SeedOpt = 0,
    label_map: LabelMapOpt = None,
) -> None:
    """Write a dataset, or its --classes / --shots subset, as an imagefolder.

    The output (OUT/<class>/<id>.png + metadata.jsonl) is the format every step reads; each
    metadata row records the image it came from. 16-bit, float, multispectral or georeferenced
    images are written as OUT/<class>/<id>.tif in native units, bit for bit, CRS kept; VV/VH
    files of Sentinel-1 layouts become one 2-band GeoTIFF per sample (VV, VH).

    \b
    Examples:
      geosynth data export ../shared/data/eurosat-rgb --split pool --shots 16 --seed 0 --out eurosat-16shot
      geosynth data export ../shared/data/sar-real/bigearthnet-s1 --out ben-s1-stacked
    """
    # Native export: no radiometry is involved, the values are copied as they are.
    ds = export_subset(
        dataset,
        out,
        split=split,
        classes=split_list(classes),
        shots=shots,
        seed=seed,
        label_map=label_map,
        track=track,
    )
    message(f"wrote {len(ds)} images in {len(ds.class_names)} classes to {out}")
