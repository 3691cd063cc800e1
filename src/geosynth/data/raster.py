"""Rasters in their native units: every band, the file's dtype, CRS, transform and nodata.

:func:`read_raster` is the one reader behind ``ImageDataset.raster``. GeoTIFF/TIFF and 16-bit PNG
go through rasterio (GDAL), which keeps georeferencing and reads 1..N bands of uint8, uint16,
int16, int32, float32 and float64 as stored; 8-bit PNG and JPEG go through PIL, the reader the
8-bit pipeline has always used, so their pixels are the ones ``ImageDataset.image`` sees. Nothing
here ever converts to 8-bit: how native values become a model's input is a separate, explicit
choice (:mod:`geosynth.data.radiometry`).

:func:`write_raster` writes a GeoTIFF atomically; reading it back gives the same array bit for
bit, with the same CRS, transform, nodata and band names.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geosynth.artifacts import atomic_path
from geosynth.errors import GeosynthError
from geosynth.extras import require

#: dtypes a raster may hold (what GeoTIFF and PNG store for remote-sensing chips).
NATIVE_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
# PIL modes that hold 8 bits per channel: the pipeline's historical input.
EIGHT_BIT_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr"}
)


@dataclass
class Raster:
    """One image in native units.

    ``array`` is bands x H x W in the file's dtype. ``band_names`` are the band descriptions the
    file gives (None when it names none); ``nodata`` the file's nodata value; ``crs`` the CRS as
    rasterio spells it (``EPSG:32631`` when it has an EPSG code, else WKT); ``transform`` the
    affine geotransform as 6 numbers in rasterio/``affine`` order (a, b, c, d, e, f).
    """

    array: np.ndarray
    band_names: list[str] | None = None
    nodata: float | None = None
    crs: str | None = None
    transform: tuple[float, ...] | None = None

    @property
    def count(self) -> int:
        """Number of bands."""
        return int(self.array.shape[0])

    @property
    def height(self) -> int:
        return int(self.array.shape[1])

    @property
    def width(self) -> int:
        return int(self.array.shape[2])

    @property
    def dtype(self) -> str:
        return str(self.array.dtype)

    def valid_mask(self) -> np.ndarray:
        """bands x H x W booleans: True where a value is finite and not the nodata value."""
        a = self.array
        ok = np.isfinite(a) if a.dtype.kind == "f" else np.ones(a.shape, dtype=bool)
        if self.nodata is not None:
            if np.isnan(self.nodata):
                ok &= ~np.isnan(a) if a.dtype.kind == "f" else ok
            else:
                ok &= a != np.asarray(self.nodata).astype(a.dtype)
        return ok

    def band_index(self, band: int | str, *, what: str = "band") -> int:
        """0-based index of ``band`` (an index, or a name the file gives); errors name the bands
        the file has."""
        if isinstance(band, int) or (isinstance(band, str) and band.lstrip("-").isdigit()):
            i = int(band)
            if not 0 <= i < self.count:
                raise GeosynthError(
                    f"`{what}`: band {band} is out of range for a {self.count}-band raster "
                    f"(0..{self.count - 1})"
                )
            return i
        names = self.band_names or []
        if band not in names:
            have = ", ".join(names) if names else "none (use 0-based indices)"
            raise GeosynthError(
                f"`{what}`: band '{band}' is not in the file (its band names: {have})"
            )
        return names.index(band)


def pixel_size(transform: tuple[float, ...] | None) -> tuple[float, float] | None:
    """The ground size (x, y) of a pixel of an affine geotransform (rotation-invariant), or None."""
    if transform is None:
        return None
    a, b, _, d, e, _ = transform[:6]
    return (float(np.hypot(a, d)), float(np.hypot(b, e)))


def _is_tiff(head: bytes) -> bool:
    return head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _is_png(head: bytes) -> bool:
    return head[:8] == b"\x89PNG\r\n\x1a\n"


def _png_is_16bit(head: bytes) -> bool:
    # IHDR is the first chunk: 8-byte signature, 4 length, 4 type, 4 width, 4 height, 1 bit depth.
    return len(head) > 24 and head[24] == 16


def read_raster(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> Raster:
    """Read an image file (or its bytes) in native units; ``name`` labels bytes in errors.

    TIFF and 16-bit PNG: rasterio, all bands, dtype, CRS, transform, nodata and band descriptions
    kept. 8-bit PNG and JPEG: PIL; palette images become RGB and alpha is dropped (neither is
    radiometry), greyscale stays one band.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        if isinstance(source, bytes):
            head = source[:32]
        else:
            with open(source, "rb") as f:
                head = f.read(32)
    except OSError as exc:
        raise GeosynthError(f"{label}: cannot read image ({exc})") from None
    try:
        if _is_tiff(head) or (_is_png(head) and _png_is_16bit(head)):
            raster = _read_gdal(source, label)
        else:
            raster = _read_pil(source)
    except GeosynthError:
        raise
    except Exception as exc:  # rasterio/PIL raise many types for broken files
        raise GeosynthError(f"{label}: cannot read image ({exc})") from None
    check_values(raster, label)
    return raster


def check_values(raster: Raster, label: str) -> None:
    """Refuse float pixels that no dataset means: infinities (NaN marks nodata in float
    rasters, an infinity never does), or an image in which every value is NaN or nodata (what a
    diverged model writes; it would enter training or metrics as a flat image)."""
    a = raster.array
    if a.dtype.kind != "f" or not a.size:
        return
    inf = int(np.isinf(a).sum())
    if inf:
        raise GeosynthError(
            f"{label}: {inf} infinite value(s); expected finite numbers (NaN or the nodata value "
            "mark missing pixels)"
        )
    if not raster.valid_mask().any():
        raise GeosynthError(
            f"{label}: every value is NaN or nodata; the image holds no data (was it written by a "
            "diverged run?)"
        )


