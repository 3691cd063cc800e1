"""`data tile`: chips equal the scene windows bit for bit and sit exactly where they came from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from geosynth.data import open_dataset, read_raster, tile_scenes
from geosynth.data.raster import Raster, write_raster
from geosynth.errors import GeosynthError
from tests.conftest import REPO

SSL4EO = REPO.parent / "shared" / "data" / "sar-real" / "ssl4eo-s12-s1"
# 30 degrees rotated, 10 m pixels: a geotransform with non-zero b and d terms.
ROTATED = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5300000.0) @ Affine.rotation(30.0)


def _scene(path: Path, h: int = 70, w: int = 90, nodata_rows: int = 0) -> Raster:
    rng = np.random.default_rng(0)
    arr = rng.integers(1, 60000, (3, h, w), dtype=np.uint16)
    arr[:, :nodata_rows] = 0
    r = Raster(arr, ["HH", "HV", "ratio"], nodata=0.0, crs="EPSG:32632",
               transform=tuple(ROTATED)[:6])  # fmt: skip
    write_raster(path, r)
    return r


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]


def test_chips_equal_windows_and_carry_exact_transforms(tmp_path) -> None:
    scene = _scene(tmp_path / "fields" / "scene.tif")
    out = tmp_path / "chips"
    summary = tile_scenes([tmp_path / "fields" / "scene.tif"], out, 32, 16)
    # 70 x 90 px, 32 px chips every 16 px: rows 0,16,32 and cols 0,16,32,48 (edges dropped).
    assert summary["chips"] == 12 and summary["classes"] == {"fields": 12}
    for row in _rows(out):
        chip = read_raster(out / row["file_name"])
        r, c = row["row"], row["col"]
        np.testing.assert_array_equal(chip.array, scene.array[:, r : r + 32, c : c + 32])
        assert chip.dtype == "uint16" and chip.band_names == ["HH", "HV", "ratio"]
        assert chip.nodata == 0 and chip.crs == "EPSG:32632"
        # The chip's pixel (i, j) is the scene's (r + i, c + j), on the ground.
        t = Affine(*chip.transform)
        for i, j in ((0, 0), (31, 5), (7, 31)):
            np.testing.assert_allclose(t @ (j, i), ROTATED @ (c + j, r + i), rtol=0, atol=1e-6)
    assert Path(row["file_name"]).name == "scene_r00032_c00048.tif"
    ds = open_dataset(out)  # an image folder every step reads
    assert ds.class_names == ["fields"] and len(ds) == 12


def test_nodata_heavy_scene_and_pad(tmp_path) -> None:
    scene = _scene(tmp_path / "s.tif", h=64, w=80, nodata_rows=40)
    # Chips of rows 0..31 are all nodata, rows 32..63 are 8/32 nodata.
    out = tile_scenes([tmp_path / "s.tif"], tmp_path / "a", 32, class_name="x")
    assert out["chips"] == 2 and out["skipped_nodata"] == 2
    with pytest.raises(GeosynthError, match=r"max_nodata=0\.2"):  # 8/32 = 0.25 nodata each
        tile_scenes([tmp_path / "s.tif"], tmp_path / "b", 32, class_name="x", max_nodata=0.2)
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.parts").exists()
    padded = tile_scenes(
        [tmp_path / "s.tif"], tmp_path / "c", 32, class_name="x", pad=True, max_nodata=0.7
    )
    # The 16 px wide right edge chip is kept: (8 x 16 + 32 x 16) / 32**2 = 0.625 nodata.
    assert padded["chips"] == 3
    edge = read_raster(tmp_path / "c" / "x" / "s_r00032_c00064.tif")
    np.testing.assert_array_equal(edge.array[:, :, :16], scene.array[:, 32:64, 64:80])
    assert (edge.array[:, :, 16:] == 0).all()


def test_real_ssl4eo_scenes_stack_vv_vh(tmp_path) -> None:
    if not SSL4EO.is_dir():
        pytest.skip(f"real SSL4EO-S12 scenes not found at {SSL4EO}")
    out = tmp_path / "chips"
    summary = tile_scenes([SSL4EO], out, 64, 100)
    assert summary["chips"] == 2 * 3 * 3 and summary["bands"] == 2
    for row in _rows(out):
        chip = read_raster(out / row["file_name"])
        vv, vh = (read_raster(f) for f in row["source"])
        r, c = row["row"], row["col"]
        want = np.concatenate([vv.array, vh.array])[:, r : r + 64, c : c + 64]
        np.testing.assert_array_equal(chip.array, want)
        assert chip.band_names == ["VV", "VH"] and chip.crs == vv.crs == "EPSG:4326"
        assert Affine(*chip.transform) == Affine(*vv.transform) @ Affine.translation(c, r)


def test_resume_keeps_finished_chips(tmp_path, monkeypatch) -> None:
    import geosynth.data.tile as tile

    _scene(tmp_path / "s.tif")
    calls = {"n": 0}
    real_write = tile.write_raster

    def failing(path, raster):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_write(path, raster)

    monkeypatch.setattr(tile, "write_raster", failing)
    out = tmp_path / "chips"
    with pytest.raises(KeyboardInterrupt):
        tile_scenes([tmp_path / "s.tif"], out, 32, 16)
    assert not out.exists() and len(list((tmp_path / "chips.parts").rglob("*.tif"))) == 4
    with pytest.raises(GeosynthError, match="pass `resume`"):
        tile_scenes([tmp_path / "s.tif"], out, 32, 16)
    with pytest.raises(GeosynthError, match="other settings"):
        tile_scenes([tmp_path / "s.tif"], out, 32, 8, resume=True)
    summary = tile_scenes([tmp_path / "s.tif"], out, 32, 16, resume=True)
    assert summary["chips"] == 12 and summary["reused"] == 4
    assert not (tmp_path / "chips.parts").exists()
    fresh = tile_scenes([tmp_path / "s.tif"], tmp_path / "fresh", 32, 16)
    assert fresh["chips"] == 12
    for row in _rows(out):
        a = read_raster(out / row["file_name"]).array
        np.testing.assert_array_equal(a, read_raster(tmp_path / "fresh" / row["file_name"]).array)


def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path) -> None:
    _scene(tmp_path / "s.tif", h=40, w=40)
    out = tmp_path / "chips"
    res = cli("data", "tile", tmp_path / "s.tif", "--size", "64", "--out", out)
    assert res.code == 2
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--size 64" in lines[0] and "40x40" in lines[0], res.err
    assert lines[0].endswith("or pass --pad"), res.err  # the library's `pad`, as its flag
    assert not out.exists() and not (tmp_path / "chips.parts").exists()
    res = cli("data", "tile", tmp_path / "nope.tif", "--size", "8", "--out", out)
    assert res.code == 2 and "nope.tif" in res.err and not out.exists()
    res = cli("data", "tile", tmp_path / "s.tif", "--size", "16", "--out", out, "--class", "a")
    assert res.code == 0, res.err
    assert "wrote 4 chips" in res.err.replace("\n", " ")
