"""Write image datasets: ``<out>/<class>/<id>.png`` plus ``metadata.jsonl``, atomically.

A dataset card (``README.md``, :mod:`geosynth.data.card`) makes ``datasets.load_dataset(out)``
read ``label`` as a ClassLabel with the class names; :func:`geosynth.data.open_dataset` reads the
same labels and names from ``metadata.jsonl``. The root holds only class folders, so
torchvision's ``ImageFolder`` and timm see exactly the classes (numbered by sorted folder name).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

from PIL import Image

from geosynth.artifacts import (
    DIR_PROVENANCE_NAME,
    Provenance,
    atomic_path,
    output_path,
    write_provenance,
)
from geosynth.artifacts.jsontext import json_text
from geosynth.data.card import CARD_NAME, write_dataset_card
from geosynth.data.dataset import ImageDataset
from geosynth.data.folder import METADATA_NAME
from geosynth.data.metadata import GEOREFERENCE
from geosynth.data.names import safe_dirname
from geosynth.data.raster import Raster, write_raster
from geosynth.data.sentinel1 import LAYOUTS as SENTINEL1_LAYOUTS
from geosynth.errors import GeosynthError


def check_output_dir(out: Path, what: str = "out") -> None:
    """Refuse to replace a directory that geosynth did not write (it has no provenance.json);
    errors name the parameter ``what`` the directory came from."""
    out = output_path(out)
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / DIR_PROVENANCE_NAME).exists())
    ):
        raise GeosynthError(
            f"{what}={str(out)!r}: exists and is not a geosynth output; choose a new path or "
            "remove it"
        )


class ImageFolderWriter:
    """Collect images into a temporary folder that becomes ``out`` only when the block succeeds.

    >>> with ImageFolderWriter(out, class_names, provenance) as w:   # doctest: +SKIP
    ...     w.add(img, label=0, seed=123)
    """

    def __init__(
        self, out: str | os.PathLike[str], class_names: Sequence[str], provenance: Provenance
    ):
        self.out = output_path(out)
        check_output_dir(self.out)
        self.class_names = list(class_names)
        self.dirnames = [safe_dirname(c) for c in self.class_names]
        if len(set(self.dirnames)) != len(self.dirnames):
            raise GeosynthError(f"class names {self.class_names} map to clashing folder names")
        for name, d in zip(self.class_names, self.dirnames, strict=True):
            if d in (METADATA_NAME, DIR_PROVENANCE_NAME, CARD_NAME):
                raise GeosynthError(f"class name '{name}': its folder '{d}' is a reserved name")
        self.provenance = provenance
        self.rows: list[dict[str, Any]] = []
        self._counts = [0] * len(self.class_names)
        self._taken: set[str] = set()
        self._stack = ExitStack()
        self.tmp: Path | None = None

    def __enter__(self) -> ImageFolderWriter:
        self.tmp = self._stack.enter_context(atomic_path(self.out))
        self.tmp.mkdir(parents=True)
        return self

    def _folder(self) -> Path:
        """The temporary folder being filled; an error (not an ``assert``, which ``python -O``
        strips) when the writer is used outside its ``with`` block."""
        if self.tmp is None:
            raise GeosynthError(
                f"out={str(self.out)!r}: use ImageFolderWriter as a context manager "
                "(with ImageFolderWriter(...) as w: w.add(...))"
            )
        return self.tmp

    def add(self, image: Image.Image, label: int, image_id: str | None = None, **extra: Any) -> str:
        """Save one image as PNG; ``extra`` (prompt, seed, source, ...) goes into its metadata row."""
        tmp = self._folder()
        if not 0 <= label < len(self.class_names):
            raise GeosynthError(f"label {label} out of range for {len(self.class_names)} classes")
        image_id = image_id or f"{self._counts[label]:06d}"
        self._counts[label] += 1
        rel = f"{self.dirnames[label]}/{image_id}.png"
        if rel in self._taken:
            raise GeosynthError(
                f"image id '{image_id}' is used twice in class '{self.class_names[label]}'"
            )
        self._taken.add(rel)
        target = tmp / rel
        target.parent.mkdir(exist_ok=True)
        image.save(target, format="PNG")
        self.rows.append(
            {"file_name": rel, "label": label, "class_name": self.class_names[label], **extra}
        )
        return rel

    def add_raster(
        self, raster: Raster, label: int, image_id: str | None = None, **extra: Any
    ) -> str:
        """Save one raster as a GeoTIFF in native units (dtype, bands, CRS, transform kept)."""
        tmp = self._folder()
        if not 0 <= label < len(self.class_names):
            raise GeosynthError(f"label {label} out of range for {len(self.class_names)} classes")
        image_id = image_id or f"{self._counts[label]:06d}"
        self._counts[label] += 1
        rel = f"{self.dirnames[label]}/{image_id}.tif"
        target = tmp / rel
        target.parent.mkdir(exist_ok=True)
        write_raster(target, raster)
        self.rows.append(
            {"file_name": rel, "label": label, "class_name": self.class_names[label], **extra}
        )
        return rel

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            tmp = self._folder()
            lines = [json_text(r, default=str) for r in self.rows]
            (tmp / METADATA_NAME).write_text("".join(line + "\n" for line in lines))
            rows = [json.loads(line) for line in lines]  # the values as readers will see them
            write_dataset_card(tmp, self.class_names, rows, "geosynth image folder")
            write_provenance(tmp, self.provenance)
        self._stack.__exit__(exc_type, exc, tb)


def is_plain_rgb(ds: ImageDataset, raster: Raster) -> bool:
    """8-bit, not georeferenced and read without a radiometry spec: the classic PNG path."""
    return (
        ds.radiometry is None
        and raster.dtype == "uint8"
        and raster.count in (1, 3, 4)
        and raster.crs is None
        and raster.transform is None
    )


def export_dataset(
    ds: ImageDataset,
    out: str | os.PathLike[str],
    provenance: Provenance,
    progress: Iterable[int] | None = None,
) -> Path:
    """Write ``ds`` (e.g. a K-shot split) as a geosynth imagefolder; each row names its source.

    8-bit images that carry no georeference are written as PNG (as decoded); everything else
    (16-bit, float, multispectral, georeferenced) as GeoTIFF in native units, bit for bit, with
    CRS, transform, nodata and band names. One dataset must have one band count and dtype.
    Metadata the files would lose (acquisition date, cloud cover, sidecar columns) goes into
    each row (:func:`carried_metadata`).
    """
    indices = progress if progress is not None else range(len(ds))
    # Files keep their names (Sentinel-1 samples: their patch or scene folder's).
    ids = export_ids(ds) if ds.kind in ("imagefolder", *SENTINEL1_LAYOUTS) else {}
    first: tuple[int, str, str] | None = None
    with ImageFolderWriter(out, ds.class_names, provenance) as w:
        for i in indices:
            s = ds.samples[i]
            stem = ids.get(i)
            raster = ds.raster(i)
            if first is None:
                first = (raster.count, raster.dtype, ds.describe(s))
            elif (raster.count, raster.dtype) != first[:2]:
                raise GeosynthError(mixed_message(ds.describe(s), raster, first))
            meta = carried_metadata(ds, i)
            if is_plain_rgb(ds, raster):
                w.add(ds.image(i), s.label, image_id=stem, source=ds.describe(s), **meta)
            else:
                w.add_raster(raster, s.label, image_id=stem, source=ds.describe(s), **meta)
    return Path(out)


def carried_metadata(ds: ImageDataset, index: int) -> dict[str, Any]:
    """The metadata of sample ``index`` that its written file would not carry by itself, for
    its ``metadata.jsonl`` row: date, cloud cover, sidecar columns, and lon/lat/GSD unless they
    come from the georeference (which the GeoTIFF keeps)."""
    m = ds.metadata(index)
    row = {k: v for k, v in m.to_dict().items() if v is not None and k not in _ROW_KEYS}
    return {k: v for k, v in row.items() if m.sources.get(k) != GEOREFERENCE}


_ROW_KEYS = frozenset({"file_name", "label", "class_name", "source"})


def mixed_message(where: str, raster: Raster, first: tuple[int, str, str]) -> str:
    """The error for a dataset whose images differ in band count or dtype."""
    return (
        f"{where}: {raster.count} band(s) of {raster.dtype}, but {first[2]} has {first[0]} of "
        f"{first[1]}; one dataset must have one band count and dtype"
    )


def export_ids(ds: ImageDataset) -> dict[int, str]:
    """Image ids for an exported imagefolder: the file stem, and for files whose stems clash
    within a class (``a.png`` and ``a.jpg``, or ``x/a.png`` and ``y/a.png``) the whole source
    path with separators and dots turned into ``_`` (``a_png``, ``a_jpg``), so that every image
    is kept under a stable name (the same selection always gives the same names)."""
    stems: dict[tuple[int, str], list[int]] = {}
    for i, s in enumerate(ds.samples):
        stems.setdefault((s.label, Path(s.key).stem), []).append(i)
    ids: dict[int, str] = {}
    for (_, stem), members in stems.items():
        for i in members:
            key = ds.samples[i].key
            ids[i] = stem if len(members) == 1 else re.sub(r"[^A-Za-z0-9_-]+", "_", key).strip("_")
    used: dict[tuple[int, str], int] = {}
    for i, image_id in ids.items():
        other = used.setdefault((ds.samples[i].label, image_id), i)
        if other != i:
            raise GeosynthError(
                f"{ds.source}: images '{ds.samples[other].key}' and '{ds.samples[i].key}' would "
                f"both be exported as '{image_id}'; rename one of them"
            )
    return ids
