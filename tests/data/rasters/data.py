"""Generators for the raster test data (as torchgeo keeps under tests/data/<dataset>/data.py).

Small, deterministic chips in the formats users bring: float32 dual-pol Sentinel-1-like SAR
GeoTIFFs (linear power backscatter), 13-band uint16 Sentinel-2-like GeoTIFFs in EuroSAT-MS band
order (reflectance x 10000), and 16-bit PNGs (1-channel amplitude and 3-channel). Each writes a
class-per-folder tree. Run ``python tests/data/rasters/data.py OUT`` to write all three under OUT.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from geosynth.data.raster import Raster, write_raster

#: EuroSAT-MS's band order (B8A last), as its README gives it.
S2_BANDS = [
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B09",
    "B10",
    "B11",
    "B12",
    "B8A",
]
# Typical mean reflectance x 10000 per band (EuroSAT-MS sample) for two land covers.
_S2_MEANS = {
    "Forest": [1250, 950, 800, 550, 900, 2200, 2700, 2600, 800, 12, 1300, 600, 2900],
    "SeaLake": [1300, 1000, 800, 550, 500, 450, 420, 400, 200, 8, 150, 100, 380],
}
# Mean backscatter (dB) per class and polarisation (VV, VH): water is dark, urban bright.
_SAR_DB = {"Water": (-20.0, -27.0), "Urban": (-4.0, -11.0)}


def _utm_transform(i: int) -> tuple[float, ...]:
    return (10.0, 0.0, 500000.0 + 640.0 * i, 0.0, -10.0, 5600000.0)


def write_sar_dualpol(root: Path, per_class: int = 3, size: int = 32, seed: int = 0) -> Path:
    """float32 VV/VH linear-power GeoTIFFs with gamma (4-look) speckle, UTM 31N."""
    rng = np.random.default_rng(seed)
    for c, (name, (vv, vh)) in enumerate(_SAR_DB.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            mean = np.array([10 ** (vv / 10), 10 ** (vh / 10)], dtype=np.float64)[:, None, None]
            arr = (mean * rng.gamma(4.0, 1 / 4.0, size=(2, size, size))).astype(np.float32)
            write_raster(
                root / name / f"{name}_{i}.tif",
                Raster(arr, ["VV", "VH"], None, "EPSG:32631", _utm_transform(10 * c + i)),
            )
    return root


def write_s2_13band(root: Path, per_class: int = 3, size: int = 32, seed: int = 0) -> Path:
    """uint16 13-band GeoTIFFs (EuroSAT-MS band order, reflectance x 10000), UTM 32N."""
    rng = np.random.default_rng(seed)
    for c, (name, means) in enumerate(_S2_MEANS.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            m = np.asarray(means, dtype=np.float64)[:, None, None]
            arr = m * (1 + 0.15 * rng.standard_normal((13, size, size)))
            arr = np.clip(np.round(arr), 0, 65535).astype(np.uint16)
            write_raster(
                root / name / f"{name}_{i}.tif",
                Raster(arr, list(S2_BANDS), None, "EPSG:32632", _utm_transform(10 * c + i)),
            )
    return root


def write_png16(
    root: Path, per_class: int = 3, size: int = 32, seed: int = 0, bands: int = 1
) -> Path:
    """16-bit PNGs: 1-channel SAR-like amplitudes (mean ~3000) or 3-channel 16-bit colour."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    rng = np.random.default_rng(seed)
    for c, name in enumerate(("Dark", "Bright")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            amp = (1500 + 3000 * c) * np.sqrt(rng.gamma(4.0, 1 / 4.0, size=(bands, size, size)))
            arr = np.clip(np.round(amp), 1, 65535).astype(np.uint16)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                dst = rasterio.open(
                    root / name / f"{name}_{i}.png",
                    "w",
                    driver="PNG",
                    width=size,
                    height=size,
                    count=bands,
                    dtype="uint16",
                )
                with dst:
                    dst.write(arr)
    return root


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "raster-test-data")
    write_sar_dualpol(out / "sar-dualpol")
    write_s2_13band(out / "s2-13band")
    write_png16(out / "png16")
    print(f"wrote {out}")
