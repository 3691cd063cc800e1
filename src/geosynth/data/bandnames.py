"""Band names: the one place that says what a raster's bands are called.

A file names its bands itself (GeoTIFF band descriptions: generated chips, tiled Sentinel-1
VV/VH, the Sentinel-1 layouts as they are read), or it names none and its layout does:
EuroSAT-MS GeoTIFFs hold 13 unnamed uint16 bands in the order B01..B12 then B8A (B8A last), so
true colour is indices (3, 2, 1). Every reader of names (``data info``, ``--bands``, the
radiometry spec's ``file_bands``, the pixel metrics of ``evaluate``) asks here, so a band shown
as ``B04`` by ``data info`` is ``B04`` everywhere, and a spec that names bands a file does not
name gets a hint saying what to add.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from geosynth.data.raster import Raster

#: Sentinel-2 true colour, by band name.
S2_TRUE_COLOUR = ("B04", "B03", "B02")
#: EuroSAT-MS stores its 13 bands as B01..B12 then B8A (B8A last): true colour is (3, 2, 1).
EUROSAT_MS_BANDS = (
    *("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12"),
    "B8A",
)
#: Known band orders for files that do not name their bands (a radiometry spec's ``file_bands``).
BAND_ORDERS: dict[str, tuple[str, ...]] = {"eurosat-ms": EUROSAT_MS_BANDS}


def known_layout(raster: Raster) -> str | None:
    """The known band order (a key of :data:`BAND_ORDERS`) of a file that names no bands, or
    None. 13 unnamed bands are Sentinel-2 L1C in EuroSAT-MS order: the only 13-band order
    geosynth knows (the default radiometry spec makes the same assumption)."""
    if raster.band_names:
        return None
    for layout, names in BAND_ORDERS.items():
        if raster.count == len(names):
            return layout
    return None


def band_names(raster: Raster, file_bands: Sequence[str] | str | None = None) -> list[str] | None:
    """The names of ``raster``'s bands: the file's own, else ``file_bands`` (a list or a key of
    :data:`BAND_ORDERS`) when given, else its known layout's; None when nothing names them."""
    if raster.band_names:
        return list(raster.band_names)
    if file_bands is not None:
        return list(BAND_ORDERS[file_bands] if isinstance(file_bands, str) else file_bands)
    layout = known_layout(raster)
    return None if layout is None else list(BAND_ORDERS[layout])


def named(raster: Raster) -> Raster:
    """``raster`` with band names when the file names none but its layout does."""
    if raster.band_names:
        return raster
    names = band_names(raster)
    return raster if names is None else replace(raster, band_names=names)


def band_label(names: Sequence[str] | None, index: int) -> str:
    """How a band is labelled in reports: its name, else ``band<index>`` (0-based, like the
    indices ``--bands`` takes)."""
    return names[index] if names else f"band{index}"


def missing_band_hint(raster: Raster, band: int | str) -> str:
    """Words to add to "band X is not in the file" when the file names no bands but a known
    layout would: what to add to the radiometry spec ("" when there is nothing to say)."""
    if isinstance(band, int) or raster.band_names:
        return ""
    layout = known_layout(raster)
    if layout is None or band not in BAND_ORDERS[layout]:
        return ""
    return (
        f"; the file names no bands, but it looks like {layout} ({', '.join(BAND_ORDERS[layout])}"
        f', as `data info` shows them): add "file_bands": "{layout}" to the spec'
    )
