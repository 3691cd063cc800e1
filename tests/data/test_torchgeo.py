"""torchgeo's EuroSAT layouts with their split files, and plain per-class GeoTIFF folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geosynth.data import load_dataset, open_dataset
from geosynth.data.torchgeo import EUROSAT_BASE_DIRS
from geosynth.errors import GeosynthError
from tests.data.rasters.data import write_s2_13band


def _torchgeo_ms(root: Path) -> Path:
    write_s2_13band(root / EUROSAT_BASE_DIRS[0], per_class=3)
    # torchgeo's split files name the .jpg of the RGB release for both releases.
    (root / "eurosat-train.txt").write_text("Forest_0.jpg\nForest_1.jpg\nSeaLake_2.jpg\n")
    (root / "eurosat-val.txt").write_text("Forest_2.jpg\nSeaLake_0.jpg\n")
    return root


def test_torchgeo_ms_layout_and_splits(tmp_path: Path) -> None:
    root = _torchgeo_ms(tmp_path / "eurosat")
    assert len(open_dataset(root)) == 6
    train = open_dataset(root, split="train")
    assert train.class_names == ["Forest", "SeaLake"] and train.counts() == {
        "Forest": 2,
        "SeaLake": 1,
    }
    assert train.selection == {"split": "train"}
    r = train.raster(0)
    assert r.count == 13 and r.dtype == "uint16" and r.crs == "EPSG:32632"
    ds = load_dataset(root, split="val", radiometry="auto")
    assert ds.radiometry is not None and ds.radiometry.band_names == ("B04", "B03", "B02")
    with pytest.raises(GeosynthError, match=r"no eurosat-test\.txt"):
        open_dataset(root, split="test")
    (root / "eurosat-test.txt").write_text("Forest_9.jpg\n")
    with pytest.raises(GeosynthError, match="not under"):
        open_dataset(root, split="test")


def test_rgb_release_layout(tmp_path: Path) -> None:
    from PIL import Image

    for c in ("AnnualCrop", "River"):
        (tmp_path / "e" / "2750" / c).mkdir(parents=True)
        for i in range(2):
            arr = np.full((8, 8, 3), 40 * (i + 1), np.uint8)
            Image.fromarray(arr).save(tmp_path / "e" / "2750" / c / f"{c}_{i}.jpg")
    (tmp_path / "e" / "eurosat-train.txt").write_text("AnnualCrop_1.jpg\nRiver_0.jpg\n")
    ds = load_dataset(tmp_path / "e", split="train", radiometry="auto")
    assert ds.radiometry is None and len(ds) == 2 and ds.image(0).mode == "RGB"
