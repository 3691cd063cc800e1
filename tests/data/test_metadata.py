"""Per-sample metadata read from the data: centre lon/lat and GSD from the georeference (checked
against a UTM inverse written out here and against GDAL directly), dates from the datasets' own
JSON and from GeoTIFF tags, and what `data tile` / `data export` keep."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from geosynth.data import load_dataset, open_dataset, tile_scenes
from geosynth.data.dataset_metadata import metadata_summary
from geosynth.data.metadata import georeference_fields, parse_date
from geosynth.data.raster import Raster, write_raster
from geosynth.errors import GeosynthError
from tests.conftest import REPO

SAR_REAL = REPO.parent / "shared" / "data" / "sar-real"

# WGS84
_A, _F = 6378137.0, 1 / 298.257223563


def utm_inverse(easting: float, northing: float, zone: int) -> tuple[float, float]:
    """UTM (northern hemisphere) -> lon, lat in degrees: Krueger's series to third order in n
    (Karney 2011), accurate to about a millimetre inside a zone: a reference that shares no
    code with GDAL/PROJ."""
    n = _F / (2 - _F)
    big_a = _A / (1 + n) * (1 + n**2 / 4 + n**4 / 64)
    beta = (n / 2 - 2 * n**2 / 3 + 37 * n**3 / 96, n**2 / 48 + n**3 / 15, 17 * n**3 / 480)
    delta = (2 * n - 2 * n**2 / 3 - 2 * n**3, 7 * n**2 / 3 - 8 * n**3 / 5, 56 * n**3 / 15)
    xi = northing / (0.9996 * big_a)
    eta = (easting - 500000.0) / (0.9996 * big_a)
    xi_p = xi - sum(
        b * math.sin(2 * j * xi) * math.cosh(2 * j * eta) for j, b in enumerate(beta, 1)
    )
    eta_p = eta - sum(
        b * math.cos(2 * j * xi) * math.sinh(2 * j * eta) for j, b in enumerate(beta, 1)
    )
    chi = math.asin(math.sin(xi_p) / math.cosh(eta_p))
    phi = chi + sum(d * math.sin(2 * j * chi) for j, d in enumerate(delta, 1))
    lon0 = 6 * zone - 183
    return lon0 + math.degrees(math.atan2(math.sinh(eta_p), math.cos(xi_p))), math.degrees(phi)


def _direct(path: Path) -> tuple[float, float, float, float]:
    """Centre lon/lat by GDAL straight from the file, and the file's pixel sides."""
    import rasterio
    from rasterio.warp import transform

    with rasterio.open(path) as src:
        x, y = src.transform @ (src.width / 2, src.height / 2)
        lons, lats = transform(src.crs, "EPSG:4326", [x], [y])
        return lons[0], lats[0], abs(src.transform.a), abs(src.transform.e)


def test_eurosat_ms_centres_and_gsd(eurosat_ms, cli) -> None:
    """Done-when: `data info --json` gives each real chip's centre (1e-6 degrees) and GSD."""
    res = cli("data", "info", eurosat_ms, "--split", "val", "--classes", "Forest,SeaLake",
              "--by-sample", "--json")  # fmt: skip
    assert res.code == 0, res.err
    meta = json.loads(res.out)["metadata"]
    assert meta["samples"] == 16 and meta["fields"]["lon"]["known"] == 16
    assert meta["fields"]["date"]["known"] == 0  # EuroSAT ships no dates: missing, not guessed
    for row in meta["by_sample"]:
        path = eurosat_ms / "val" / row["key"]
        lon, lat, sx, sy = _direct(path)
        assert abs(row["lon"] - lon) < 1e-6 and abs(row["lat"] - lat) < 1e-6
        import rasterio

        with rasterio.open(path) as src:
            zone = int(src.crs.to_epsg()) - 32600
            x, y = src.transform @ (src.width / 2, src.height / 2)
        ref_lon, ref_lat = utm_inverse(x, y, zone)
        assert abs(row["lon"] - ref_lon) < 1e-6 and abs(row["lat"] - ref_lat) < 1e-6
        assert row["gsd"] == pytest.approx((sx + sy) / 2, rel=1e-12)
        assert 9.9 < row["gsd"] < 10.1


