"""Radiometry as data: how native raster values become the model's 3-channel [-1, 1] input, and back.

Stable Diffusion sees three channels in [-1, 1]. A :class:`Radiometry` spec states explicitly how
a raster in native units (SAR backscatter, reflectance x 10000, 16-bit DN) is mapped there:

* ``bands``: which bands of the file, by 0-based index or by name (``["B04", "B03", "B02"]``).
* ``kind="optical"``: 3 bands map to R, G, B; 1 band is replicated to 3 channels.
* ``kind="sar"``: values are first brought to the ``scale`` space: ``"db"`` (10 log10 of power,
  20 log10 of amplitude; values already in dB stay), ``"linear"`` (the file's own units) or
  ``"amplitude"`` (linear amplitude: sqrt of power; see :mod:`.radiometry_amplitude`).
  One polarisation is replicated to 3 channels. Two polarisations (e.g. VV, VH) make the
  false-colour composite R = first band, G = second band, B = first - second in dB (the
  co/cross ratio; first / second in linear scale); R and G invert exactly, B is ignored on the
  way back.
* ``ranges``: one ``[low, high]`` per distinct channel in the scale space (optical: one per band;
  SAR: one for single-pol, three for dual-pol); values are clipped to it and mapped linearly to
  [-1, 1]. Or ``percentiles: [p_low, p_high]``: the ranges are computed once, on the training
  set, by :meth:`Radiometry.fit`, and stored in the spec from then on. Or ``std_factor: k``
  (amplitude scale): seed 003's A / (mean + k std), fitted likewise (``mean_std``).
* ``db_floor``: the dB value given to non-positive linear values (and the lowest dB value kept);
  without it, dB of a non-positive value is an error rather than a silent -inf.
* ``nodata``: pixels that are NaN, infinite or equal to the file's nodata value become the
  bottom of the range (-1) with ``"low"``, or raise with ``"error"``. A chip with no valid pixel
  is always an error.

After :meth:`Radiometry.resolve`, the spec also records what it was made for (the data's
``dtype``, band count and the names of the selected bands), so that :meth:`inverse` writes values
back in the data's own dtype, and every artifact that stores the spec (channel means, LoRA card,
generated dataset) can refuse data or artifacts made with another one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from geosynth.artifacts.jsontext import json_text
from geosynth.data import radiometry_amplitude as amp
from geosynth.data.bandnames import BAND_ORDERS, band_names, missing_band_hint
from geosynth.data.raster import Raster, pixel_size
from geosynth.errors import GeosynthError


class RasterSource(Protocol):
    """What fitting a spec needs from a dataset (an ``ImageDataset`` is one): its rasters and how
    to name them in errors. A protocol, so that this module does not import the dataset's."""

    source: str

    @property
    def samples(self) -> Any: ...

    def __len__(self) -> int: ...

    def raster(self, index: int) -> Raster: ...

    def describe(self, sample: Any) -> str: ...


KINDS = ("optical", "sar")
SAR_UNITS = ("power", "amplitude", "db")
SCALES = ("linear", "db", "amplitude")
NODATA_POLICIES = ("low", "error")
DEFAULT_PERCENTILES = (1.0, 99.0)
# Pixels per image used to fit percentile ranges (a regular subsample keeps memory bounded).
_FIT_PIXELS = 65536


