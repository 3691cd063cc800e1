"""Cut scenes into training chips: ``OUT/<class>/<scene>_r<row>_c<col>.tif`` + ``metadata.jsonl``.

A scene is any raster GDAL reads (one GeoTIFF of any dtype and band count), or a multi-file
sample of a layout geosynth reads (VV + VH files, :mod:`geosynth.data.stack`). Chips are read as
windows (a whole GRD product never has to fit in memory) and written in the scene's dtype, bands,
band names and nodata, with its CRS and the chip's own transform, ``scene_transform * (col,
row)`` (exact for rotated geotransforms too), so each chip has its own centre and GSD; the scene's
acquisition date goes into the chip's ``metadata.jsonl`` row. Chips whose NaN/nodata share exceeds
``max_nodata`` (or that hold no valid pixel at all) are skipped; partial chips at the right and bottom edges are dropped unless
``pad``, which fills them with the nodata value (NaN for float data without one).

Writing is resumable: chips go to ``OUT.parts/`` one file at a time (each atomically), with
the settings in ``OUT.parts/tile.json``; a run with ``resume`` and the same settings keeps the
chips already there. Only a finished run renames ``OUT.parts`` to ``OUT`` (with the manifest,
dataset card and provenance), so ``OUT`` never holds a half-written dataset.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geosynth.artifacts import Provenance, atomic_path, write_json, write_provenance
from geosynth.artifacts.jsontext import json_text
from geosynth.data.card import write_dataset_card
from geosynth.data.folder import METADATA_NAME
from geosynth.data.metadata import date_from_tags
from geosynth.data.names import safe_dirname
from geosynth.data.raster import TIFF_SUFFIXES, Raster, read_header, write_raster
from geosynth.data.stack import StackRef
from geosynth.errors import GeosynthError
from geosynth.extras import require
from geosynth.limits import check_numbers
from geosynth.progress import Track, no_track

SETTINGS_NAME = "tile.json"


@dataclass(frozen=True)
class Scene:
    """One scene to cut: its files (one per band group, sharing one grid), band names, class."""

    name: str
    class_name: str
    files: tuple[Path, ...]
    bands: tuple[str, ...] | None = None
    date: str | None = None  # acquisition date, which every chip of the scene carries


def find_scenes(sources: Sequence[str | Path], class_name: str | None = None) -> list[Scene]:
    """Scenes of ``sources``: GeoTIFF files (class: their folder's name, or ``class_name``), or
    folders (a class-per-folder tree or a Sentinel-1 layout, read as everywhere else; a folder
    that directly holds GeoTIFFs gives them the folder's name as class)."""
    from geosynth.data.load import open_dataset

    scenes: list[Scene] = []
    for src in sources:
        p = Path(src)
        if p.is_file():
            scenes.append(
                Scene(p.stem, class_name or p.resolve().parent.name, (p,), None, _date(p))
            )
            continue
        if not p.is_dir():
            raise GeosynthError(f"scenes: {p} does not exist (expected a GeoTIFF or a folder)")
        direct = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in TIFF_SUFFIXES)
        if direct:
            name = class_name or p.resolve().name
            scenes.extend(Scene(f.stem, name, (f,), None, _date(f)) for f in direct)
            continue
        ds = open_dataset(p)
        for i, s in enumerate(ds.samples):
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(Path(s.key).with_suffix(""))).strip("_")
            cls = class_name or ds.class_names[s.label]
            date = ds.metadata(i).date
            if isinstance(s.ref, StackRef):
                scenes.append(Scene(stem, cls, s.ref.files, s.ref.bands, date))
            else:
                scenes.append(Scene(stem, cls, (Path(s.ref),), None, date))
    if not scenes:
        raise GeosynthError("scenes: no scene given")
    names = [(s.class_name, s.name) for s in scenes]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise GeosynthError(f"scenes: two scenes named '{dup[1]}' in class '{dup[0]}'")
    return scenes


def _date(path: Path) -> str | None:
    """A scene file's acquisition date from its tags (:mod:`geosynth.data.metadata`)."""
    tagged = date_from_tags(read_header(path).tags)
    return None if tagged is None else tagged[0]


