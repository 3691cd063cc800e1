"""Cut image/mask pairs into chips with the same windows: ``data tile`` on a segmentation
dataset (:mod:`geosynth.data.segmentation`); and write a subset of pairs (``data export``).

Every chip's mask is the source mask's window bit for bit, in the source's own encoding (an RGB
rendering stays RGB, a palette PNG keeps its palette and indices, a GeoTIFF its values and
georeference): nothing is resampled, so nothing is interpolated. Images keep their dtype and
bands (8-bit images without georeference as PNG, anything else as GeoTIFF with the chip's own
transform). Chips whose ignored share exceeds ``max_ignore`` (or whose image is more than
``max_nodata`` NaN/nodata) are skipped and counted.

Before anything is written every mask is read through the legend and checked against its image's
size, so bad input (a mask with no image, a size mismatch, an unknown colour) stops the run with
nothing written. Output: ``OUT/images/<group>/<name>_r<row>_c<col>.png|tif`` and the mask at the
same path under ``OUT/masks/``, ``legend.json``, ``metadata.jsonl`` (``file_name``,
``mask_file_name``, ``label``/``class_name`` = the group, ``landscape`` = the dominant class,
source files, ``row``, ``col``, ``ignore_fraction``, ``nodata_fraction``), a dataset card and
provenance; it reads back as a segmentation dataset (geosynth, ``datasets.load_dataset``).
Resumable like ``data tile`` on scenes (``OUT.parts/``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geosynth.artifacts import Provenance, atomic_path, write_json, write_provenance
from geosynth.artifacts.jsontext import json_text
from geosynth.data.card import write_dataset_card
from geosynth.data.folder import METADATA_NAME
from geosynth.data.legend import LEGEND_NAME, Legend, resolve_legend
from geosynth.data.masks import class_counts, classify
from geosynth.data.names import safe_dirname
from geosynth.data.pairdata import PairedDataset, dominant_class
from geosynth.data.raster import TIFF_SUFFIXES, Raster, read_raster, write_raster
from geosynth.data.segmentation import open_segmentation
from geosynth.errors import GeosynthError
from geosynth.limits import check_numbers
from geosynth.progress import Track, no_track

SETTINGS_NAME = "tile.json"


def pair_sources(sources: Sequence[str | Path]) -> list[PairedDataset] | None:
    """The segmentation datasets ``sources`` name, or None when none of them is one."""
    found = [open_segmentation(Path(s)) if Path(s).exists() else None for s in sources]
    if all(f is None for f in found):
        return None
    plain = [str(s) for s, f in zip(sources, found, strict=True) if f is None]
    if plain:
        raise GeosynthError(
            f"scenes: {plain[0]} is not an image/mask dataset, but other scenes are; cut pairs "
            "and plain scenes in separate runs"
        )
    return [f for f in found if f is not None]


def _legend(datasets: list[PairedDataset], map_legend: Any, ignore: Any) -> Legend:
    legends = []
    for ds in datasets:
        root = Path(ds.source)
        legend = resolve_legend(
            map_legend if map_legend is not None else ds.legend,
            ignore,
            root if root.is_dir() else root.parent,
        )
        if legend is None:
            raise GeosynthError(f"{ds.source}: its masks need a legend; give `map_legend`")
        legends.append(legend)
    for ds, legend in zip(datasets[1:], legends[1:], strict=True):
        if legend.names != legends[0].names:
            raise GeosynthError(
                f"{ds.source}: legend classes {legend.names} differ from {datasets[0].source}'s "
                f"{legends[0].names}; give one `map_legend` for all"
            )
    return legends[0]


def _chip_name(key: str) -> str:
    """The name part of a chip: the image's path after its ``images/`` folder, sanitised."""
    parts = Path(key).with_suffix("").parts
    lower = [p.lower() for p in parts]
    if "images" in lower:
        parts = parts[len(lower) - 1 - lower[::-1].index("images") + 1 :]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "__".join(parts)).strip("_")


def _windows(height: int, width: int, size: int, stride: int) -> list[tuple[int, int]]:
    return [
        (r, c)
        for r in range(0, height - size + 1, stride)
        for c in range(0, width - size + 1, stride)
    ]


def _crop(raster: Raster, r: int, c: int, size: int) -> Raster:
    transform = raster.transform
    if transform is not None:
        from affine import Affine

        transform = tuple(Affine(*transform[:6]) @ Affine.translation(c, r))[:6]
    return Raster(
        array=np.ascontiguousarray(raster.array[:, r : r + size, c : c + size]),
        band_names=raster.band_names,
        nodata=raster.nodata,
        crs=raster.crs,
        transform=transform,
    )


def _write_image(path: Path, chip: Raster) -> Path:
    """8-bit 1/3/4-band chips without georeference as PNG, everything else as GeoTIFF."""
    from PIL import Image

    plain = chip.dtype == "uint8" and chip.count in (1, 3, 4) and chip.crs is None
    if plain and chip.transform is None:
        path = path.with_suffix(".png")
        arr = chip.array[0] if chip.count == 1 else chip.array.transpose(1, 2, 0)
        with atomic_path(path) as tmp:
            Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG")
        return path
    return write_raster(path.with_suffix(".tif"), chip)


