"""``geosynth data tile``: cut scenes into square chips, an image folder every step reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth import tile_scenes
from geosynth.cli.options import IgnoreOpt, JsonOpt, MapLegendOpt, split_list
from geosynth.cli.output import message, print_json, track


def tile(
    scenes: Annotated[
        list[str],
        typer.Argument(
            metavar="SCENES...",
            help="GeoTIFF scenes, folders of them, or a dataset folder (class folders, "
            "Sentinel-1 layouts: VV/VH are stacked).",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output image folder.", show_default=False)],
    size: Annotated[int, typer.Option("--size", min=1, help="Chip side in pixels.")] = 256,
    stride: Annotated[
        int | None,
        typer.Option("--stride", min=1, help="Pixels between chip origins (default: --size)."),
    ] = None,
    class_name: Annotated[
        str | None,
        typer.Option(
            "--class",
            help="Class of every chip (default: the scene's folder name, or its dataset class).",
        ),
    ] = None,
    pad: Annotated[
        bool,
        typer.Option("--pad", help="Keep partial edge chips, filled with nodata (NaN for float)."),
    ] = False,
    max_nodata: Annotated[
        float,
        typer.Option(
            "--max-nodata", min=0.0, max=1.0, help="Skip chips with a larger NaN/nodata share."
        ),
    ] = 0.5,
    map_legend: MapLegendOpt = None,
    ignore: IgnoreOpt = None,
    max_ignore: Annotated[
        float,
        typer.Option(
            "--max-ignore",
            min=0.0,
            max=1.0,
            help="Image/mask pairs: skip chips with a larger share of ignored mask pixels.",
        ),
    ] = 0.5,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from OUT.parts/ after an interruption.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Cut scenes (any GeoTIFF: dtype, bands, nodata, CRS kept) into --size px chips.

    Chips are written as OUT/<class>/<scene>_r<row>_c<col>.tif with metadata.jsonl (scene,
    row, col of each chip); each chip keeps the scene's dtype, bands, band names, nodata and CRS,
    with its own exact transform. Partial edge chips are dropped unless --pad.

    Segmentation datasets (images/ + masks/ folders, tables of pairs) are cut in pairs with the
    same windows: OUT/images/<group>/... and OUT/masks/<group>/..., each mask chip the source
    mask's window bit for bit, with legend.json; chips with more than --max-ignore ignored
    pixels are skipped. Every mask is checked first, so bad input writes nothing.

    \b
    Examples:
      geosynth data tile ../shared/data/sar-real/ssl4eo-s12-s1 --size 64 --out ssl4eo-chips
      geosynth data tile ../shared/data/aerial-seg/dubai --size 256 --map-legend legend.json --ignore "#000000" --out dubai-chips
    """
    summary = tile_scenes(
        scenes,
        out,
        size,
        stride,
        class_name=class_name,
        pad=pad,
        max_nodata=max_nodata,
        resume=resume,
        track=track,
        map_legend=map_legend,
        ignore=split_list(ignore),
        max_ignore=max_ignore,
    )
    if as_json:
        print_json(summary)
        return
    ignored = (
        f" and {summary['skipped_ignore']} over --max-ignore" if "skipped_ignore" in summary else ""
    )
    message(
        f"wrote {summary['chips']} chips ({summary['bands']}-band {summary['dtype']}) from "
        f"{summary['scenes']} scene(s) to {out}; skipped {summary['skipped_nodata']} over "
        f"--max-nodata{ignored}"
    )
