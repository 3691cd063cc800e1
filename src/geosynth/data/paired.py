"""Paired data: an image dataset with one semantic (land-cover) map per image (seed 004).

Where the maps are:

* a ``map_file`` (or ``mask_file_name``) column in the dataset's ``metadata.jsonl`` (relative
  to the dataset root),
* a map folder that mirrors the image tree: the map of ``root/<class>/x.jpg`` is
  ``MAPS/<class>/x.jpg`` or ``MAPS/<class>/x.png`` (the "same names" convention of pix2pix-style
  datasets), or
* the dataset is a segmentation dataset (:mod:`geosynth.data.segmentation`): its masks are the
  maps.

Maps are masks read through a legend (:mod:`geosynth.data.legend`, :mod:`geosynth.data.masks`):
class-index images or colour renderings in legend colours, at their image's size. The legend is
read from an explicit path, else from the map folder, else from the dataset root. Class and
K-shot filters apply to the images first; maps follow their images, so they apply to pairs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from PIL import Image

from geosynth.artifacts import file_digest
from geosynth.data.dataset import ImageDataset, Sample
from geosynth.data.folder import METADATA_NAME
from geosynth.data.legend import LEGEND_NAME, Legend, find_legend, resolve_legend
from geosynth.data.masks import read_mask
from geosynth.data.pairdata import PairedDataset, dominant_class, resize_map
from geosynth.errors import GeosynthError

MAP_COLUMN = "map_file"
#: The mask column geosynth writes for segmentation datasets: ``datasets`` reads a
#: ``<name>_file_name`` column as an image feature ``<name>``.
MASK_COLUMN = "mask_file_name"

__all__ = [
    "LEGEND_NAME",
    "MAP_COLUMN",
    "MASK_COLUMN",
    "Legend",
    "PairedDataset",
    "attach_maps",
    "dominant_class",
    "find_legend",
    "has_maps",
    "read_map",
    "read_map_folder",
    "resize_map",
]


def read_map(path: Path, legend: Legend) -> np.ndarray:
    """A map file as an H x W int64 array of class indices into ``legend`` (-1: ignored)."""
    return read_mask(path, legend)


def _metadata_maps(root: Path) -> dict[str, str] | None:
    """``file_name -> map_file`` from metadata.jsonl, or None when there is no such column."""
    meta = root / METADATA_NAME
    if not meta.is_file():
        return None
    out: dict[str, str] = {}
    for line in meta.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        column = next((c for c in (MASK_COLUMN, MAP_COLUMN) if c in row), None)
        if column is not None:
            out[str(row["file_name"])] = str(row[column])
    return out or None


def has_maps(source: str | Path, split: str | None = None) -> bool:
    """Whether a dataset folder lists maps in its metadata (a ``map_file`` or
    ``mask_file_name`` column)."""
    root = Path(source) / split if split else Path(source)
    try:
        return _metadata_maps(root) is not None
    except (OSError, ValueError):
        return False


def attach_maps(
    ds: ImageDataset,
    maps: Path | None = None,
    legend: Path | None = None,
    *,
    arg: str = "maps",
) -> PairedDataset:
    """Pair every (already filtered) sample of ``ds`` with its map; a missing map is an error
    naming the image. A dataset that already has its masks (a segmentation dataset) keeps them,
    read with ``legend`` when given."""
    if isinstance(ds, PairedDataset) and maps is None and ds.maps:
        return ds.with_legend(resolve_legend(legend, None, Path(ds.source)) or ds.legend)
    if ds.kind != "imagefolder":
        raise GeosynthError(f"{ds.source}: paired data must be an image folder (got {ds.kind})")
    root = Path(ds.source)
    column = None if maps is not None else _metadata_maps(root)
    if maps is None and column is None:
        raise GeosynthError(
            f"`{arg}`: {root} has no '{MAP_COLUMN}' column in {METADATA_NAME}; give the map folder"
        )
    if maps is not None and not maps.is_dir():
        raise GeosynthError(f"{arg}={str(maps)!r}: no such directory")
    found: dict[str, Path] = {}
    for s in ds.samples:
        if column is not None:
            rel = column.get(s.key)
            candidates = [root / rel] if rel is not None else []
        else:
            assert maps is not None
            rel_path = Path(s.key)
            candidates = [maps / rel_path, maps / rel_path.with_suffix(".png")]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            where = candidates[0] if candidates else f"'{MAP_COLUMN}' of {s.key}"
            raise GeosynthError(f"{ds.describe(s)}: no map for this image (expected {where})")
        found[s.key] = hit
    leg = find_legend(legend, maps, root, arg="map_legend")
    img_digest = ds.digest

    def digest(sample: Sample) -> str:
        return f"{img_digest(sample)}+{file_digest(found[sample.key])}"

    # Every field of ``ds`` (raster reader, radiometry, ...) carries over; maps are added.
    fields = {f.name: getattr(ds, f.name) for f in dataclasses.fields(ds) if f.init}
    fields.update(digest=digest, maps=found, legend=leg)
    return PairedDataset(**fields)


def read_map_folder(root: Path, legend: Path | None = None, *, arg: str = "maps") -> PairedDataset:
    """A folder of maps on their own (what ``generate`` conditions on): every image file under
    ``root`` (recursively) is a map; a ``metadata.jsonl`` with a map column lists them instead,
    and a segmentation dataset (:mod:`geosynth.data.segmentation`) gives its masks. Samples are
    keyed by relative path; there are no images, so ``image()`` is not available."""
    from geosynth.data.folder import IMAGE_SUFFIXES
    from geosynth.data.segmentation import open_segmentation

    if not root.is_dir():
        raise GeosynthError(f"{arg}={str(root)!r}: no such directory")
    column = _metadata_maps(root)
    pairs = open_segmentation(root) if column is None else None
    if pairs is not None:
        rels = sorted({p.relative_to(root).as_posix() for p in pairs.maps.values()})
    elif column is not None:
        rels = sorted(set(column.values()))
    else:
        rels = sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
    if not rels:
        raise GeosynthError(f"{arg}={str(root)!r}: no map images found")
    leg = find_legend(legend, root, arg="map_legend")
    samples = [Sample(rel, 0, root / rel) for rel in rels]

    def no_image(sample: Sample) -> Image.Image:
        raise GeosynthError(f"{sample.ref}: a map folder holds no images")

    return PairedDataset(
        source=str(root),
        kind="maps",
        class_names=["map"],
        samples=samples,
        decoder=no_image,
        digest=lambda s: file_digest(Path(s.ref)),
        maps={s.key: Path(s.ref) for s in samples},
        legend=leg,
    )
