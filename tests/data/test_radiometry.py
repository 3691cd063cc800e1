"""Radiometry specs: explicit native -> [-1, 1] mapping, exact inverses, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geosynth.data import load_dataset, open_dataset
from geosynth.data.radiometry import Radiometry
from geosynth.data.radiometry_defaults import check_same_spec, default_radiometry
from geosynth.data.raster import Raster, write_raster
from geosynth.errors import GeosynthError
from tests.data.rasters.data import S2_BANDS, write_png16, write_s2_13band, write_sar_dualpol


def _speckle(rng: np.random.Generator, shape: tuple[int, ...], mean: float) -> np.ndarray:
    return (mean * rng.gamma(4.0, 0.25, shape)).astype(np.float32)


@pytest.mark.parametrize("units", ["power", "amplitude", "db"])
def test_dual_pol_round_trip_and_false_colour(units: str) -> None:
    rng = np.random.default_rng(1)
    power = np.stack([_speckle(rng, (16, 16), 0.1), _speckle(rng, (16, 16), 0.02)])
    native = {"power": power, "amplitude": np.sqrt(power), "db": 10 * np.log10(power)}[units]
    native = native.astype(np.float32)
    spec = Radiometry(
        kind="sar", bands=("VV", "VH"), units=units, ranges=((-60, 20), (-60, 20), (-30, 30))
    )
    r = Raster(native, ["VV", "VH"])
    y = spec.forward(r)
    assert y.shape == (3, 16, 16) and y.dtype == np.float32 and -1 <= y.min() <= y.max() <= 1
    db = 10 * np.log10(power.astype(np.float64))
    # B is the co/cross ratio in dB on its own range.
    np.testing.assert_allclose(y[2], (db[0] - db[1] + 30) / 30 - 1, atol=1e-5)
    back = spec.inverse(y)
    assert back.array.dtype == np.float32 and back.count == 2
    np.testing.assert_allclose(back.array, native, rtol=1e-4, atol=1e-4)


def test_single_pol_replicated_and_uint16_optical_exact() -> None:
    rng = np.random.default_rng(2)
    amp = rng.integers(100, 9000, (1, 8, 8)).astype(np.uint16)
    spec = Radiometry(kind="sar", bands=(0,), units="amplitude", ranges=((30.0, 90.0),))
    y = spec.forward(Raster(amp))
    assert np.array_equal(y[0], y[1]) and np.array_equal(y[1], y[2])
    back = Radiometry(**{**spec.to_dict(), "dtype": "uint16"}).inverse(y)
    assert back.array.dtype == np.uint16
    np.testing.assert_allclose(back.array.astype(float), amp, rtol=2e-4, atol=1)

    ms = rng.integers(0, 4000, (13, 8, 8)).astype(np.uint16)
    opt = Radiometry(
        kind="optical",
        bands=("B04", "B03", "B02"),
        ranges=((0, 4000), (0, 4000), (0, 4000)),
        dtype="uint16",
        band_count=13,
        band_names=("B04", "B03", "B02"),
    )
    y = opt.forward(Raster(ms, list(S2_BANDS)))
    back = opt.inverse(y)
    assert back.band_names == ["B04", "B03", "B02"]
    np.testing.assert_array_equal(back.array, ms[[3, 2, 1]])  # integers come back exactly


def test_eurosat_ms_band_order_b8a_last() -> None:
    ms = np.arange(13, dtype=np.uint16)[:, None, None] * np.ones((1, 2, 2), np.uint16)
    r = Raster(ms, list(S2_BANDS))
    spec = Radiometry(kind="optical", bands=("B8A",), ranges=((0, 12),))
    assert spec.forward(r)[0, 0, 0] == 1.0  # B8A is index 12, the top of the range
    unnamed = default_radiometry(Raster(ms))  # 13 unnamed bands: read in EuroSAT-MS order
    assert unnamed.bands == ("B04", "B03", "B02") and unnamed.file_bands == "eurosat-ms"
    b8a = Radiometry(kind="optical", bands=("B8A",), file_bands="eurosat-ms", ranges=((0, 12),))
    assert b8a.forward(Raster(ms))[0, 0, 0] == 1.0
    assert default_radiometry(r).bands == ("B04", "B03", "B02")


def test_json_round_trip_and_mismatch_refused(tmp_path: Path) -> None:
    spec = Radiometry(kind="sar", bands=("VV", "VH"), percentiles=(1, 99), db_floor=-50)
    again = Radiometry.from_dict(json.loads(spec.to_json()))
    assert again == spec and again.to_json() == spec.to_json()
    (tmp_path / "r.json").write_text(spec.to_json())
    assert Radiometry.parse(str(tmp_path / "r.json")) == spec
    check_same_spec(spec.to_dict(), again, "x")
    other = Radiometry(kind="sar", bands=("VV", "VH"), percentiles=(2, 98), db_floor=-50)
    with pytest.raises(GeosynthError, match="made with radiometry"):
        check_same_spec(spec.to_dict(), other, "lora/geosynth.json")
    with pytest.raises(GeosynthError, match="none \\(8-bit RGB\\)"):
        check_same_spec(None, other, "means.safetensors")
    with pytest.raises(GeosynthError, match="unknown key 'band'"):
        Radiometry.parse('{"kind": "optical", "band": [0]}')


def test_bad_input_errors(tmp_path: Path) -> None:
    r = Raster(np.array([[[0.0, 0.5], [1.0, 2.0]]], np.float32), ["VV"])
    spec = Radiometry(kind="sar", bands=("VV",), ranges=((-30.0, 5.0),))
    with pytest.raises(GeosynthError, match="non-positive power values have no dB; set"):
        spec.forward(r, "chip.tif")
    floored = Radiometry(kind="sar", bands=("VV",), ranges=((-30.0, 5.0),), db_floor=-30.0)
    assert floored.forward(r)[0, 0, 0] == -1.0
    with pytest.raises(GeosynthError, match=r"radiometry band.*band 'HH' is not in the file"):
        Radiometry(kind="sar", bands=("HH",), ranges=((-30.0, 5.0),)).forward(r)
    empty = Raster(np.full((1, 2, 2), np.nan, np.float32))
    with pytest.raises(GeosynthError, match=r"chip\.tif: no valid pixel"):
        Radiometry(kind="sar", bands=(0,), ranges=((-30.0, 5.0),)).forward(empty, "chip.tif")
    nod = Raster(np.array([[[0, 7], [7, 7]]], np.uint16), nodata=0)
    opt = Radiometry(kind="optical", bands=(0,), ranges=((0.0, 7.0),))
    assert opt.forward(nod)[0, 0, 0] == -1.0 and opt.forward(nod)[0, 1, 1] == 1.0
    with pytest.raises(GeosynthError, match="nodata 'error'"):
        Radiometry(kind="optical", bands=(0,), ranges=((0.0, 7.0),), nodata="error").forward(nod)
    with pytest.raises(GeosynthError, match="optical needs 1 or 3 bands"):
        Radiometry(kind="optical", bands=(0, 1), ranges=((0, 1), (0, 1)))


def test_mixed_band_counts_refused(tmp_path: Path) -> None:
    for name, bands in (("a", 2), ("b", 1)):
        (tmp_path / "d" / name).mkdir(parents=True)
        arr = np.ones((bands, 4, 4), np.float32)
        write_raster(tmp_path / "d" / name / "x.tif", Raster(arr))
    with pytest.raises(GeosynthError, match="1 bands, but the radiometry spec was made for 2-band"):
        load_dataset(tmp_path / "d", radiometry="auto")


def test_percentiles_fitted_once_on_the_training_set(tmp_path: Path) -> None:
    write_sar_dualpol(tmp_path / "sar", per_class=2)
    ds = load_dataset(tmp_path / "sar", radiometry="auto")
    spec = ds.radiometry
    assert spec is not None and spec.ranges is not None and spec.units == "power"
    assert spec.dtype == "float32" and spec.band_count == 2 and spec.band_names == ("VV", "VH")
    # A stored (fitted) spec is reused as is, not refitted on other data.
    write_sar_dualpol(tmp_path / "other", per_class=1, seed=5)
    again = load_dataset(tmp_path / "other", radiometry=spec.to_dict())
    assert again.radiometry == spec


def test_image_never_squashes_to_8bit(tmp_path: Path, toy_data: Path) -> None:
    write_png16(tmp_path / "p", per_class=1)
    ds = open_dataset(tmp_path / "p")
    with pytest.raises(GeosynthError, match=r"uint16 image with 1 band.*give a `radiometry` spec"):
        ds.image(0)
    with_spec = load_dataset(tmp_path / "p", radiometry="auto")
    img = with_spec.image(0)
    assert img.mode == "RGB" and 0 < np.asarray(img).mean() < 255
    write_s2_13band(tmp_path / "s2", per_class=1)
    with pytest.raises(GeosynthError, match="13 band"):
        open_dataset(tmp_path / "s2").image(0)
    plain = load_dataset(toy_data, radiometry="auto")  # 8-bit RGB: no spec, as before
    assert plain.radiometry is None and plain.image(0).mode == "RGB"


def test_pixel_size_is_recorded_but_not_part_of_a_specs_identity() -> None:
    """Generated chips get the training data's pixel size; two subsets of one dataset whose first
    files differ in pixel size (EuroSAT-MS: 9.99..10.01 m) still share one spec."""

    a = Radiometry(kind="sar", bands=(0,), ranges=((-30.0, 0.0),), units="db", dtype="float32",
                   band_count=1, pixel_size=(10.0, 10.0), file_nodata=-9999.0)  # fmt: skip
    b = Radiometry.from_dict({**a.to_dict(), "pixel_size": [10.002, 9.998]})
    assert b.pixel_size == (10.002, 9.998) and b.file_nodata == -9999.0
    check_same_spec(a.to_dict(), b, "lora")  # no error
    out = a.inverse(np.zeros((3, 4, 4), dtype=np.float32))
    assert out.crs is None and out.transform == (10.0, 0.0, 0.0, 0.0, -10.0, 0.0)
    assert out.nodata == -9999.0 and out.dtype == "float32"
    assert "pixel_size" not in Radiometry(kind="sar", bands=(0,), ranges=((-30.0, 0.0),)).to_dict()
