"""The real EuroSAT-MS sample: native units, the EuroSAT-MS band order and CRS survive."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from geosynth.data import open_dataset
from geosynth.data.raster import read_raster


def test_info_and_export_in_native_units(cli, eurosat_ms: Path, tmp_path: Path) -> None:
    res = cli("data", "info", eurosat_ms, "--split", "val", "--classes", "Forest,SeaLake", "--json")
    assert res.code == 0, res.err
    native = json.loads(res.out)["native"]
    assert native["dtype"] == "uint16" and native["count"] == 13
    assert all(c.startswith("EPSG:326") for c in native["crs"])
    bands = native["bands"]
    # Reflectance x 10000: visible bands in the hundreds to thousands, cirrus B10 (index 9) tiny.
    assert 300 < bands[3]["mean"] < 3000 and bands[9]["mean"] < 100
    # B8A is the last band and tracks the NIR band B08 (index 7), not the cirrus band.
    assert abs(bands[12]["mean"] - bands[7]["mean"]) < 0.5 * bands[7]["mean"]
    # Default radiometry: true colour from the file's own band order (indices 3, 2, 1).
    rad = json.loads(res.out)["radiometry"]
    assert rad["bands"] == ["B04", "B03", "B02"] and rad["file_bands"] == "eurosat-ms"

    out = tmp_path / "ms"
    res = cli("data", "export", eurosat_ms, "--split", "val", "--shots", "2", "--out", out)
    assert res.code == 0, res.err
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 20
    for row in rows[:5]:
        src, dst = read_raster(row["source"]), read_raster(out / row["file_name"])
        assert dst.array.dtype == np.uint16 and dst.array.tobytes() == src.array.tobytes()
        assert dst.crs == src.crs and dst.transform == src.transform
    assert open_dataset(out).raster(0).count == 13
