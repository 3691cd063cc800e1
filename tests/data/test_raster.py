"""Native-unit rasters: read/write round trips keep dtype, bands, values and georeference."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geosynth.data import open_dataset
from geosynth.data.raster import Raster, read_raster, write_raster
from geosynth.errors import GeosynthError
from tests.data.rasters.data import S2_BANDS, write_png16, write_s2_13band, write_sar_dualpol

UTM = (10.0, 0.0, 600000.0, 0.0, -10.0, 5700000.0)


def _values(dtype: str, bands: int, rng: np.random.Generator) -> np.ndarray:
    shape = (bands, 9, 7)
    if dtype == "float32":
        a = rng.lognormal(-3, 2, shape).astype(np.float32)
        a[0, 0, 0] = np.nan  # NaN survives bit for bit too
        return a
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "uint16", "int16"])
@pytest.mark.parametrize("bands", [1, 2, 13])
def test_geotiff_round_trip_is_bit_exact(tmp_path: Path, dtype: str, bands: int) -> None:
    rng = np.random.default_rng(bands)
    arr = _values(dtype, bands, rng)
    names = [f"b{i}" for i in range(bands)]
    src = Raster(arr, names, -9999.0 if dtype != "uint16" else 0.0, "EPSG:32631", UTM)
    write_raster(tmp_path / "x.tif", src)
    back = read_raster(tmp_path / "x.tif")
    assert back.array.dtype == arr.dtype and back.array.shape == arr.shape
    assert back.array.tobytes() == arr.tobytes()
    assert back.band_names == names
    assert back.crs == "EPSG:32631" and back.transform == UTM
    assert back.nodata == src.nodata
    assert [p.name for p in tmp_path.iterdir()] == ["x.tif"]  # no temp or sidecar left


def test_plain_tiff_has_no_georeference(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    write_raster(tmp_path / "p.tif", Raster(arr))
    back = read_raster(tmp_path / "p.tif")
    assert back.crs is None and back.transform is None and back.band_names is None
    np.testing.assert_array_equal(back.array, arr)


def test_png16_read_natively(tmp_path: Path) -> None:
    grey = np.full((5, 6), 2975, dtype=np.uint16)
    grey[0, 0] = 65535
    Image.fromarray(grey).save(tmp_path / "g.png")
    r = read_raster(tmp_path / "g.png")
    assert r.array.dtype == np.uint16 and r.array.shape == (1, 5, 6)
    np.testing.assert_array_equal(r.array[0], grey)
    write_png16(tmp_path / "rgb16", per_class=1, bands=3)
    r3 = read_raster(next((tmp_path / "rgb16" / "Bright").glob("*.png")))
    assert r3.array.dtype == np.uint16 and r3.count == 3 and r3.array.max() > 255


def test_eight_bit_png_and_jpeg_match_pil(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=90)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_raster(tmp_path / "c.png").array, rgb.transpose(2, 0, 1))
    jpg = np.asarray(Image.open(tmp_path / "c.jpg").convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_array_equal(read_raster(tmp_path / "c.jpg").array, jpg)
    assert read_raster(tmp_path / "l.png").array.shape == (1, 8, 8)


def test_unreadable_file_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage")
    with pytest.raises(GeosynthError, match=r"bad\.tif: cannot read image"):
        read_raster(bad)


def test_write_refuses_non_tiff_path(tmp_path: Path) -> None:
    with pytest.raises(GeosynthError, match=r"\.tif"):
        write_raster(tmp_path / "x.png", Raster(np.zeros((1, 2, 2), np.uint8)))


def test_band_index_by_name_and_index() -> None:
    r = Raster(np.zeros((13, 2, 2), np.uint16), list(S2_BANDS))
    assert r.band_index("B8A") == 12 and r.band_index("B04") == 3 and r.band_index(2) == 2
    with pytest.raises(GeosynthError, match="band 'B13' is not in the file"):
        r.band_index("B13")
    with pytest.raises(GeosynthError, match="out of range"):
        r.band_index(13)


def test_dataset_raster_for_folders_and_hf(tmp_path: Path) -> None:
    write_sar_dualpol(tmp_path / "sar", per_class=2)
    ds = open_dataset(tmp_path / "sar")
    r = ds.raster(0)
    assert r.array.dtype == np.float32 and r.count == 2 and r.band_names == ["VV", "VH"]
    assert r.crs == "EPSG:32631"
    write_s2_13band(tmp_path / "s2", per_class=1)
    r = open_dataset(tmp_path / "s2").raster(0)
    assert r.array.dtype == np.uint16 and r.count == 13 and r.band_names == S2_BANDS

    import datasets

    tif = (tmp_path / "s2" / "Forest" / "Forest_0.tif").read_bytes()
    hf = datasets.Dataset.from_dict(
        {"image": [{"bytes": tif, "path": None}], "label": [0]},
        features=datasets.Features(
            {"image": datasets.Image(), "label": datasets.ClassLabel(names=["Forest"])}
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf.save_to_disk(str(tmp_path / "hf"))
    r2 = open_dataset(tmp_path / "hf").raster(0)
    assert r2.array.tobytes() == r.array.tobytes() and r2.crs == "EPSG:32632"
