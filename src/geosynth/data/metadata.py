"""Where, when and at what resolution: the metadata a sample already carries.

Every sample has the same five fields, each missing (None) when its data cannot tell it; a value
is never guessed:

* ``lon``, ``lat``: the image centre in WGS84 degrees: the centre point (width / 2, height / 2,
  in pixel coordinates) through the raster's full affine transform (rotations included), then
  from its CRS to EPSG:4326 (GDAL's transformation, through rasterio);
* ``gsd``: ground sample distance in metres: the mean of the two pixel sides, each the norm of a
  column of the affine transform (so rotation does not change it), in the CRS's linear unit
  (projected CRSs: the map-grid size, as a Sentinel-2 "10 m" band has it), or for geographic
  CRSs the angular sides converted to metres on the WGS84 ellipsoid at the sample's latitude;
* ``cloud_cover``: the cloudy fraction of the scene, 0..1, where a source gives one;
* ``date``: the acquisition date (ISO 8601, ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SS``, UTC where
  the source says so), from the dataset's own metadata or the file's date tags.

Sources, later ones winning: the georeference; the file's date tags (:data:`DATE_TAGS`); the
dataset's own metadata (BigEarthNet-S1 ``*_labels_metadata.json``, SSL4EO-S12 ``metadata.json``,
a geosynth imagefolder's ``metadata.jsonl`` columns); a sidecar table the user gives
(:mod:`geosynth.data.dataset_metadata`), whose other columns are kept as extra fields.

Models condition on DiffusionSat's seven fields (:data:`MODEL_FIELDS`); ``date`` stands for its
year, month and day. :func:`parse_metadata_values` reads what a user asks for
(``lat=25.2,lon=55.3,gsd=0.5,date=2023-06-01``) and :func:`parse_metadata_fields` the fields a
model is trained with.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from geosynth.data.raster import Raster, RasterHeader, read_header
from geosynth.data.stack import StackRef
from geosynth.errors import GeosynthError

#: The fields every sample has (None where unknown).
FIELDS = ("lon", "lat", "gsd", "cloud_cover", "date")
#: DiffusionSat's metadata vector, in its order.
MODEL_FIELDS = ("lon", "lat", "gsd", "cloud_cover", "year", "month", "day")
#: GeoTIFF tags read as the acquisition date, in this order of preference. TIFFTAG_DATETIME is
#: TIFF's "date and time of image creation", which some writers set to the processing time:
#: ``data info`` names the tag each date came from.
DATE_TAGS = (
    "ACQUISITION_DATE",
    "ACQUISITIONDATETIME",
    "ACQUISITION_DATETIME",
    "ACQUISITION_TIME",
    "DATE_ACQUIRED",
    "TIFFTAG_DATETIME",
)
#: Source names, as ``data info`` reports them.
GEOREFERENCE = "georeference"
TABLE = "metadata_table"

# WGS84 ellipsoid: semi-major axis (m) and first eccentricity squared.
_WGS84_A = 6378137.0
_WGS84_E2 = 0.00669437999014
_RANGES = {"lon": (-180.0, 180.0), "lat": (-90.0, 90.0), "cloud_cover": (0.0, 1.0)}
_INT_RANGES = {"month": (1, 12), "day": (1, 31), "year": (1, 9999)}
_TIFF_DATE = re.compile(r"^(\d{4}):(\d{2}):(\d{2})(?:[ T](.*))?$")
_DATE_ONLY = re.compile(r"^\d{4}-?\d{2}-?\d{2}$")
# ESA product names: MMM_BB_TTTR_LFPP_YYYYMMDDTHHMMSS_... (the sensing start, UTC).
_S1_PRODUCT = re.compile(r"^S1[A-D]_[A-Z0-9]{2}_[A-Z]{3}[A-Z_]_[0-9][A-Z]{3}_(\d{8}T\d{6})_")

#: A source's own metadata for one sample: field -> (value, source name).
OwnFields = Mapping[str, tuple[Any, str]]


@dataclass(frozen=True)
class SampleMetadata:
    """The metadata of one sample (module docstring); ``sources`` names where each known field
    came from, ``extra`` holds a sidecar table's other columns."""

    lon: float | None = None
    lat: float | None = None
    gsd: float | None = None
    cloud_cover: float | None = None
    date: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The five fields (None where unknown), then the extra columns."""
        return {**{f: getattr(self, f) for f in FIELDS}, **self.extra}

    def model_values(self) -> dict[str, float | None]:
        """DiffusionSat's seven fields in native units (year, month, day from ``date``)."""
        when = None if self.date is None else datetime.fromisoformat(self.date)
        return {
            "lon": self.lon,
            "lat": self.lat,
            "gsd": self.gsd,
            "cloud_cover": self.cloud_cover,
            "year": None if when is None else float(when.year),
            "month": None if when is None else float(when.month),
            "day": None if when is None else float(when.day),
        }


