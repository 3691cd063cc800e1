"""Multi-file samples: one sample made of several single-band files stacked in a declared order.

Sentinel-1 datasets ship VV and VH as separate files (BigEarthNet-S1, reBEN, SSL4EO-S12); the
Sentinel-2 side of such datasets ships one file per band. A :class:`StackRef` names the files of
one sample and the band each holds; :func:`read_stack` reads them into one bands x H x W
:class:`~geosynth.data.raster.Raster` in that order, refusing files that do not share one grid
(size, CRS, transform) or one dtype: stacking those would silently mix pixels from different
places.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geosynth.artifacts import file_digest
from geosynth.data.raster import Raster, read_raster
from geosynth.errors import GeosynthError


@dataclass(frozen=True)
class StackRef:
    """The files of one multi-file sample, in band order, and the band name each file holds."""

    files: tuple[Path, ...]
    bands: tuple[str, ...]

    def __str__(self) -> str:
        # Messages name the sample by its folder (all files of a sample share one).
        return str(self.files[0].parent)


def find_band_files(folder: Path, bands: tuple[str, ...], pattern: str) -> StackRef:
    """The files of ``folder`` holding ``bands``: ``pattern`` formats a file name from ``band``
    and ``stem`` (the folder's name), e.g. ``"{stem}_{band}.tif"`` or ``"{band}.tif"``. A missing
    band is an error naming the file expected."""
    files = []
    for band in bands:
        f = folder / pattern.format(stem=folder.name, band=band)
        if not f.is_file():
            raise GeosynthError(
                f"{folder}: missing {band} (expected {f.name}); a sample needs every band "
                f"({', '.join(bands)})"
            )
        files.append(f)
    return StackRef(tuple(files), bands)


def read_stack(ref: StackRef) -> Raster:
    """The files of ``ref`` as one raster, bands in ``ref.bands`` order, named so.

    Every file must be single-band and share the first file's size, CRS, transform and dtype.
    Nodata: the first file's (files that declare different values are refused)."""
    parts = [read_raster(f) for f in ref.files]
    first = parts[0]
    for f, r in zip(ref.files, parts, strict=True):
        if r.count != 1:
            raise GeosynthError(f"{f}: {r.count} bands, expected a single-band file")
        for what, a, b in (
            ("size", f"{r.width}x{r.height}", f"{first.width}x{first.height}"),
            ("CRS", r.crs, first.crs),
            ("transform", r.transform, first.transform),
            ("dtype", r.dtype, first.dtype),
            ("nodata", r.nodata, first.nodata),
        ):
            if a != b and not (what == "nodata" and _both_nan(r.nodata, first.nodata)):
                raise GeosynthError(
                    f"{f}: {what} {a}, but {ref.files[0].name} has {b}; the files of one "
                    "sample must share one grid, dtype and nodata"
                )
    return Raster(
        array=np.concatenate([r.array for r in parts]),
        band_names=list(ref.bands),
        nodata=first.nodata,
        crs=first.crs,
        transform=first.transform,
    )


def _both_nan(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and bool(np.isnan(a) and np.isnan(b))


def stack_digest(ref: StackRef) -> str:
    """A content id of the sample: its files' digests, in band order."""
    return "+".join(file_digest(f) for f in ref.files)
