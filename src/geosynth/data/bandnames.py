"""Band names for files that name none, from the layout they come in.

EuroSAT-MS GeoTIFFs hold 13 unnamed uint16 bands in the order B01..B12 then B8A (B8A last; see
:data:`~geosynth.data.radiometry.EUROSAT_MS_BANDS`). A dataset is taken to be EuroSAT-MS when its
first image has 13 unnamed bands and its classes are EuroSAT's (the default radiometry makes the
same assumption for 13 unnamed bands). Sentinel-1 layouts name their bands when they are read
(:mod:`geosynth.data.sentinel1`), so they need nothing here.
"""

from __future__ import annotations

from dataclasses import replace

from geosynth.data.dataset import ImageDataset
from geosynth.data.radiometry import EUROSAT_MS_BANDS
from geosynth.data.raster import Raster

EUROSAT_CLASSES = frozenset(
    {
        "AnnualCrop",
        "Forest",
        "HerbaceousVegetation",
        "Highway",
        "Industrial",
        "Pasture",
        "PermanentCrop",
        "Residential",
        "River",
        "SeaLake",
    }
)


def layout_band_names(ds: ImageDataset, raster: Raster) -> tuple[str, ...] | None:
    """The names a known layout gives the bands of ``raster`` (an image of ``ds``), or None."""
    if raster.band_names:
        return tuple(raster.band_names)
    if raster.count == len(EUROSAT_MS_BANDS) and set(ds.class_names) <= EUROSAT_CLASSES:
        return EUROSAT_MS_BANDS
    return None


def with_layout_names(ds: ImageDataset, raster: Raster) -> Raster:
    """``raster`` with its layout's band names when the file names none."""
    names = None if raster.band_names else layout_band_names(ds, raster)
    return raster if names is None else replace(raster, band_names=list(names))