def parse_date(value: Any, where: str) -> str:
    """``value`` as an ISO 8601 date (``YYYY-MM-DD``) or date-time (``YYYY-MM-DDTHH:MM:SS``,
    converted to UTC when it names a zone); TIFF's ``YYYY:MM:DD HH:MM:SS`` and the basic form
    ``YYYYMMDD[THHMMSS]`` are read too. Anything else raises, naming ``where``."""
    text = str(value).strip() if isinstance(value, str | datetime) else None
    if text is not None:
        m = _TIFF_DATE.match(text)
        if m:
            text = f"{m[1]}-{m[2]}-{m[3]}" + (f"T{m[4]}" if m[4] else "")
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            when = None
        if when is not None:
            if when.tzinfo is not None:
                when = when.astimezone(UTC).replace(tzinfo=None)
            if _DATE_ONLY.match(text):
                return when.date().isoformat()
            return when.isoformat(timespec="seconds")
    raise GeosynthError(
        f"{where}: date={value!r}: not a date (expected YYYY-MM-DD or an ISO 8601 date-time)"
    )


def check_field(name: str, value: Any, where: str) -> Any:
    """``value`` of field ``name`` checked and in canonical form (float, or ISO date text);
    an impossible value (latitude 95, cloud cover 1.5, GSD 0) raises, naming ``where``."""
    if name == "date":
        return parse_date(value, where)
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or not math.isfinite(x):
        raise GeosynthError(f"{where}: {name}={value!r}: expected a finite number")
    if name == "gsd" and x <= 0:
        raise GeosynthError(f"{where}: gsd={value!r}: must be positive (metres per pixel)")
    if name in _RANGES:
        lo, hi = _RANGES[name]
        if not lo <= x <= hi:
            what = " (a fraction: divide percentages by 100)" if name == "cloud_cover" else ""
            raise GeosynthError(
                f"{where}: {name}={value!r}: must be between {lo:g} and {hi:g}{what}"
            )
    if name in _INT_RANGES:
        lo_i, hi_i = _INT_RANGES[name]
        if x != int(x) or not lo_i <= x <= hi_i:
            raise GeosynthError(f"{where}: {name}={value!r}: must be a whole number {lo_i}..{hi_i}")
    return x


