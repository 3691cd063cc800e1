"""Generators for fake Sentinel-1 datasets in their shipped layouts (as torchgeo keeps under
tests/data/<dataset>/data.py): reBEN (BigEarthNet v2), which ../shared does not hold, and
BigEarthNet-S1 v1 patches for the bad-input cases (VV and VH that disagree, a missing file).

reBEN: ``ROOT/BigEarthNet-S1/<scene>/<patch>/<patch>_{VV,VH}.tif`` and ``ROOT/metadata.parquet``
with columns ``patch_id`` (the S2 patch), ``s1_name``, ``labels`` (19-class names), ``split``.
Run ``python tests/data/sentinel1/data.py OUT`` to write a reBEN tree under OUT.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from geosynth.data.raster import Raster, write_raster

UTM32 = "EPSG:32632"

#: (S1 scene, S1 patch, split, labels), as reBEN's metadata names them.
REBEN_PATCHES = [
    ("S1A_IW_GRDH_1SDV_20170613T165043", "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_61_39",
     "train", ["Urban fabric", "Industrial or commercial units", "Complex cultivation patterns"]),
    ("S1A_IW_GRDH_1SDV_20170614T165154", "S1A_IW_GRDH_1SDV_20170614T165154_32TQT_71_84",
     "train", ["Broad-leaved forest", "Mixed forest", "Transitional woodland, shrub"]),
    ("S1A_IW_GRDH_1SDV_20170615T170156", "S1A_IW_GRDH_1SDV_20170615T170156_32TNS_77_12",
     "val", ["Arable land", "Pastures", "Inland waters"]),
    ("S1A_IW_GRDH_1SDV_20170618T165722", "S1A_IW_GRDH_1SDV_20170618T165722_32TQR_92_45",
     "test", ["Coniferous forest", "Natural grassland and sparsely vegetated areas"]),
]  # fmt: skip


def _band(path: Path, seed: int, size: int = 24, crs: str = UTM32, x0: float = 500000.0) -> None:
    rng = np.random.default_rng(seed)
    arr = rng.normal(-15.0, 3.0, (1, size, size)).astype(np.float32)  # dB backscatter
    write_raster(path, Raster(arr, crs=crs, transform=(10.0, 0.0, x0, 0.0, -10.0, 5300000.0)))


def make_reben(root: Path) -> Path:
    """A reBEN S1 tree with four patches (train, train, val, test) and its metadata.parquet."""
    import pandas as pd

    for i, (scene, patch, _, _) in enumerate(REBEN_PATCHES):
        d = root / "BigEarthNet-S1" / scene / patch
        d.mkdir(parents=True)
        for j, pol in enumerate(("VV", "VH")):
            _band(d / f"{patch}_{pol}.tif", 10 * i + j)
    rows = [
        {"patch_id": f"S2A_MSIL2A_fake_{i}", "s1_name": p, "split": s, "labels": labels}
        for i, (_, p, s, labels) in enumerate(REBEN_PATCHES)
    ]
    pd.DataFrame.from_records(rows).to_parquet(root / "metadata.parquet")
    return root


def make_ben_v1(root: Path, *, bad: str | None = None) -> Path:
    """Two BigEarthNet-S1 v1 patches; ``bad``: "size" (VH smaller), "crs" (VH in another CRS) or
    "missing" (no VH file) in the second patch."""
    for i, labels in enumerate((["Pastures", "Airports"], ["Coniferous forest", "Peatbogs"])):
        name = f"S1A_IW_GRDH_1SDV_20170613T165043_33UUP_{i}_1"
        d = root / name
        d.mkdir(parents=True)
        (d / f"{name}_labels_metadata.json").write_text(json.dumps({"labels": labels}))
        _band(d / f"{name}_VV.tif", i)
        if i == 1 and bad == "missing":
            continue
        size = 20 if (i == 1 and bad == "size") else 24
        crs = "EPSG:32633" if (i == 1 and bad == "crs") else UTM32
        _band(d / f"{name}_VH.tif", 100 + i, size=size, crs=crs)
    return root


if __name__ == "__main__":
    make_reben(Path(sys.argv[1]))