def _read_gdal(source: str | os.PathLike[str] | bytes, label: str) -> Raster:
    rasterio = require("rasterio", f"{label} (GeoTIFF or 16-bit PNG)")
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        if isinstance(source, bytes):
            with MemoryFile(source) as mem, mem.open() as src:
                return _from_dataset(src)
        with rasterio.open(source) as src:
            return _from_dataset(src)


def _from_dataset(src: Any) -> Raster:
    array = src.read()
    descriptions = list(src.descriptions or [])
    names = [str(d) for d in descriptions] if descriptions and all(descriptions) else None
    crs, transform = _georeference(src)
    return Raster(array=array, band_names=names, nodata=src.nodata, crs=crs, transform=transform)


def _georeference(src: Any) -> tuple[str | None, tuple[float, ...] | None]:
    """CRS (``EPSG:n`` when it has a code, else WKT) and affine transform of an open dataset."""
    crs = None
    if src.crs is not None:
        epsg = src.crs.to_epsg()
        crs = f"EPSG:{epsg}" if epsg else src.crs.to_wkt()
    georef = src.crs is not None or not src.transform.is_identity
    transform = tuple(float(v) for v in src.transform[:6]) if georef else None
    return crs, transform


@dataclass(frozen=True)
class RasterHeader:
    """What a file says about its pixels without reading them: size, CRS, transform and the
    file's metadata tags (GDAL's default domain: ``TIFFTAG_DATETIME``, ``ACQUISITION_DATE``...).
    Files read through PIL (8-bit PNG, JPEG) carry no georeference: every field is empty."""

    width: int | None = None
    height: int | None = None
    crs: str | None = None
    transform: tuple[float, ...] | None = None
    tags: dict[str, str] = field(default_factory=dict)


def read_header(path: str | os.PathLike[str]) -> RasterHeader:
    """The header of an image file, for the files :func:`read_raster` reads through rasterio
    (TIFF, 16-bit PNG); an empty header for the others, whose readers keep no georeference."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError as exc:
        raise GeosynthError(f"{path}: cannot read image ({exc})") from None
    if not (_is_tiff(head) or (_is_png(head) and _png_is_16bit(head))):
        return RasterHeader()
    rasterio = require("rasterio", f"{path} (GeoTIFF or 16-bit PNG)")
    from rasterio.errors import NotGeoreferencedWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                crs, transform = _georeference(src)
                tags = {str(k): str(v) for k, v in src.tags().items()}
                return RasterHeader(src.width, src.height, crs, transform, tags)
    except Exception as exc:  # rasterio raises many types for broken files
        raise GeosynthError(f"{path}: cannot read image ({exc})") from None


def _read_pil(source: str | os.PathLike[str] | bytes) -> Raster:
    from PIL import Image  # local: keeps importing this module light

    img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    img.load()
    return raster_from_pil(img)


def raster_from_pil(img: Any) -> Raster:
    """A decoded PIL image as a raster: 8-bit greyscale stays one band, palette/alpha/CMYK become
    RGB, 16-bit, 32-bit integer and float images keep their values and dtype."""
    if img.mode in ("1", "L", "LA", "La"):
        arr = np.asarray(img.convert("L"))[None]
    elif img.mode in EIGHT_BIT_MODES:
        arr = np.asarray(img.convert("RGB")).transpose(2, 0, 1)
    elif img.mode.startswith("I;16"):
        arr = np.asarray(img).astype(np.uint16)[None]
    elif img.mode == "I":
        arr = np.asarray(img, dtype=np.int32)[None]
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)[None]
    else:
        raise GeosynthError(f"unsupported image mode {img.mode}")
    return Raster(array=np.ascontiguousarray(arr))


def write_raster(path: str | os.PathLike[str], raster: Raster) -> Path:
    """Write ``raster`` as an uncompressed-equivalent (DEFLATE, lossless) GeoTIFF, atomically.

    Dtype, bands, nodata, band names, CRS and transform are written as given, so
    :func:`read_raster` returns the same array bit for bit.
    """
    path = Path(path)
    # the name only: the path is often inside an atomic temp dir
    rasterio = require("rasterio", f"writing GeoTIFF {path.name}")
    from affine import Affine
    from rasterio.errors import NotGeoreferencedWarning

    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise GeosynthError(f"{path}: expected a .tif or .tiff path for a GeoTIFF")
    arr = np.asarray(raster.array)
    if arr.ndim != 3:
        raise GeosynthError(f"{path}: raster array must be bands x H x W, got shape {arr.shape}")
    check_values(raster, str(path))  # no output holds what no reader accepts
    if str(arr.dtype) not in NATIVE_DTYPES:
        raise GeosynthError(
            f"{path}: dtype {arr.dtype} not writable (expected one of {NATIVE_DTYPES})"
        )
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": arr.shape[2],
        "height": arr.shape[1],
        "count": arr.shape[0],
        "dtype": str(arr.dtype),
        "compress": "deflate",
    }
    if arr.dtype.kind == "f":
        profile["predictor"] = 1  # raw values; no float predictor games
    if raster.crs is not None:
        profile["crs"] = raster.crs
    if raster.transform is not None:
        profile["transform"] = Affine(*raster.transform[:6])
    if raster.nodata is not None:
        profile["nodata"] = raster.nodata
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arr)
            if raster.band_names:
                if len(raster.band_names) != arr.shape[0]:
                    raise GeosynthError(
                        f"{path}: {len(raster.band_names)} band names for {arr.shape[0]} bands"
                    )
                for i, n in enumerate(raster.band_names, start=1):
                    dst.set_band_description(i, n)
    return path