def test_every_eurosat_ms_chip_is_placed(eurosat_ms) -> None:
    for split in ("train", "val", "pool"):
        ds = load_dataset(eurosat_ms, split=split)
        assert not ds.metadata_cache  # read only when asked for
        summary = metadata_summary(ds, by_sample=True)
        for row in summary["by_sample"]:
            lon, lat, _, _ = _direct(eurosat_ms / split / row["key"])
            assert abs(row["lon"] - lon) < 1e-9 and abs(row["lat"] - lat) < 1e-9
        # Europe (Cyprus to Finland)
        assert summary["fields"]["lon"]["min"] > -10 and summary["fields"]["lon"]["max"] < 40
        assert summary["fields"]["lat"]["min"] > 30 and summary["fields"]["lat"]["max"] < 70


@pytest.fixture(scope="module")
def sar_real() -> Path:
    if not (SAR_REAL / "bigearthnet-s1").is_dir():
        pytest.skip(f"real Sentinel-1 samples not found at {SAR_REAL}")
    return SAR_REAL


def test_sentinel1_dates_from_their_json(sar_real, cli) -> None:
    """Done-when: the BigEarthNet-S1 and SSL4EO-S12 samples' acquisition dates."""
    ben = sar_real / "bigearthnet-s1"
    res = cli("data", "info", ben, "--by-sample", "--json")
    assert res.code == 0, res.err
    rows = json.loads(res.out)["metadata"]["by_sample"]
    assert len(rows) == 6
    for row in rows:
        record = json.loads((ben / row["key"] / f"{row['key']}_labels_metadata.json").read_text())
        assert row["date"] == record["acquisition_time"]
        lon, lat, _, _ = _direct(ben / row["key"] / f"{row['key']}_VV.tif")
        assert abs(row["lon"] - lon) < 1e-9 and abs(row["lat"] - lat) < 1e-9 and row["gsd"] == 10
    ssl = sar_real / "ssl4eo-s12-s1"
    res = cli("data", "info", ssl, "--by-sample", "--json")
    assert res.code == 0, res.err
    meta = json.loads(res.out)["metadata"]
    assert meta["fields"]["date"]["sources"] == {"metadata.json": 2}
    for row in meta["by_sample"]:
        record = json.loads((ssl / row["key"] / "metadata.json").read_text())
        start = datetime.fromtimestamp(record["system:time_start"] / 1000, UTC)
        assert row["date"] == start.strftime("%Y-%m-%dT%H:%M:%S")
        # the product name holds the same sensing start
        assert row["date"].replace("-", "").replace(":", "") in row["key"]
        # EPSG:4326, ~1e-4 degree pixels: ~9.8 m at 30.5 N (checked below against PROJ)
        assert 9.5 < row["gsd"] < 10.0


def _aeqd_side(lon: float, lat: float, vec: tuple[float, float]) -> float:
    """Ground length of a pixel side ``vec`` (degrees) through (lon, lat): the two half-sides
    projected to an azimuthal equidistant projection centred there (PROJ), where distances
    from the centre are true geodesic distances."""
    from rasterio.warp import transform

    crs = f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m"
    xs, ys = transform(
        "EPSG:4326", crs, [lon + vec[0] / 2, lon - vec[0] / 2], [lat + vec[1] / 2, lat - vec[1] / 2]
    )
    return math.hypot(xs[0], ys[0]) + math.hypot(xs[1], ys[1])


@pytest.mark.parametrize("angle", [0.0, 25.0])
def test_geographic_crs_gsd_at_the_sample_latitude(angle) -> None:
    t = Affine(0.001, 0.0, 10.0, 0.0, -0.0008, 60.0) @ Affine.rotation(angle)
    got = georeference_fields("EPSG:4326", tuple(t)[:6], 40, 30)
    lon, lat = t @ (20, 15)
    assert abs(got["lon"] - lon) < 1e-12 and abs(got["lat"] - lat) < 1e-12
    side_x = _aeqd_side(lon, lat, (t.a, t.d))
    side_y = _aeqd_side(lon, lat, (t.b, t.e))
    assert got["gsd"] == pytest.approx((side_x + side_y) / 2, rel=1e-6)


def test_rotated_utm_transform_uses_the_full_affine() -> None:
    t = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5500000.0) @ Affine.rotation(30.0)
    got = georeference_fields("EPSG:32632", tuple(t)[:6], 64, 48)
    ref = utm_inverse(*(t @ (32, 24)), zone=32)
    assert abs(got["lon"] - ref[0]) < 1e-7 and abs(got["lat"] - ref[1]) < 1e-7
    assert got["gsd"] == pytest.approx(10.0, rel=1e-12)  # rotation does not change it
    # a CRS in US survey feet (New York Long Island): 3 ft pixels are 0.9144018 m
    feet = georeference_fields("EPSG:2263", (3.0, 0.0, 980000.0, 0.0, -3.0, 200000.0), 10, 10)
    assert feet["gsd"] == pytest.approx(3 * 1200 / 3937, rel=1e-9)
    assert 40.6 < feet["lat"] < 40.8 and -74.1 < feet["lon"] < -73.9  # Manhattan
    # no CRS, or no transform: nothing is known
    assert georeference_fields(None, tuple(t)[:6], 64, 48) == {}
    assert georeference_fields("EPSG:32632", None, 64, 48) == {}


