"""How ``evaluate`` compares native data (SAR, 16-bit, multispectral) between two sets.

Three questions, each answered the same way for both sets:

* **Which bands** (:func:`pixel_bands`): bands are matched by name, the files' own names or their
  layout's (:mod:`geosynth.data.bandnames`: EuroSAT-MS is B01..B12, B8A). ``bands`` picks them
  in each set; without it, when one set's bands are a named subset of the other's (a generated
  B04, B03, B02 set against 13-band EuroSAT-MS), the shared bands are compared.
* **Which units** (:func:`set_units`): data stored in dB (float backscatter with negative
  values, as SSL4EO-S12 and BigEarthNet-S1 chips are, or a set whose radiometry spec says
  ``units: db``) is never taken for linear values: the amplitude space converts from what each
  set holds.
* **Which RGB view** (:func:`rgb_view`): feature models that take 8-bit RGB (DINOv2, Inception,
  open_clip), CLIP score and the VAE see native data through one radiometry spec, the model's
  3-channel view of it, applied to both sets by band name: the spec given, else the one SYNTH
  records (``generate``'s ``radiometry.json``), else REAL's default spec fitted on REAL.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geosynth.data.bandnames import named
from geosynth.data.dataset import ImageDataset
from geosynth.data.multiband import is_native
from geosynth.data.radiometry import Radiometry
from geosynth.data.radiometry_defaults import default_radiometry
from geosynth.data.radiometry_sources import (
    RADIOMETRY_FILE,
    bind,
    load_radiometry,
    recorded_radiometry,
)
from geosynth.data.raster import Raster
from geosynth.errors import GeosynthError
from geosynth.metrics.sar import AmplitudeScale

#: images probed (spread over the set) to tell dB from linear values
UNITS_PROBE = 16


def _first(ds: ImageDataset) -> Raster:
    return named(ds.raster(0))


def recorded(ds: ImageDataset) -> Radiometry | None:
    """The spec a generated image folder records (``generate``'s ``radiometry.json``)."""
    return recorded_radiometry(ds.source) if ds.kind == "imagefolder" else None


# -------------------------------------------------------------------- bands
def pixel_bands(
    ds_s: ImageDataset, ds_r: ImageDataset, bands: str | None, notes: list[str]
) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """The bands the pixel metrics compare, as indices into SYNTH's and REAL's files (None: all
    of them). Only native data has bands to choose; 8-bit images are compared as they are."""
    if not (is_native(ds_s) and is_native(ds_r)):
        return None, None
    first = {"synthetic": _first(ds_s), "real": _first(ds_r)}
    if bands is not None and bands.strip().lower() != "all":
        items = [b.strip() for b in bands.split(",") if b.strip()]
        if not items:
            raise GeosynthError(f"bands={bands!r}: expected 'all' or a comma-separated list")
        picked = {}
        for role, ds in (("synthetic", ds_s), ("real", ds_r)):
            try:
                picked[role] = tuple(first[role].band_index(b, what="bands") for b in items)
            except GeosynthError as exc:
                raise GeosynthError(f"{role} set {ds.source}: {exc}") from None
        return picked["synthetic"], picked["real"]
    names_s, names_r = first["synthetic"].band_names, first["real"].band_names
    if not names_s or not names_r or names_s == names_r:
        return None, None
    if set(names_s) <= set(names_r):
        notes.append(
            f"bands: SYNTH holds {', '.join(names_s)} of REAL's {len(names_r)} bands; the pixel "
            "metrics compare those bands, by name (--bands chooses others)"
        )
        return None, tuple(names_r.index(n) for n in names_s)
    if set(names_r) <= set(names_s):
        notes.append(
            f"bands: REAL holds {', '.join(names_r)} of SYNTH's {len(names_s)} bands; the pixel "
            "metrics compare those bands, by name (--bands chooses others)"
        )
        return tuple(names_s.index(n) for n in names_r), None
    raise GeosynthError(
        f"SYNTH's bands ({', '.join(names_s)}) and REAL's ({', '.join(names_r)}) differ; "
        "choose the bands to compare by name with `bands` (e.g. bands='B04,B03,B02')"
    )


# -------------------------------------------------------------------- units
def set_units(ds: ImageDataset, spec: Radiometry | None) -> tuple[str, str]:
    """What a set's native values are, ``db`` or ``linear`` (as stored), and how that is known:
    from ``spec`` (a SAR spec's ``units``), else from the values (float data with negative
    values is dB: linear power, amplitude and reflectance are never negative)."""
    if spec is not None and spec.kind == "sar":
        return ("db" if spec.units == "db" else "linear"), f"radiometry spec (units {spec.units})"
    if not is_native(ds):
        return "linear", "8-bit"
    if not ds.raster(0).dtype.startswith("float"):
        return "linear", "integer values"
    n = len(ds)
    for i in sorted({int(i) for i in np.linspace(0, n - 1, min(UNITS_PROBE, n))}):
        r = ds.raster(i)
        v = r.array[r.valid_mask()]
        if v.size and float(v.min()) < 0:
            return "db", "values (negative float values: dB)"
    return "linear", "values (no negative value)"


def scale_record(scale: AmplitudeScale, units: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """What the report says about the amplitude space: the scale and each set's input units."""
    out = scale.to_dict()
    if not scale.fixed:
        out["input_units"] = {role: u for role, (u, _) in units.items()}
        out["input_units_from"] = {role: how for role, (_, how) in units.items()}
        how = {"db": {"db": "as stored (dB)", "linear": "10 log10(value)"}}.get(
            scale.space, {"db": "10^(dB / 10) (linear power)", "linear": "as stored"}
        )
        out["conversion"] = {role: how[u] for role, (u, _) in units.items()}
        if scale.space == "db" and all(u == "db" for u, _ in units.values()):
            out.pop("db", None)  # nothing was taken to dB
    return out


def degenerate_bands(scale: AmplitudeScale) -> list[str]:
    """Bands whose real values collapse to one value in the metric space (e.g. every value at
    a dB floor): distances there compare nothing."""
    if scale.fixed:
        return []
    return [b for b, lo, hi in zip(scale.bands, scale.lo, scale.hi, strict=True) if not hi > lo]


# -------------------------------------------------------------------- RGB view
def rgb_view(
    ds_s: ImageDataset | None,
    ds_r: ImageDataset | None,
    given: str | Radiometry | None,
    notes: list[str],
) -> tuple[ImageDataset | None, ImageDataset | None, dict[str, Any] | None]:
    """SYNTH and REAL (None: an embeddings file) with the radiometry spec that makes native data
    the model's 3-channel view (as 8-bit RGB for feature models), and the report's record of
    it; sets of 8-bit images are returned as they are."""
    sets = {"synthetic": ds_s, "real": ds_r}
    native = [role for role, ds in sets.items() if ds is not None and is_native(ds)]
    if not native:
        if given is not None:
            notes.append("--radiometry ignored: no set holds native (non-8-bit) data")
        return ds_s, ds_r, None
    spec: Radiometry | None
    if given is not None:
        spec, origin = load_radiometry(given), "given (--radiometry)"
    elif ds_s is not None and (spec := recorded(ds_s)) is not None:
        origin = f"recorded by SYNTH ({ds_s.source}/{RADIOMETRY_FILE})"
    else:
        role = "real" if "real" in native else "synthetic"
        ref = sets[role]
        assert ref is not None
        spec = default_radiometry(ref.raster(0))
        if spec is None:  # 8-bit-like data in another dtype: nothing to map
            return ds_s, ds_r, None
        spec = spec.resolve(ref)
        name = "REAL" if role == "real" else "SYNTH"
        origin = f"default for {name}'s {ref.raster(0).dtype} data, ranges fitted on {name}"
    record: dict[str, Any] = {"from": origin}
    for role in native:
        ds = sets[role]
        assert ds is not None
        try:
            bound = bind(spec, ds)
        except GeosynthError as exc:
            raise GeosynthError(f"{role} set {ds.source}: {exc}") from None
        sets[role] = ds.with_radiometry(bound)
        record[role] = bound.to_dict()
    notes.append(
        f"native data is seen as 8-bit RGB by the feature models (and CLIP, the VAE) through "
        f"radiometry {spec.describe()}; {origin}"
    )
    return sets["synthetic"], sets["real"], record
