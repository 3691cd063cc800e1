"""Sentinel-1 datasets in their own layouts: stacked VV/VH samples, BigEarthNet labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geosynth.data import load_dataset, open_dataset
from geosynth.data.sentinel1 import BEN19_CLASSES, BEN19_FROM_V1
from geosynth.data.stack import read_stack
from geosynth.data.stats import band_stats
from tests.conftest import REPO
from tests.data.sentinel1.data import REBEN_PATCHES, make_ben_v1, make_reben

SAR_REAL = REPO.parent / "shared" / "data" / "sar-real"


@pytest.fixture(scope="module")
def sar_real() -> Path:
    if not (SAR_REAL / "bigearthnet-s1").is_dir():
        pytest.skip(f"real Sentinel-1 samples not found at {SAR_REAL}")
    return SAR_REAL


def _direct_stats(files: list[tuple[Path, Path]]) -> np.ndarray:
    """Per-band mean, std, min, max over every file, read with rasterio directly."""
    import rasterio

    vals: list[list[np.ndarray]] = [[], []]
    for vv, vh in files:
        for b, f in enumerate((vv, vh)):
            with rasterio.open(f) as src:
                vals[b].append(src.read(1).astype(np.float64).ravel())
    rows = [np.concatenate(v) for v in vals]
    return np.array([[v.mean(), v.std(), v.min(), v.max()] for v in rows])


def _report(ds) -> np.ndarray:
    rows = band_stats(ds)["bands"]
    return np.array([[r["mean"], r["std"], r["min"], r["max"]] for r in rows])


def test_bigearthnet_s1_reads_vv_vh_patches_with_their_classes(sar_real, cli, tmp_path) -> None:
    root = sar_real / "bigearthnet-s1"
    ds = open_dataset(root)
    assert ds.kind == "bigearthnet-s1" and len(ds) == 6
    assert set(ds.class_names) <= set(BEN19_CLASSES)
    for i, s in enumerate(ds.samples):
        r = ds.raster(i)
        assert r.count == 2 and r.band_names == ["VV", "VH"] and r.dtype == "float32"
        labels = json.loads(next(Path(s.ref.files[0]).parent.glob("*.json")).read_text())["labels"]
        # The default rule: the first label with a 19-class equivalent.
        first = next(BEN19_FROM_V1[x] for x in labels if x in BEN19_FROM_V1)
        assert ds.class_names[s.label] == first
    files = [(s.ref.files[0], s.ref.files[1]) for s in ds.samples]
    assert all(vv.name.endswith("_VV.tif") and vh.name.endswith("_VH.tif") for vv, vh in files)
    np.testing.assert_allclose(_report(ds), _direct_stats(files), rtol=1e-9, atol=1e-9)
    res = cli("data", "info", root)
    assert res.code == 0, res.err
    assert "VV" in res.out and "VH" in res.out and "dropped:" in res.err
    # Exported: one stacked 2-band GeoTIFF per patch, named after it, bit for bit.
    res = cli("data", "export", root, "--out", tmp_path / "stacked")
    assert res.code == 0, res.err
    out = open_dataset(tmp_path / "stacked")
    assert out.class_names == ds.class_names and len(out) == 6
    for i, s in enumerate(out.samples):
        src = ds.samples[ds.keys.index(Path(s.key).stem)]
        np.testing.assert_array_equal(out.raster(i).array, read_stack(src.ref).array)


def test_ssl4eo_s1_reads_two_band_samples(sar_real) -> None:
    root = sar_real / "ssl4eo-s12-s1"
    ds = open_dataset(root)
    assert ds.kind == "ssl4eo-s12-s1" and len(ds) == 2 and ds.class_names == [root.name]
    assert ds.raster(0).count == 2 and ds.raster(0).band_names == ["VV", "VH"]
    scenes = sorted(root.glob("*/*/"))
    files = [(d / "VV.tif", d / "VH.tif") for d in scenes]
    np.testing.assert_allclose(_report(ds), _direct_stats(files), rtol=1e-9, atol=1e-9)


def test_reben_labels_splits_and_label_map(tmp_path) -> None:
    root = make_reben(tmp_path / "reben")
    ds = open_dataset(root)
    assert ds.kind == "reben-s1" and len(ds) == 4
    by_key = {Path(s.key).name: ds.class_names[s.label] for s in ds.samples}
    assert by_key == {p: labels[0] for _, p, _, labels in REBEN_PATCHES}
    dropped = ds.selection["labels"]["dropped"]
    assert dropped["Mixed forest"] == 1 and "Urban fabric" not in dropped
    train = open_dataset(root, split="train")
    assert len(train) == 2 and train.selection["split"] == "train"
    # A user map: priority by key order; patches without a mapped label are left out.
    mapped = load_dataset(
        root,
        label_map={"Mixed forest": "forest", "Coniferous forest": "forest", "Pastures": "grass"},
    )
    assert mapped.class_names == ["forest", "grass"] and mapped.counts() == {
        "forest": 2,
        "grass": 1,
    }
    assert mapped.selection["labels"]["patches_left_out"] == 1
    r = mapped.raster(0)
    assert r.band_names == ["VV", "VH"] and r.crs == "EPSG:32632"


@pytest.mark.parametrize(
    ("bad", "needle"),
    [("size", "size 20x20"), ("crs", "CRS EPSG:32633"), ("missing", "missing VH")],
)
def test_bad_polarisation_pairs_are_one_line_errors(bad, needle, cli, tmp_path) -> None:
    root = make_ben_v1(tmp_path / "ben", bad=bad)
    out = tmp_path / "out"
    res = cli("data", "export", root, "--out", out)
    assert res.code == 2
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], res.err
    assert not out.exists()


def test_label_map_naming_unknown_labels_is_refused(cli, tmp_path) -> None:
    root = make_ben_v1(tmp_path / "ben")
    res = cli("data", "info", root, "--label-map", '{"Pasture": "grass"}')
    assert res.code == 2
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--label-map" in lines[0] and "'Pasture'" in lines[0]
    # v1 labels match a map through their 19-class name; "Airports" has none: dropped.
    ds = open_dataset(root, label_map={"Inland wetlands": "wet", "Pastures": "grass"})
    assert ds.counts() == {"wet": 1, "grass": 1}
    assert ds.selection["labels"]["dropped"] == {"Airports": 1, "Coniferous forest": 1}


def test_eurosat_ms_bands_by_name(eurosat_ms) -> None:
    """`--bands B04,B03,B02` on the real files (which name no bands): the README's order
    (B01..B12, then B8A) puts them at indices 3, 2, 1; B8A is the last band."""
    from geosynth.data.multiband import band_input

    ds = open_dataset(eurosat_ms, split="val").few_shot(1, 0)
    bi = band_input(ds, "B04,B03,B02")
    assert bi.bands == (3, 2, 1) and bi.names == ("B04", "B03", "B02")
    assert band_input(ds, "B8A,B10").bands == (12, 9)
    stats = band_stats(ds)["bands"]
    assert [b["name"] for b in stats][8:] == ["B09", "B10", "B11", "B12", "B8A"]
    # B10 (cirrus) is near zero in the README's statistics: the name points at the right band.
    assert stats[9]["mean"] < 100 < stats[12]["mean"]
