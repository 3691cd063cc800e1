"""`data info` / `data export` on native rasters: units, dtype, bands and georeference survive."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geosynth.data.raster import Raster, read_raster, write_raster
from geosynth.errors import GeosynthError
from tests.data.rasters.data import write_png16, write_sar_dualpol

UTM = (10.0, 0.0, 399960.0, 0.0, -10.0, 5300040.0)


def _one_line_error(res, *needles: str) -> None:
    assert res.code == 2, (res.out, res.err)
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1, res.err
    for n in needles:
        assert n in lines[0], lines[0]


def _chips(root: Path, dtype: str, bands: int, per_class: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(bands)
    arrays = {}
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            if dtype == "float32":
                arr = rng.gamma(2.0, 0.05, (bands, 6, 5)).astype(np.float32)
            else:
                info = np.iinfo(dtype)
                arr = rng.integers(info.min, info.max, (bands, 6, 5), endpoint=True, dtype=dtype)
            rel = f"{c}/{c}{i}.tif"
            write_raster(root / rel, Raster(arr, None, None, "EPSG:32633", UTM))
            arrays[rel] = arr
    return arrays


@pytest.mark.parametrize("dtype", ["float32", "uint16", "int16"])
@pytest.mark.parametrize("bands", [1, 2, 13])
def test_export_is_bit_exact_and_keeps_crs(cli, tmp_path: Path, dtype: str, bands: int) -> None:
    arrays = _chips(tmp_path / "src", dtype, bands)
    res = cli("data", "export", tmp_path / "src", "--out", tmp_path / "out")
    assert res.code == 0, res.err
    for rel, arr in arrays.items():
        back = read_raster(tmp_path / "out" / rel)
        assert back.array.dtype == arr.dtype and back.array.tobytes() == arr.tobytes()
        assert back.crs == "EPSG:32633" and back.transform == UTM
    # ... and reads back as a dataset with the same native statistics.
    info = json.loads(cli("data", "info", tmp_path / "out", "--json").out)
    assert info["native"]["dtype"] == dtype and info["native"]["count"] == bands


def test_info_reports_native_band_statistics(cli, tmp_path: Path) -> None:
    write_sar_dualpol(tmp_path / "sar", per_class=2)
    res = cli("data", "info", tmp_path / "sar", "--json")
    assert res.code == 0, res.err
    assert "radiometry (default for float32 2-band data): sar power -> db" in res.err
    native = json.loads(res.out)["native"]
    stack = np.stack([read_raster(p).array for p in sorted((tmp_path / "sar").rglob("*.tif"))])
    for b, row in enumerate(native["bands"]):
        vals = stack[:, b].astype(np.float64)
        assert row["name"] == ["VV", "VH"][b]
        assert row["mean"] == pytest.approx(vals.mean(), rel=1e-9)
        assert row["std"] == pytest.approx(vals.std(), rel=1e-6)
        assert row["max"] == pytest.approx(vals.max())
    assert native["crs"] == ["EPSG:32631"]
    table = cli("data", "info", tmp_path / "sar")
    assert "bands in native units (float32" in table.out and "VH" in table.out


def test_png16_is_not_squashed(cli, tmp_path: Path) -> None:
    write_png16(tmp_path / "p", per_class=2)
    info = json.loads(cli("data", "info", tmp_path / "p", "--json").out)
    assert info["native"]["dtype"] == "uint16" and info["native"]["bands"][0]["mean"] > 2000
    assert info["radiometry"]["kind"] == "sar" and info["radiometry"]["units"] == "amplitude"
    assert cli("data", "export", tmp_path / "p", "--out", tmp_path / "o").code == 0
    exported = sorted((tmp_path / "o").rglob("*.tif"))
    assert len(exported) == 4 and read_raster(exported[0]).array.dtype == np.uint16


def test_bad_native_input_is_one_line_exit_2(cli, tmp_path: Path) -> None:
    d = tmp_path / "mixed"
    for name, bands in (("a", 2), ("b", 1)):
        (d / name).mkdir(parents=True)
        write_raster(d / name / "x.tif", Raster(np.ones((bands, 4, 4), np.float32)))
    _one_line_error(cli("data", "info", d), "b/x.tif", "1 bands")
    _one_line_error(cli("data", "export", d, "--out", tmp_path / "o1"), "b/x.tif", "band count")
    assert not (tmp_path / "o1").exists()
    # Mixed dtypes.
    dt = tmp_path / "dtypes"
    for name, dtype in (("a", np.uint16), ("b", np.int16)):
        (dt / name).mkdir(parents=True)
        write_raster(dt / name / "x.tif", Raster(np.ones((2, 4, 4), dtype)))
    _one_line_error(cli("data", "export", dt, "--out", tmp_path / "o2"), "dtype")
    assert not (tmp_path / "o2").exists()
    # Band names not in the file, dB of zeros without a floor, an all-nodata chip.
    write_sar_dualpol(tmp_path / "sar", per_class=1)
    spec = '{"kind": "sar", "bands": ["VV", "HH"], "percentiles": [1, 99]}'
    _one_line_error(cli("data", "info", tmp_path / "sar", "--radiometry", spec), "'HH'", "VV, VH")
    z = tmp_path / "zeros" / "a"
    z.mkdir(parents=True)
    write_raster(z / "x.tif", Raster(np.zeros((1, 4, 4), np.float32), ["VV"]))
    spec = '{"kind": "sar", "bands": ["VV"], "ranges": [[-30, 5]]}'
    _one_line_error(cli("data", "info", z.parent, "--radiometry", spec), "x.tif", "db_floor")
    n = tmp_path / "nodata" / "a"
    n.mkdir(parents=True)
    _write_unchecked(n / "x.tif", np.full((1, 4, 4), -9999, np.float32), nodata=-9999.0)
    _one_line_error(cli("data", "info", n.parent), "x.tif", "every value is NaN or nodata")
    # non-finite values no dataset means: an infinity, or nothing but NaN
    for name, arr in (("inf", np.full((1, 4, 4), 1.0)), ("nan", np.full((1, 4, 4), np.nan))):
        arr = arr.astype(np.float32)
        arr[0, 0, 0] = np.inf if name == "inf" else arr[0, 0, 0]
        _write_unchecked(tmp_path / name / "a" / "x.tif", arr)
        want = "1 infinite value" if name == "inf" else "every value is NaN"
        _one_line_error(cli("data", "info", tmp_path / name), "x.tif", want)
        with pytest.raises(GeosynthError, match=want):  # and never written
            write_raster(tmp_path / f"{name}.tif", Raster(arr))


def _write_unchecked(path: Path, arr: np.ndarray, nodata: float | None = None) -> None:
    """A GeoTIFF written by another tool (write_raster refuses such values)."""
    import warnings

    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": 4, "height": 4, "count": 1, "dtype": "float32"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not georeferenced
        with rasterio.open(path, "w", **profile, nodata=nodata) as dst:
            dst.write(arr)