def _grid(scene: Scene) -> dict[str, Any]:
    """The scene's grid (size, CRS, transform, dtype, nodata, band names), checked across files."""
    rasterio = require("rasterio", "tiling scenes")
    from rasterio.errors import NotGeoreferencedWarning

    grid: dict[str, Any] | None = None
    count = 0
    names: list[str] = []
    for f in scene.files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(f) as src:
                    g = {
                        "width": src.width,
                        "height": src.height,
                        "crs": None if src.crs is None else src.crs.to_string(),
                        "transform": tuple(src.transform)[:6],
                        "dtype": src.dtypes[0],
                        "nodata": src.nodata,
                    }
                    count += src.count
                    names += [d or "" for d in src.descriptions]
        except Exception as exc:  # rasterio raises many types for broken files
            raise GeosynthError(f"{f}: cannot read scene ({exc})") from None
        if grid is None:
            grid = g
        for key in ("width", "height", "crs", "transform", "dtype", "nodata"):
            if g[key] != grid[key] and not (key == "nodata" and g[key] != g[key]):
                raise GeosynthError(
                    f"{f}: {key} {g[key]}, but {scene.files[0].name} has {grid[key]}; the files "
                    "of one scene must share one grid, dtype and nodata"
                )
    assert grid is not None
    if scene.bands is not None:
        grid["names"] = list(scene.bands)
    else:
        grid["names"] = names if all(names) else None
    grid["count"] = count
    return grid


def _windows(height: int, width: int, size: int, stride: int, pad: bool) -> list[tuple[int, int]]:
    def starts(n: int) -> list[int]:
        last = n - 1 if pad else n - size
        return list(range(0, last + 1, stride)) if last >= 0 else []

    return [(r, c) for r in starts(height) for c in starts(width)]


def _read_chip(scene: Scene, grid: dict[str, Any], row: int, col: int, size: int) -> Raster:
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    # The in-scene part is read and placed into a filled array (GDAL's boundless reads go through
    # a VRT that mishandles rotated geotransforms).
    h, w = min(size, grid["height"] - row), min(size, grid["width"] - col)
    win = Window(col, row, w, h)
    fill = grid["nodata"]
    if fill is None:
        fill = float("nan")  # float data only: tile_scenes refuses pad for integers without nodata
    parts = []
    for f in scene.files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(f) as src:
                part = src.read(window=win)
        if (h, w) != (size, size):
            full = np.full((part.shape[0], size, size), fill, dtype=part.dtype)
            full[:, :h, :w] = part
            part = full
        parts.append(part)
    transform = Affine(*grid["transform"]) @ Affine.translation(col, row)
    georef = grid["crs"] is not None or not Affine(*grid["transform"]).is_identity
    return Raster(
        array=np.concatenate(parts),
        band_names=grid["names"],
        nodata=grid["nodata"],
        crs=grid["crs"],
        transform=tuple(transform)[:6] if georef else None,
    )


