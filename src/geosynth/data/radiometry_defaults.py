"""Which radiometry spec applies: the default by what the data looks like, the check that a stored spec
still fits, and the reading of a spec from a dict, a JSON file or a preset name."""

from __future__ import annotations

from typing import Any

from geosynth.artifacts.jsontext import json_text
from geosynth.data.bandnames import S2_TRUE_COLOUR, known_layout
from geosynth.data.radiometry import DEFAULT_PERCENTILES, Radiometry
from geosynth.data.raster import Raster
from geosynth.errors import GeosynthError


# -------------------------------------------------------------------- defaults per detected kind
def default_radiometry(r: Raster) -> Radiometry | None:
    """The spec used when the user gives none, by what the data looks like; None for 8-bit
    1-, 3- or 4-band images (the classic RGB pipeline, unchanged).

    * float, 1-2 bands: SAR; values with negatives are taken as dB, else linear power; ranges
      from the 1st-99th percentiles in dB of the training set.
    * integer (16/32-bit), 1-2 bands: SAR amplitude (DN), same ranges.
    * either, when the first image holds zeros (and no negatives): the same in linear scale (dB
      of zero needs a floor, which only the user can choose).
    * 3+ bands: optical; Sentinel-2 true colour (B04, B03, B02) when the file names its bands so,
      or for 13 unnamed bands read in EuroSAT-MS order (``file_bands="eurosat-ms"``: B8A last,
      so true colour is indices 3, 2, 1), else the first three; per-band 1st-99th percentile
      ranges of the training set.
    """
    dtype, n = r.dtype, r.count
    if dtype == "uint8" and n in (1, 3, 4):
        return None
    if n in (1, 2) and dtype != "uint8":
        vals = r.array[r.valid_mask()]
        low = float(vals.min()) if vals.size else 1.0
        if dtype.startswith("float") and low < 0:
            units, scale = "db", "db"  # negative backscatter: already in dB
        else:
            units = "power" if dtype.startswith("float") else "amplitude"
            # dB needs positive values; data with zeros stays linear rather than inventing a floor.
            scale = "db" if low > 0 else "linear"
        return Radiometry(
            kind="sar",
            bands=tuple(range(n)),
            percentiles=DEFAULT_PERCENTILES,
            units=units,
            scale=scale,
        )
    names = r.band_names or []
    if all(b in names for b in S2_TRUE_COLOUR):
        bands: tuple[int | str, ...] = S2_TRUE_COLOUR
    elif (layout := known_layout(r)) is not None:  # 13 unnamed bands: EuroSAT-MS order
        return Radiometry(
            kind="optical",
            bands=S2_TRUE_COLOUR,
            file_bands=layout,
            percentiles=DEFAULT_PERCENTILES,
        )
    elif n >= 3:
        bands = (0, 1, 2)
    else:
        bands = (0,)
    return Radiometry(kind="optical", bands=bands, percentiles=DEFAULT_PERCENTILES)


def check_same_spec(stored: dict[str, Any] | None, current: Radiometry | None, where: str) -> None:
    """Refuse an artifact made with another radiometry than the data or command at hand."""
    a = None if stored is None else _identity(Radiometry.from_dict(stored, where=where))
    b = None if current is None else _identity(current)
    if a != b:
        have = "none (8-bit RGB)" if a is None else Radiometry.from_dict(stored).describe()  # type: ignore[arg-type]
        want = "none (8-bit RGB)" if current is None else current.describe()
        raise GeosynthError(
            f"{where}: made with radiometry {have}, but this run uses {want}; use the same "
            "spec (`radiometry` as the artifact records it) or redo the artifact"
        )


def _identity(spec: Radiometry) -> str:
    """The spec's JSON without the georeference it records: files of one dataset differ in pixel
    size (EuroSAT-MS: 9.99..10.01 m), which says nothing about how values are mapped."""
    d = spec.to_dict()
    d.pop("pixel_size", None)
    d.pop("file_nodata", None)
    return json_text(d, sort_keys=True)


def radiometry_from(value: Radiometry | dict[str, Any] | str | None) -> Radiometry | None:
    """Accept a spec, its dict, its JSON text or file, or an artifact that records one
    (:func:`~geosynth.data.radiometry_sources.load_radiometry`)."""
    from geosynth.data.radiometry_sources import load_radiometry

    return None if value is None else load_radiometry(value)