def _write_mask(path: Path, source: Path, r: int, c: int, size: int) -> Path:
    """The source mask's window, in its own encoding."""
    if source.suffix.lower() in TIFF_SUFFIXES:
        return write_raster(path.with_suffix(".tif"), _crop(read_raster(source), r, c, size))
    from PIL import Image

    path = path.with_suffix(".png")
    with Image.open(source) as img, atomic_path(path) as tmp:
        img.crop((c, r, c + size, r + size)).save(tmp, format="PNG")
    return path


def tile_pairs(
    datasets: list[PairedDataset],
    out: Path,
    size: int,
    stride: int,
    *,
    map_legend: Legend | str | Path | None = None,
    ignore: Sequence[str | int] | None = None,
    max_ignore: float = 0.5,
    max_nodata: float = 0.5,
    class_name: str | None = None,
    resume: bool = False,
    track: Track = no_track,
) -> dict[str, Any]:
    """Cut every pair of ``datasets`` into ``size`` px chips every ``stride`` px (module
    docstring); returns a summary."""
    check_numbers(max_ignore=max_ignore)
    legend = _legend(datasets, map_legend, ignore)
    pairs = [(ds, i) for ds in datasets for i in range(len(ds))]
    groups = sorted({class_name or ds.class_names[ds.samples[i].label] for ds, i in pairs})
    names: dict[tuple[str, str], str] = {}
    for ds, i in track(pairs, len(pairs), "checking masks"):
        mask = ds.decoded_mask(i)
        ds.check_size(i, mask.shape)  # a mismatch is an error before anything is written
        classify(mask, legend, ds.mask_name(i))
        if size > min(mask.shape):
            raise GeosynthError(
                f"size={size}: larger than {ds.describe(ds.samples[i])} "
                f"({mask.shape[1]}x{mask.shape[0]} px); choose a smaller size"
            )
        group = class_name or ds.class_names[ds.samples[i].label]
        name = _chip_name(ds.samples[i].key)
        if names.setdefault((group, name), ds.describe(ds.samples[i])) != ds.describe(
            ds.samples[i]
        ):
            raise GeosynthError(
                f"{ds.describe(ds.samples[i])}: chips would take the names of "
                f"{names[(group, name)]}'s in group '{group}'; rename one of them"
            )
    settings = {
        "pairs": [[ds.describe(ds.samples[i]), ds.mask_name(i)] for ds, i in pairs],
        "legend": legend.to_dict(),
        "size": size,
        "stride": stride,
        "max_ignore": max_ignore,
        "max_nodata": max_nodata,
        "class": class_name,
    }
    work = _work_dir(out, settings, resume)
    rows: list[dict[str, Any]] = []
    skipped = {"ignore": 0, "nodata": 0}
    reused = 0
    first: tuple[int, str, str] | None = None
    for ds, i in track(pairs, len(pairs), "cutting chips"):
        sample = ds.samples[i]
        group = class_name or ds.class_names[sample.label]
        image = ds.raster(i)
        if first is None:
            first = (image.count, image.dtype, ds.describe(sample))
        elif (image.count, image.dtype) != first[:2]:
            raise GeosynthError(
                f"{ds.describe(sample)}: {image.count} band(s) of {image.dtype}, but {first[2]} "
                f"has {first[0]} of {first[1]}; one dataset must have one band count and dtype"
            )
        classes = classify(ds.decoded_mask(i), legend, ds.mask_name(i))
        stem = f"{safe_dirname(group)}/{_chip_name(sample.key)}"
        for r, c in _windows(image.height, image.width, size, stride):
            window = classes[r : r + size, c : c + size]
            _, n_ignored = class_counts(window, len(legend))
            ignored = n_ignored / window.size
            chip = _crop(image, r, c, size)
            nodata = 1.0 - float(chip.valid_mask().all(axis=0).mean())
            if ignored > max_ignore:
                skipped["ignore"] += 1
                continue
            if nodata > max_nodata:
                skipped["nodata"] += 1
                continue
            rel = f"{stem}_r{r:05d}_c{c:05d}"
            done = [work / d / f"{rel}{x}" for d in ("images", "masks") for x in (".png", ".tif")]
            done = [p for p in done if p.is_file()]
            if len(done) == 2:  # both written before an interruption (each atomically)
                img_path, mask_path = done
                reused += 1
            else:
                (work / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
                (work / "masks" / rel).parent.mkdir(parents=True, exist_ok=True)
                img_path = _write_image(work / "images" / rel, chip)
                mask_path = _write_mask(work / "masks" / rel, ds.map_path(i), r, c, size)
            rows.append(
                {
                    "file_name": img_path.relative_to(work).as_posix(),
                    "mask_file_name": mask_path.relative_to(work).as_posix(),
                    "label": groups.index(group),
                    "class_name": group,
                    "landscape": legend.names[dominant_class(window, len(legend))],
                    "source": ds.describe(sample),
                    "source_mask": ds.mask_name(i),
                    "row": r,
                    "col": c,
                    "ignore_fraction": round(ignored, 6),
                    "nodata_fraction": round(nodata, 6),
                }
            )
    if not rows:
        if not reused:
            shutil.rmtree(work)  # nothing of this run is worth resuming
        raise GeosynthError(
            f"scenes: every chip is over max_ignore={max_ignore} ignored or max_nodata="
            f"{max_nodata} nodata pixels; nothing to write"
        )
    assert first is not None
    summary = _finish(work, out, rows, groups, legend, settings, skipped, reused, len(pairs))
    return {**summary, "bands": first[0], "dtype": first[1]}


def _work_dir(out: Path, settings: dict[str, Any], resume: bool) -> Path:
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
        if recorded != json.loads(json_text(settings)):
            raise GeosynthError(
                f"resume: {work} was started with other settings (or is not a tile run); "
                "use the same pairs and options, or remove it"
            )
    else:
        work.mkdir(parents=True)
        write_json(work / SETTINGS_NAME, settings)
    return work


def _finish(
    work: Path,
    out: Path,
    rows: list[dict[str, Any]],
    groups: list[str],
    legend: Legend,
    settings: dict[str, Any],
    skipped: dict[str, int],
    reused: int,
    pairs: int,
) -> dict[str, Any]:
    rows.sort(key=lambda x: (x["label"], x["file_name"]))
    with atomic_path(work / METADATA_NAME) as tmp:
        tmp.write_text("".join(json_text(x) + "\n" for x in rows))
    with atomic_path(work / LEGEND_NAME) as tmp:
        legend.write(tmp)
    notes = (
        "\nImage/mask pairs: `images/` and `masks/` (same paths), `legend.json` with the mask "
        f"classes ({legend.describe()}). `datasets.load_dataset(DIR)` gives each row's `image` "
        "and `mask`; `label` is the group (scene folder) a chip was cut from.\n"
    )
    write_dataset_card(
        work, groups, rows, "geosynth image/mask chips", images=("mask",), notes=notes
    )
    write_provenance(work, Provenance.start("data tile", settings=settings))
    (work / SETTINGS_NAME).unlink()
    os.replace(work, out)
    return {
        "out": str(out),
        "scenes": pairs,
        "chips": len(rows),
        "skipped_nodata": skipped["nodata"],
        "skipped_ignore": skipped["ignore"],
        "reused": reused,
        "classes": {g: sum(x["class_name"] == g for x in rows) for g in groups},
        "pairs": True,
    }


def export_pairs(
    ds: PairedDataset, out: str | os.PathLike[str], provenance: Provenance, progress: Any
) -> Path:
    """Write a subset of image/mask pairs (``data export`` of a segmentation dataset) as a pair
    dataset like :func:`tile_pairs` writes: image and mask files copied byte for byte (cells of
    Hugging Face datasets written as their bytes, or images as PNG / GeoTIFF) to
    ``OUT/images/<group>/<name>`` and ``OUT/masks/<group>/<name>``, with the legend."""
    from geosynth.data.writer import check_output_dir

    out = Path(out)
    check_output_dir(out)
    rows: list[dict[str, Any]] = []
    with atomic_path(out) as tmp:
        for i in progress:
            sample = ds.samples[i]
            group = ds.class_names[sample.label]
            rel = f"{safe_dirname(group)}/{_chip_name(sample.key)}"
            for sub in ("images", "masks"):
                (tmp / sub / rel).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(sample.ref, Path):
                image = tmp / "images" / f"{rel}{sample.ref.suffix.lower()}"
                shutil.copyfile(sample.ref, image)
            else:
                image = _write_image(tmp / "images" / rel, ds.raster(i))
            if sample.key in ds.maps:
                mask = tmp / "masks" / f"{rel}{ds.maps[sample.key].suffix.lower()}"
                shutil.copyfile(ds.maps[sample.key], mask)
            else:
                assert ds.mask_loader is not None
                data = ds.mask_loader(sample)
                mask = tmp / "masks" / f"{rel}{'.tif' if data[:2] in (b'II', b'MM') else '.png'}"
                mask.write_bytes(data)
            rows.append(
                {
                    "file_name": image.relative_to(tmp).as_posix(),
                    "mask_file_name": mask.relative_to(tmp).as_posix(),
                    "label": sample.label,
                    "class_name": group,
                    "source": ds.describe(sample),
                    "source_mask": ds.mask_name(i),
                }
            )
        names = [r["file_name"] for r in rows]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise GeosynthError(f"{ds.source}: two images would be exported as {dup}")
        (tmp / METADATA_NAME).write_text("".join(json_text(r) + "\n" for r in rows))
        if ds.legend is not None:
            ds.legend.write(tmp / LEGEND_NAME)
        write_dataset_card(tmp, ds.class_names, rows, "geosynth image/mask pairs", images=("mask",))
        write_provenance(tmp, provenance)
    return out