def georeference_fields(
    crs: str | None, transform: Sequence[float] | None, width: int, height: int
) -> dict[str, float]:
    """``lon``, ``lat`` and ``gsd`` of a raster's centre (module docstring); empty without a CRS
    or transform, and without ``gsd`` for CRSs that are neither projected nor geographic."""
    if crs is None or transform is None:
        return {}
    from rasterio.crs import CRS
    from rasterio.warp import transform as warp

    a, b, c, d, e, f = (float(v) for v in transform[:6])
    x = a * width / 2 + b * height / 2 + c
    y = d * width / 2 + e * height / 2 + f
    out: dict[str, float] = {}
    try:
        src = CRS.from_user_input(crs)
    except Exception:  # not a CRS GDAL knows
        return out
    try:
        lons, lats = warp(src, "EPSG:4326", [x], [y])
        lon, lat = float(lons[0]), float(lats[0])
    except Exception:  # GDAL refuses CRSs it cannot transform (local, engineering)
        lon = lat = math.nan
    if math.isfinite(lon) and math.isfinite(lat) and -90 <= lat <= 90:
        out["lon"] = (lon + 180.0) % 360.0 - 180.0 if not -180 <= lon <= 180 else lon
        out["lat"] = lat
    if src.is_projected:  # the map grid's size, wherever the sample is
        try:
            kx = ky = float(src.linear_units_factor[1])
        except Exception:  # a unit GDAL cannot convert to metres
            return out
    elif src.is_geographic and "lat" in out:
        rad = float(src.units_factor[1])  # radians per angular unit
        s = math.sin(math.radians(lat))
        w = 1.0 - _WGS84_E2 * s * s
        kx = _WGS84_A / math.sqrt(w) * math.cos(math.radians(lat)) * rad  # prime vertical
        ky = _WGS84_A * (1.0 - _WGS84_E2) / w**1.5 * rad  # meridian
    else:
        return out
    sx, sy = math.hypot(a * kx, d * ky), math.hypot(b * kx, e * ky)
    if sx > 0 and sy > 0:
        out["gsd"] = (sx + sy) / 2
    return out


def date_from_tags(tags: Mapping[str, str]) -> tuple[str, str] | None:
    """(date, tag) from the first of :data:`DATE_TAGS` that holds a date; a tag that does not
    parse (TIFF's blank ``0000:00:00 00:00:00``) tells nothing."""
    for tag in DATE_TAGS:
        if tags.get(tag):
            try:
                return parse_date(tags[tag], tag), tag
            except GeosynthError:
                continue
    return None


def product_date(name: str) -> str | None:
    """The sensing start in a Sentinel-1 product or patch name (ESA's naming convention:
    ``S1A_IW_GRDH_1SDV_20170613T165043_...``), or None for other names."""
    m = _S1_PRODUCT.match(name)
    return None if m is None else parse_date(m[1], name)


def ssl4eo_fields(path: Path) -> dict[str, tuple[Any, str]]:
    """Date (``system:time_start``, ms since 1970 UTC, Earth Engine's sensing start) and, for
    Sentinel-2 scenes, cloud cover (``CLOUDY_PIXEL_PERCENTAGE`` / 100) of an SSL4EO-S12
    ``metadata.json``; empty when the file is absent."""
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GeosynthError(f"{path}: expected the scene's JSON metadata ({exc})") from None
    out: dict[str, tuple[Any, str]] = {}
    start = meta.get("system:time_start") if isinstance(meta, dict) else None
    if isinstance(start, int | float) and not isinstance(start, bool):
        when = datetime.fromtimestamp(start / 1000.0, UTC).replace(tzinfo=None)
        out["date"] = (when.isoformat(timespec="seconds"), path.name)
    cloud = meta.get("CLOUDY_PIXEL_PERCENTAGE") if isinstance(meta, dict) else None
    if isinstance(cloud, int | float) and not isinstance(cloud, bool):
        out["cloud_cover"] = (float(cloud) / 100.0, path.name)
    return out


def _header(ref: Any) -> RasterHeader | None:
    if isinstance(ref, StackRef):  # the files of one sample share one grid (read_stack checks)
        return read_header(ref.files[0])
    if isinstance(ref, str | Path):
        return read_header(ref)
    return None