def _tif(path: Path, transform: Affine, tags: dict[str, str] | None = None) -> Path:
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.arange(2 * 40 * 50, dtype=np.uint16).reshape(2, 40, 50)
    write_raster(path, Raster(arr, crs="EPSG:32631", transform=tuple(transform)[:6]))
    if tags:
        with rasterio.open(path, "r+") as dst:
            dst.update_tags(**tags)
    return path


def test_date_tags_and_their_order(tmp_path) -> None:
    t = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)
    _tif(tmp_path / "d" / "a" / "tiff.tif", t, {"TIFFTAG_DATETIME": "2019:07:01 10:30:00"})
    _tif(tmp_path / "d" / "a" / "acq.tif", t,
         {"ACQUISITION_DATE": "2020-02-29", "TIFFTAG_DATETIME": "2021:01:01 00:00:00"})  # fmt: skip
    _tif(tmp_path / "d" / "a" / "blank.tif", t, {"TIFFTAG_DATETIME": "0000:00:00 00:00:00"})
    ds = open_dataset(tmp_path / "d")
    got = {Path(s.key).stem: ds.metadata(i) for i, s in enumerate(ds.samples)}
    assert got["tiff"].date == "2019-07-01T10:30:00"
    assert got["tiff"].sources["date"] == "TIFFTAG_DATETIME"
    assert got["acq"].date == "2020-02-29" and got["acq"].sources["date"] == "ACQUISITION_DATE"
    assert got["blank"].date is None and "date" not in got["blank"].sources
    assert got["acq"].model_values()["month"] == 2.0


def test_plain_rgb_has_no_metadata(toy_data) -> None:
    ds = open_dataset(toy_data)
    m = ds.metadata(0)
    assert m.to_dict() == dict.fromkeys(("lon", "lat", "gsd", "cloud_cover", "date"))
    assert set(m.model_values().values()) == {None}


def test_parse_date_forms() -> None:
    assert parse_date("2017-06-13T16:50:43", "x") == "2017-06-13T16:50:43"
    assert parse_date("20170613T165043", "x") == "2017-06-13T16:50:43"
    assert parse_date("2017-06-13", "x") == "2017-06-13"
    assert parse_date("2017-06-13T18:50:43+02:00", "x") == "2017-06-13T16:50:43"  # to UTC
    with pytest.raises(GeosynthError, match=r"x: date='13/06/2017': not a date"):
        parse_date("13/06/2017", "x")


def test_tiled_chips_keep_their_centre_and_the_scene_date(tmp_path) -> None:
    t = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0) @ Affine.rotation(20.0)
    scene = _tif(tmp_path / "s" / "fields" / "scene.tif", t, {"ACQUISITION_DATE": "2021-05-04"})
    tile_scenes([scene], tmp_path / "chips", 20)
    ds = open_dataset(tmp_path / "chips")
    assert len(ds) == 4
    for i, s in enumerate(ds.samples):
        m = ds.metadata(i)
        lon, lat, _, _ = _direct(tmp_path / "chips" / s.key)
        assert abs(m.lon - lon) < 1e-9 and abs(m.lat - lat) < 1e-9 and m.gsd == pytest.approx(10)
        assert m.date == "2021-05-04" and m.sources["date"] == "metadata.jsonl"
    centres = {(round(ds.metadata(i).lon, 6), round(ds.metadata(i).lat, 6)) for i in range(4)}
    assert len(centres) == 4  # each chip its own centre, not the scene's


def test_export_keeps_the_dates_the_files_cannot_hold(sar_real, tmp_path) -> None:
    from geosynth import export_subset

    export_subset(sar_real / "bigearthnet-s1", tmp_path / "out")
    src, out = open_dataset(sar_real / "bigearthnet-s1"), open_dataset(tmp_path / "out")
    dates = {Path(s.key).name: src.metadata(i).date for i, s in enumerate(src.samples)}
    for i, s in enumerate(out.samples):
        m = out.metadata(i)
        assert m.date == dates[Path(s.key).stem] and m.sources["lon"] == "georeference"
