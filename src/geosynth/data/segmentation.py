"""Segmentation datasets as they are distributed: image/mask pairs, read as a
:class:`~geosynth.data.pairdata.PairedDataset`.

* **Sibling folders**: ``images/`` and ``masks/`` side by side, anywhere in the tree
  (``Tile 1/images/x.jpg`` with ``Tile 1/masks/x.png``); inside them files may be nested, and an
  image and its mask share their path relative to their folder, up to the suffix. The folder
  holding ``images/`` is the sample's group (its class for image-level steps), the root's own
  name when ``images/`` is at the root. Images: PNG, JPEG, GeoTIFF; masks: PNG or GeoTIFF.
* **A table of pairs**: a CSV or JSON-lines file with an image column (``image``, ``file_name``,
  ``image_path``, ``img``) and a mask column (``mask``, ``mask_file_name``, ``mask_path``,
  ``map_file``, ``annotation``), paths relative to the table's folder; optional ``class_name``
  (else one group named after the table). A geosynth image folder whose ``metadata.jsonl`` has a
  ``mask_file_name`` column is such a table (its ``label`` and ``class_name`` kept); seed 004's
  ``map_file`` column there keeps meaning maps read on request (:mod:`geosynth.data.paired`).
* **Hugging Face datasets** with an image column and a mask column: :mod:`geosynth.data.hf`.

Every mask must have an image and every image a mask; both are errors naming the file. The
legend comes from ``map_legend``, else ``legend.json`` (or the dataset's ``classes.json``) at
the root; without one the pairs still read as images, and reading a mask asks for it.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from geosynth.artifacts import file_digest
from geosynth.data.dataset import Sample
from geosynth.data.folder import IMAGE_SUFFIXES, METADATA_NAME
from geosynth.data.pairdata import PairedDataset
from geosynth.data.raster import Raster, read_raster
from geosynth.errors import GeosynthError

IMAGES_DIR = "images"
MASKS_DIR = "masks"
IMAGE_COLUMNS = ("image", "file_name", "image_path", "img")
MASK_COLUMNS = ("mask", "mask_file_name", "mask_path", "map_file", "annotation")
TABLE_SUFFIXES = (".csv", ".jsonl")
#: The mask column of a geosynth image folder's metadata.jsonl that makes it a segmentation
#: dataset (``datasets`` reads ``<name>_file_name`` columns as image features).
FOLDER_MASK_COLUMN = "mask_file_name"


def _files(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(dirpath) / f


def sibling_folders(root: Path) -> list[Path]:
    """Folders under ``root`` (itself included) holding both ``images/`` and ``masks/``."""
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        names = {d.lower(): d for d in dirnames}
        if IMAGES_DIR in names and MASKS_DIR in names:
            found.append(Path(dirpath))
            dirnames[:] = []  # the pairs' own folders hold no further pairs
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return sorted(found)


def _child(folder: Path, name: str) -> Path:
    return next(d for d in folder.iterdir() if d.is_dir() and d.name.lower() == name)


def _by_stem(folder: Path, what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in _files(folder):
        stem = f.relative_to(folder).with_suffix("").as_posix()
        if stem in out:
            raise GeosynthError(f"{f}: two {what} share the name {stem} ({out[stem].name})")
        out[stem] = f
    return out


def _open(sample: Sample) -> Image.Image:
    return Image.open(sample.ref)


def _raster(sample: Sample) -> Raster:
    return read_raster(sample.ref)


def _pair_digest(masks: dict[str, Path]) -> Callable[[Sample], str]:
    def digest(sample: Sample) -> str:
        return f"{file_digest(Path(sample.ref))}+{file_digest(masks[sample.key])}"

    return digest


def _dataset(
    root: Path, kind: str, groups: list[str], pairs: list[tuple[str, int, Path, Path]]
) -> PairedDataset:
    """A PairedDataset of (key, label, image, mask) pairs."""
    if not pairs:
        raise GeosynthError(f"{root}: no image/mask pairs found")
    masks = {key: mask for key, _, _, mask in pairs}
    return PairedDataset(
        source=str(root),
        kind=kind,
        class_names=groups,
        samples=[Sample(key, label, image) for key, label, image, _ in pairs],
        decoder=_open,
        digest=_pair_digest(masks),
        raster_decoder=_raster,
        maps=masks,
    )


def read_sibling_folders(root: Path, folders: list[Path]) -> PairedDataset:
    """The pairs of every ``images/`` + ``masks/`` folder in ``folders`` (under ``root``)."""
    names = [f.relative_to(root).as_posix() if f != root else root.resolve().name for f in folders]
    groups = sorted(set(names))
    pairs: list[tuple[str, int, Path, Path]] = []
    for folder, name in zip(folders, names, strict=True):
        img_dir, mask_dir = _child(folder, IMAGES_DIR), _child(folder, MASKS_DIR)
        images, masks = _by_stem(img_dir, "images"), _by_stem(mask_dir, "masks")
        for stem, mask in masks.items():
            if stem not in images:
                raise GeosynthError(
                    f"{mask}: a mask with no image (expected {img_dir / stem}.png, .jpg or .tif)"
                )
        for stem, image in images.items():
            if stem not in masks:
                raise GeosynthError(
                    f"{image}: an image with no mask (expected {mask_dir / stem}.png or .tif)"
                )
            key = image.relative_to(root).as_posix()
            pairs.append((key, groups.index(name), image, masks[stem]))
    pairs.sort(key=lambda p: (p[1], p[0]))
    return _dataset(root, "pairs", groups, pairs)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="") as f:
                return [dict(r) for r in csv.DictReader(f)]
        rows = []
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"line {lineno} is not a JSON object")
                rows.append(row)
        return rows
    except (OSError, ValueError, csv.Error) as exc:
        raise GeosynthError(f"{path}: not a readable table of pairs ({exc})") from None


def mask_column(row: dict[str, Any]) -> str | None:
    return next((c for c in MASK_COLUMNS if c in row), None)


def is_pair_table(path: Path) -> bool:
    """A CSV / JSON-lines file, or a folder whose metadata.jsonl has a mask column."""
    columns: tuple[str, ...] = MASK_COLUMNS
    if path.is_dir():
        path = path / METADATA_NAME
        if not path.is_file():
            return False
        # an image folder's maps (seed 004's map_file) are read on request (attach_maps);
        # the segmentation datasets geosynth writes name their masks mask_file_name
        columns = (FOLDER_MASK_COLUMN,)
    elif path.suffix.lower() not in TABLE_SUFFIXES:
        return False
    try:
        with path.open() as f:
            head = f.readline()
    except OSError:
        return False
    if path.suffix.lower() == ".csv":
        return any(c.strip() in columns for c in head.split(","))
    try:
        first = json.loads(head)
    except ValueError:
        return False
    return isinstance(first, dict) and any(c in first for c in columns)


def read_pair_table(path: Path) -> PairedDataset:
    """Pairs listed in a table (module docstring); a folder means its metadata.jsonl."""
    table = path / METADATA_NAME if path.is_dir() else path
    base = table.parent
    rows = _read_rows(table)
    if not rows:
        raise GeosynthError(f"{table}: lists no pairs")
    image_col = next((c for c in IMAGE_COLUMNS if c in rows[0]), None)
    mask_col = mask_column(rows[0])
    if image_col is None or mask_col is None:
        raise GeosynthError(
            f"{table}: needs an image column ({', '.join(IMAGE_COLUMNS)}) and a mask column "
            f"({', '.join(MASK_COLUMNS)}); it has {', '.join(rows[0])}"
        )
    labelled = "label" in rows[0] and "class_name" in rows[0]
    group_names: dict[int, str] = {}
    entries = []
    for lineno, row in enumerate(rows, start=2 if table.suffix == ".csv" else 1):
        try:
            image, mask = base / str(row[image_col]), base / str(row[mask_col])
            if labelled:
                label, name = int(row["label"]), str(row["class_name"])
            else:
                label, name = -1, str(row.get("class_name") or table.parent.resolve().name)
        except (KeyError, TypeError, ValueError) as exc:
            raise GeosynthError(
                f"{table}:{lineno}: bad row ({type(exc).__name__}: {exc})"
            ) from None
        if not image.is_file():
            raise GeosynthError(f"{table}:{lineno}: image {image} does not exist")
        if not mask.is_file():
            raise GeosynthError(f"{table}:{lineno}: mask {mask} does not exist (image {image})")
        if labelled and group_names.setdefault(label, name) != name:
            raise GeosynthError(f"{table}:{lineno}: label {label} is '{name}' here but "
                                f"'{group_names[label]}' before")  # fmt: skip
        entries.append((str(row[image_col]), label, name, image, mask))
    if labelled:
        # the groups that hold pairs, in label order (generated pairs are labelled by their
        # landscape, and a legend class need not be any pair's landscape)
        present = sorted(group_names)
        groups = [group_names[i] for i in present]
    else:
        groups = sorted({e[2] for e in entries})
    pairs = [
        (key, present.index(label) if labelled else groups.index(name), image, mask)
        for key, label, name, image, mask in entries
    ]
    keys = [p[0] for p in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise GeosynthError(f"{table}: image {dup} is listed twice")
    pairs.sort(key=lambda p: (p[1], p[0]))
    kind = "imagefolder" if table.name == METADATA_NAME else "pair table"
    return _dataset(base if table.name == METADATA_NAME else table, kind, groups, pairs)


def open_segmentation(path: Path) -> PairedDataset | None:
    """The segmentation dataset at ``path`` (a pair table, or a folder with a mask column in
    its metadata.jsonl or with sibling images/ + masks/ folders), or None if it is none."""
    if is_pair_table(path):
        return read_pair_table(path)
    if not path.is_dir() or (path / METADATA_NAME).is_file():
        return None
    folders = sibling_folders(path)
    return read_sibling_folders(path, folders) if folders else None