def tile_scenes(
    sources: Sequence[str | Path],
    out: str | Path,
    size: int,
    stride: int | None = None,
    *,
    class_name: str | None = None,
    pad: bool = False,
    max_nodata: float = 0.5,
    resume: bool = False,
    track: Track = no_track,
    map_legend: Any = None,
    ignore: Sequence[str | int] | None = None,
    max_ignore: float = 0.5,
) -> dict[str, Any]:
    """Cut every scene of ``sources`` into ``size`` px chips every ``stride`` px (default: size)
    and write them as an image folder at ``out`` (module docstring). Returns a summary.

    Segmentation datasets (image/mask pairs) are cut in pairs, with the same windows
    (:mod:`geosynth.data.pairtile`: ``map_legend``, ``ignore`` and ``max_ignore`` apply)."""
    out = Path(out)
    stride = size if stride is None else stride
    check_numbers(size=size, stride=stride, max_nodata=max_nodata)
    if out.exists():
        raise GeosynthError(f"out={str(out)!r}: exists; choose a new path or remove it")
    from geosynth.data.pairtile import pair_sources, tile_pairs

    pairs = pair_sources(sources)
    if pairs is not None:
        if pad:
            raise GeosynthError("pad: not available for image/mask pairs (edge chips are dropped)")
        kw = dict(map_legend=map_legend, ignore=ignore, max_ignore=max_ignore)
        return tile_pairs(pairs, out, size, stride, **kw, max_nodata=max_nodata,
                          class_name=class_name, resume=resume, track=track)  # fmt: skip
    if map_legend is not None or ignore:
        raise GeosynthError("`map_legend` and `ignore` apply to image/mask pairs only")
    scenes = find_scenes(sources, class_name)
    grids = [_grid(s) for s in scenes]
    for s, g in zip(scenes, grids, strict=True):
        if not pad and (size > g["width"] or size > g["height"]):
            raise GeosynthError(
                f"size={size}: larger than scene {s.files[0]} ({g['width']}x{g['height']} px); "
                "choose a smaller size or pass `pad`"
            )
        if pad and g["nodata"] is None and np.dtype(g["dtype"]).kind != "f":
            raise GeosynthError(
                f"pad: scene {s.files[0]} is {g['dtype']} without a nodata value to pad with"
            )
        if (g["count"], g["dtype"]) != (grids[0]["count"], grids[0]["dtype"]):
            raise GeosynthError(
                f"{s.files[0]}: {g['count']} band(s) of {g['dtype']}, but {scenes[0].files[0]} "
                f"has {grids[0]['count']} of {grids[0]['dtype']}; one dataset must have one "
                "band count and dtype"
            )
    settings = {
        "scenes": [[str(f.resolve()) for f in s.files] for s in scenes],
        "classes": [s.class_name for s in scenes],
        "size": size,
        "stride": stride,
        "pad": pad,
        "max_nodata": max_nodata,
    }
    work = out.with_name(out.name + ".parts")
    if work.exists():
        if not resume:
            raise GeosynthError(
                f"out={str(out)!r}: an interrupted run left {work}; pass `resume` to continue it "
                "(same settings) or remove it"
            )
        try:
            recorded = json.loads((work / SETTINGS_NAME).read_text())
        except (OSError, ValueError):
            recorded = None
        if recorded != settings:
            raise GeosynthError(
                f"resume: {work} was started with other settings (or is not a tile run); "
                "use the same scenes and options, or remove it"
            )
    else:
        work.mkdir(parents=True)
        write_json(work / SETTINGS_NAME, settings)
    class_names = sorted({s.class_name for s in scenes})
    jobs = [
        (s, g, r, c)
        for s, g in zip(scenes, grids, strict=True)
        for r, c in _windows(g["height"], g["width"], size, stride, pad)
    ]
    rows: list[dict[str, Any]] = []
    skipped = reused = 0
    for s, g, r, c in track(jobs, len(jobs), "cutting chips"):
        rel = f"{safe_dirname(s.class_name)}/{s.name}_r{r:05d}_c{c:05d}.tif"
        chip = _read_chip(s, g, r, c, size)
        invalid = 1.0 - float(chip.valid_mask().all(axis=0).mean())
        if invalid > max_nodata or invalid == 1.0:  # a chip without data is never written
            skipped += 1
            continue
        if (work / rel).is_file():
            reused += 1
        else:
            (work / rel).parent.mkdir(exist_ok=True)
            write_raster(work / rel, chip)
        rows.append(
            {
                "file_name": rel,
                "label": class_names.index(s.class_name),
                "class_name": s.class_name,
                "source": [str(f) for f in s.files],
                "row": r,
                "col": c,
                "nodata_fraction": round(invalid, 6),
                **({} if s.date is None else {"date": s.date}),
            }
        )
    if not rows:
        if not reused:
            shutil.rmtree(work)  # nothing of this run is worth resuming
        raise GeosynthError(
            f"scenes: every chip is over max_nodata={max_nodata} NaN/nodata (or the scenes are "
            f"smaller than size={size}); nothing to write"
        )
    rows.sort(key=lambda x: (x["label"], x["file_name"]))
    with atomic_path(work / METADATA_NAME) as tmp:
        tmp.write_text("".join(json_text(x) + "\n" for x in rows))
    write_dataset_card(work, class_names, rows, "geosynth chips cut from scenes")
    prov = Provenance.start("data tile", settings={k: v for k, v in settings.items()})
    write_provenance(work, prov)
    (work / SETTINGS_NAME).unlink()
    os.replace(work, out)
    return {
        "out": str(out),
        "scenes": len(scenes),
        "chips": len(rows),
        "skipped_nodata": skipped,
        "reused": reused,
        "classes": {c: sum(x["class_name"] == c for x in rows) for c in class_names},
        "dtype": grids[0]["dtype"],
        "bands": grids[0]["count"],
    }