def read_sample_metadata(
    ref: Any,
    *,
    raster: Callable[[], Raster],
    own: OwnFields | None = None,
    row: Mapping[str, Any] | None = None,
    where: str,
) -> SampleMetadata:
    """The metadata of the sample whose reader handle is ``ref`` (a path or a
    :class:`~geosynth.data.stack.StackRef`: only the header is read; anything else:
    ``raster()`` is decoded), with the source's ``own`` fields and a sidecar ``row`` (already
    checked) on top."""
    header = _header(ref)
    if header is None:
        r = raster()
        header = RasterHeader(r.width, r.height, r.crs, r.transform)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if header.width is not None and header.height is not None:
        for name, v in georeference_fields(
            header.crs, header.transform, header.width, header.height
        ).items():
            values[name], sources[name] = v, GEOREFERENCE
    tagged = date_from_tags(header.tags)
    if tagged is not None:
        values["date"], sources["date"] = tagged
    for name, (v, source) in (own or {}).items():
        if v is not None:
            values[name], sources[name] = check_field(name, v, f"{where} ({source})"), source
    extra: dict[str, Any] = {}
    for name, v in (row or {}).items():
        if name in FIELDS:
            if v is not None:
                values[name], sources[name] = v, TABLE
        else:
            extra[name] = v
    return SampleMetadata(**values, extra=extra, sources=sources)


def parse_metadata_fields(text: str | Sequence[str], what: str = "metadata") -> tuple[str, ...]:
    """The model fields named by ``text`` (``lon,lat,gsd,date``; ``date`` is year, month and
    day), in DiffusionSat's order; an unknown or repeated name raises, naming ``what``."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    chosen: set[str] = set()
    for n in filter(None, names):
        expanded = ("year", "month", "day") if n == "date" else (n,)
        if n not in MODEL_FIELDS and n != "date":
            raise GeosynthError(
                f"`{what}`: unknown field '{n}' (fields: {', '.join(MODEL_FIELDS)}, or date "
                "for year, month and day)"
            )
        if chosen & set(expanded):
            raise GeosynthError(f"`{what}`: field '{n}' is named twice")
        chosen.update(expanded)
    if not chosen:
        raise GeosynthError(f"`{what}`: names no field (e.g. lon,lat,gsd,date)")
    return tuple(f for f in MODEL_FIELDS if f in chosen)


def parse_metadata_values(
    spec: str | Mapping[str, Any],
    *,
    allowed: Sequence[str] | None = None,
    what: str = "metadata",
) -> dict[str, float]:
    """What a user asks a model for (``lat=25.2,lon=55.3,gsd=0.5,date=2023-06-01``, or a
    mapping) as DiffusionSat's fields in native units: ``date`` becomes year, month and day;
    ``year``, ``month``, ``day`` may also be given alone. Values are checked (latitude 95, a
    date that does not parse, month 13 raise), and with ``allowed`` (the fields a model was
    trained with) a field outside it raises. Errors name ``what``."""
    if isinstance(spec, str):
        pairs: list[tuple[str, Any]] = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            if "=" not in part:
                raise GeosynthError(f"`{what}`: '{part}' is not FIELD=VALUE (e.g. lat=25.2)")
            key, value = part.split("=", 1)
            pairs.append((key.strip(), value.strip()))
    else:
        pairs = list(spec.items())
    out: dict[str, float] = {}
    for key, value in pairs:
        if key not in (*MODEL_FIELDS, "date"):
            parse_metadata_fields([key], what)  # raises: unknown name
        if key == "date":
            when = datetime.fromisoformat(parse_date(value, f"`{what}`"))
            parts = {"year": when.year, "month": when.month, "day": when.day}
        else:
            parts = {key: check_field(key, value, f"`{what}`")}
        for name, v in parts.items():
            if name in out:
                raise GeosynthError(f"`{what}`: {name} is given twice")
            out[name] = float(v)
    if not out:
        raise GeosynthError(f"`{what}`: no FIELD=VALUE given (e.g. lat=25.2,lon=55.3)")
    if allowed is not None:
        extra = [n for n in out if n not in allowed]
        if extra:
            raise GeosynthError(
                f"`{what}`: the model was not trained with {', '.join(extra)} (its metadata "
                f"fields: {', '.join(allowed) or 'none'})"
            )
    return out