@dataclass(frozen=True)
class Radiometry:
    """An explicit, JSON-serialisable mapping from native raster values to the model's input."""

    kind: str
    bands: tuple[int | str, ...]
    ranges: tuple[tuple[float, float], ...] | None = None
    percentiles: tuple[float, float] | None = None
    units: str = "power"  # sar: what the file holds (power, amplitude or db)
    scale: str = "db"  # sar: the space ranges apply in (db, linear or amplitude)
    db_floor: float | None = None
    std_factor: float | None = None
    mean_std: tuple[tuple[float, float], ...] | None = None
    nodata: str = "low"
    # Names of the file's bands when the file itself names none: a list, or a known order
    # ("eurosat-ms": B01..B12 then B8A), so bands can be selected by name.
    file_bands: tuple[str, ...] | str | None = None
    # What the spec was resolved against (filled by ``resolve``): used to write values back and to
    # refuse other data.
    dtype: str | None = None
    band_count: int | None = None
    band_names: tuple[str, ...] | None = None
    # Georeference policy of generated chips (docs/formats.md): no CRS or location, but the
    # training data's pixel size (x, y) and nodata value; omitted from the JSON when unknown.
    pixel_size: tuple[float, float] | None = None
    file_nodata: float | None = None
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, hash=False)

    # ---------------------------------------------------------------- construction, (de)serialising
    def __post_init__(self) -> None:
        # Normalise numbers and sequences so equal specs compare and serialise equal.
        norm = object.__setattr__
        norm(self, "bands", tuple(self.bands))
        if self.ranges is not None:
            norm(self, "ranges", tuple((float(lo), float(hi)) for lo, hi in self.ranges))
        if self.percentiles is not None:
            norm(self, "percentiles", tuple(float(p) for p in self.percentiles))
        if self.db_floor is not None:
            norm(self, "db_floor", float(self.db_floor))
        if self.band_names is not None:
            norm(self, "band_names", tuple(self.band_names))
        if self.file_bands is not None and not isinstance(self.file_bands, str):
            norm(self, "file_bands", tuple(str(b) for b in self.file_bands))

        def bad(msg: str) -> GeosynthError:
            return GeosynthError(f"radiometry: {msg}")

        if self.kind not in KINDS:
            raise bad(f"kind '{self.kind}': expected one of {', '.join(KINDS)}")
        n = len(self.bands)
        if self.kind == "optical" and n not in (1, 3):
            raise bad(f"optical needs 1 or 3 bands, got {n} ({list(self.bands)})")
        if self.kind == "sar" and n not in (1, 2):
            raise bad(f"sar needs 1 or 2 bands (one or two polarisations), got {n}")
        if self.kind == "sar":
            if self.units not in SAR_UNITS:
                raise bad(f"units '{self.units}': expected one of {', '.join(SAR_UNITS)}")
            if self.scale not in SCALES:
                raise bad(f"scale '{self.scale}': expected one of {', '.join(SCALES)}")
        if isinstance(self.file_bands, str) and self.file_bands not in BAND_ORDERS:
            raise bad(
                f"file_bands '{self.file_bands}': expected a list of names or one of "
                f"{', '.join(BAND_ORDERS)}"
            )
        if self.nodata not in NODATA_POLICIES:
            raise bad(f"nodata '{self.nodata}': expected one of {', '.join(NODATA_POLICIES)}")
        amp.normalise(self)  # std_factor, mean_std: checked, and ranges derived once fitted
        if self.ranges is None and self.percentiles is None and self.std_factor is None:
            raise bad("give ranges ([low, high] per channel) or percentiles ([p_low, p_high])")
        if self.ranges is not None:
            if len(self.ranges) != self.channels:
                raise bad(
                    f"{len(self.ranges)} ranges for {self.channels} channel(s) "
                    f"({self.kind}, {n} band(s)); give one [low, high] per channel"
                )
            for lo, hi in self.ranges:
                if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
                    raise bad(f"range [{lo}, {hi}]: need finite low < high")
        if self.db_floor is not None and not np.isfinite(self.db_floor):
            raise bad(f"db_floor {self.db_floor}: need a finite number (a level in dB)")
        if self.percentiles is not None:
            lo, hi = self.percentiles
            if not 0 <= lo < hi <= 100:
                raise bad(f"percentiles [{lo}, {hi}]: need 0 <= low < high <= 100")

    @property
    def channels(self) -> int:
        """Distinct model channels the ranges describe (the rest are replicas)."""
        if self.kind == "sar":
            return 3 if len(self.bands) == 2 else 1
        return len(self.bands)

    @property
    def out_bands(self) -> int:
        """Bands :meth:`inverse` writes: the selected bands."""
        return len(self.bands)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_cache")
        d["bands"] = list(self.bands)
        d["ranges"] = None if self.ranges is None else [list(r) for r in self.ranges]
        d["percentiles"] = None if self.percentiles is None else list(self.percentiles)
        d["band_names"] = None if self.band_names is None else list(self.band_names)
        if isinstance(self.file_bands, tuple):
            d["file_bands"] = list(self.file_bands)
        if self.kind != "sar":  # SAR-only fields mean nothing for optical data
            del d["units"], d["scale"], d["db_floor"]
        d["mean_std"] = None if self.mean_std is None else [list(p) for p in self.mean_std]
        for key in ("pixel_size", "file_nodata", "std_factor", "mean_std"):  # unset: as before
            if d[key] is None:
                del d[key]
        if "pixel_size" in d:
            d["pixel_size"] = list(d["pixel_size"])
        return d

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): equal specs give equal strings."""
        return json_text(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "radiometry") -> Radiometry:
        known = {f for f in cls.__dataclass_fields__ if not f.startswith("_")}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GeosynthError(
                f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})"
            )
        try:
            kw = dict(d)
            kw["bands"] = tuple(
                b if isinstance(b, int) else (int(b) if str(b).isdigit() else str(b))
                for b in d["bands"]
            )
            if d.get("ranges") is not None:
                kw["ranges"] = tuple((float(lo), float(hi)) for lo, hi in d["ranges"])
            if d.get("percentiles") is not None:
                lo, hi = d["percentiles"]
                kw["percentiles"] = (float(lo), float(hi))
            if d.get("band_names") is not None:
                kw["band_names"] = tuple(str(b) for b in d["band_names"])
            if isinstance(d.get("file_bands"), list):
                kw["file_bands"] = tuple(str(b) for b in d["file_bands"])
            if d.get("db_floor") is not None:
                kw["db_floor"] = float(d["db_floor"])
            if d.get("pixel_size") is not None:
                kw["pixel_size"] = tuple(float(v) for v in d["pixel_size"])
            return cls(**kw)
        except GeosynthError as exc:
            raise GeosynthError(f"{where}: {str(exc).removeprefix('radiometry: ')}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise GeosynthError(
                f"{where}: not a radiometry spec ({exc.__class__.__name__}: {exc}); "
                "see docs/formats.md"
            ) from None

    @classmethod
    def parse(cls, text: str, *, where: str = "radiometry") -> Radiometry:
        """A spec from a JSON file path or an inline JSON object; ``where`` names the parameter
        that gave ``text`` in errors (``radiometry='spec.json': ...``)."""
        raw = text.strip()
        if not raw.startswith("{"):
            path = Path(raw)
            if not path.is_file():
                raise GeosynthError(
                    f"{where}={text!r}: no such file (expected a JSON file or object)"
                )
            raw, where = path.read_text(), f"{where}={str(path)!r}"
        else:  # inline JSON is too long to repeat: name the parameter only
            where = f"`{where}`"
        try:
            d = json.loads(raw)
        except ValueError as exc:
            raise GeosynthError(f"{where}: not JSON ({exc})") from None
        if not isinstance(d, dict):
            raise GeosynthError(f"{where}: expected a JSON object")
        return cls.from_dict(d, where=where)

    def describe(self) -> str:
        """One line for humans."""
        names = ",".join(str(b) for b in self.bands)
        rng = (
            "; ".join(f"[{lo:.4g}, {hi:.4g}]" for lo, hi in self.ranges)
            if self.ranges is not None
            else f"percentiles {self.percentiles[0]:g}-{self.percentiles[1]:g} (to fit)"  # type: ignore[index]
        )
        if self.kind == "sar":
            how = f"sar {self.units} -> {self.scale}"
            if self.scale == "db":
                how += f" (floor {self.db_floor:g} dB)" if self.db_floor is not None else ""
            rng = f"A / (mean + {self.std_factor:g} std): {rng}" if self.std_factor else rng
            comp = " (R=1st, G=2nd, B=1st-2nd)" if len(self.bands) == 2 else " (replicated)"
        else:
            how, comp = "optical", (" (replicated)" if len(self.bands) == 1 else "")
        return f"{how}, bands {names}{comp}, ranges {rng}, nodata -> {self.nodata}"

    # ---------------------------------------------------------------- checks against data
    def check_raster(self, r: Raster, where: str) -> None:
        """The raster must have the band count and dtype the spec was resolved against."""
        if self.band_count is not None and r.count != self.band_count:
            raise GeosynthError(
                f"{where}: {r.count} bands, but the radiometry spec was made for "
                f"{self.band_count}-band data (mixed band counts in one dataset?)"
            )
        if self.dtype is not None and r.dtype != self.dtype:
            raise GeosynthError(
                f"{where}: dtype {r.dtype}, but the radiometry spec was made for {self.dtype} "
                "data (mixed dtypes in one dataset?)"
            )

    def named(self, r: Raster, where: str = "raster") -> Raster:
        """``r`` with band names: its own, else ``file_bands``' (:mod:`.bandnames`)."""
        if r.band_names or self.file_bands is None:
            return r
        names = band_names(r, self.file_bands)
        if names is None or len(names) != r.count:
            raise GeosynthError(
                f"{where}: {r.count} bands, but the radiometry spec's file_bands names "
                f"{0 if names is None else len(names)}"
            )
        return replace(r, band_names=names)

    def _indices(self, r: Raster, where: str = "raster") -> list[int]:
        key = f"idx:{r.count}:{r.band_names}"
        if key not in self._cache:
            r = self.named(r, where)
            self._cache[key] = [r.band_index(b, what="radiometry band") for b in self.bands]
        return self._cache[key]

    # ---------------------------------------------------------------- forward
    def _scaled(self, r: Raster, where: str) -> tuple[list[np.ndarray], np.ndarray]:
        """Channel values in the scale space (before ranges) and the invalid-pixel mask (H x W)."""
        self.check_raster(r, where)
        idx = self._indices(r, where)
        valid: np.ndarray = np.asarray(r.valid_mask()[idx].all(axis=0))
        if not valid.any():
            raise GeosynthError(f"{where}: no valid pixel (all NaN or nodata {r.nodata})")
        if self.nodata == "error" and not valid.all():
            raise GeosynthError(
                f"{where}: {int((~valid).sum())} NaN/nodata pixels, and the radiometry spec says "
                "nodata 'error' (use 'low' to map them to the bottom of the range)"
            )
        x = [np.where(valid, r.array[i].astype(np.float64), np.nan) for i in idx]
        if self.kind == "sar":
            if self.scale == "db":
                x = [self._to_db(v, valid, where) for v in x]
            elif self.scale == "amplitude":
                x = [amp.to_amplitude(v, self.units, self.db_floor) for v in x]
            if len(x) == 2:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = x[0] - x[1] if self.scale == "db" else x[0] / x[1]
                x.append(np.where(np.isfinite(ratio), ratio, np.nan))
        return x, valid

    def _to_db(self, v: np.ndarray, valid: np.ndarray, where: str) -> np.ndarray:
        if self.units == "db":
            return v if self.db_floor is None else np.maximum(v, self.db_floor)
        nonpos = valid & ~(v > 0)
        if nonpos.any() and self.db_floor is None:
            raise GeosynthError(
                f"{where}: {int(nonpos.sum())} non-positive {self.units} values have no dB; set "
                "the radiometry spec's db_floor (e.g. -50) or mark them as nodata"
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            db = (10.0 if self.units == "power" else 20.0) * np.log10(v)
        if self.db_floor is not None:
            db = np.where(nonpos, self.db_floor, np.maximum(db, self.db_floor))
        return db

    def forward(self, r: Raster, where: str = "raster") -> np.ndarray:
        """3 x H x W float32 in [-1, 1]; errors name ``where``."""
        if self.ranges is None:
            raise GeosynthError(
                "radiometry: ranges are not fitted yet (Radiometry.fit on the training set)"
            )
        x, _ = self._scaled(r, where)
        out = []
        for v, (lo, hi) in zip(x, self.ranges, strict=True):
            y = (np.clip(v, lo, hi) - lo) * (2.0 / (hi - lo)) - 1.0
            out.append(np.where(np.isnan(y), -1.0, y))
        if len(out) == 1:
            out = out * 3
        return np.stack(out).astype(np.float32)

    # ---------------------------------------------------------------- inverse
    def inverse(self, y: np.ndarray) -> Raster:
        """Model output (3 x H x W in [-1, 1]) back to native units: the selected bands, in the
        resolved dtype (integers rounded and clipped to the dtype's range)."""
        if self.ranges is None:
            raise GeosynthError("radiometry: ranges are not fitted yet")
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 3 or y.shape[0] != 3:
            raise GeosynthError(f"radiometry: expected 3 x H x W model output, got {y.shape}")
        y = np.clip(y, -1.0, 1.0)
        # Replicated channels are averaged (they agree up to the model's noise); the dual-pol
        # ratio channel is not needed to recover the two polarisations.
        chans = [y.mean(axis=0)] if self.channels == 1 else [y[c] for c in range(len(self.bands))]
        bands = []
        for v, (lo, hi) in zip(chans, self.ranges, strict=False):
            x = lo + (v + 1.0) * ((hi - lo) / 2.0)
            if self.kind == "sar" and self.scale == "db" and self.units != "db":
                x = 10.0 ** (x / (10.0 if self.units == "power" else 20.0))
            elif self.kind == "sar" and self.scale == "amplitude":
                x = amp.from_amplitude(x, self.units, self.db_floor)
            bands.append(x)
        arr = np.stack(bands)
        dtype = np.dtype(self.dtype or "float32")
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            arr = np.clip(np.rint(arr), info.min, info.max)
        names = list(self.band_names) if self.band_names else None
        px = self.pixel_size
        transform = None if px is None else (px[0], 0.0, 0.0, 0.0, -px[1], 0.0)
        return Raster(arr.astype(dtype), names, nodata=self.file_nodata, transform=transform)

    # ---------------------------------------------------------------- resolving against data
    def fit(self, ds: RasterSource) -> Radiometry:
        """Ranges from the percentiles (or mean and std) of ``ds`` (the training set), per
        channel, in the scale space; a spec with fixed ranges is returned unchanged."""
        if self.ranges is not None:
            return self
        if self.std_factor is not None:  # A / (mean + k std): exact statistics, all pixels
            return amp.fit(self, ds, self._scaled)
        assert self.percentiles is not None
        samples: list[list[np.ndarray]] = [[] for _ in range(self.channels)]
        for i in range(len(ds)):
            x, valid = self._scaled(ds.raster(i), ds.describe(ds.samples[i]))
            step = max(1, int(valid.size // _FIT_PIXELS))
            for c, v in enumerate(x):
                flat = v.reshape(-1)[::step]
                samples[c].append(flat[np.isfinite(flat)])
        ranges = []
        for c, parts in enumerate(samples):
            vals = np.concatenate(parts) if parts else np.empty(0)
            if vals.size == 0:
                raise GeosynthError(f"{ds.source}: no valid values to fit radiometry channel {c}")
            lo, hi = (float(v) for v in np.percentile(vals, self.percentiles))
            if not hi > lo:  # a constant channel: any non-empty range maps it to -1
                hi = lo + (abs(lo) * 1e-6 or 1.0)
            ranges.append((lo, hi))
        return replace(self, ranges=tuple(ranges), _cache={})

    def resolve(self, ds: RasterSource) -> Radiometry:
        """Bind the spec to ``ds``: record dtype, band count and selected band names from its
        first image (checking the bands exist), then fit percentile ranges if needed."""
        if not len(ds):
            raise GeosynthError(f"{ds.source}: no images")
        where = ds.describe(ds.samples[0])
        r = self.named(ds.raster(0), where)
        try:
            idx = [r.band_index(b, what=f"radiometry band (in {where})") for b in self.bands]
        except GeosynthError as exc:
            hint = next((h for b in self.bands if (h := missing_band_hint(r, b))), "")
            raise GeosynthError(f"{exc}{hint}") from None
        names = tuple(r.band_names[i] for i in idx) if r.band_names else None
        bound = replace(
            self,
            dtype=r.dtype,
            band_count=r.count,
            band_names=names,
            pixel_size=pixel_size(r.transform),
            file_nodata=r.nodata,
            _cache={},
        )
        if self.dtype is not None or self.band_count is not None:
            self.check_raster(r, where)  # a stored spec must fit this data as it was
            bound = replace(
                bound,
                dtype=self.dtype,
                band_count=self.band_count,
                pixel_size=self.pixel_size,
                file_nodata=self.file_nodata,
            )
        return bound.fit(ds)
