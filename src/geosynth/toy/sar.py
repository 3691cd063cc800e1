"""A procedural toy SAR dataset: dual-polarisation (VV, VH) backscatter with gamma speckle.

Each class has its own mean backscatter per polarisation (in dB), a smooth spatial texture on top,
and multiplicative speckle drawn from a unit-mean gamma distribution with ``looks`` shape (the
intensity statistics of multi-looked SAR). Chips are float32 linear power GeoTIFFs in a UTM
CRS with band names VV and VH, i.e. what a Sentinel-1 GRD user exports, and the property the
science needs holds: classes differ in their low-frequency backscatter as well as in texture.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from geosynth.artifacts import Provenance, atomic_path, write_provenance
from geosynth.data.raster import Raster, write_raster
from geosynth.errors import GeosynthError
from geosynth.toy.data import _smooth_noise

#: class -> (mean VV dB, mean VH dB, texture amplitude dB). Calm water is dark and smooth, urban
#: bright with strong double-bounce variation; vegetation sits between with a high VH (volume).
TOY_SAR_CLASSES: dict[str, tuple[float, float, float]] = {
    "water": (-21.0, -28.0, 1.0),
    "cropland": (-11.0, -18.0, 2.0),
    "forest": (-7.5, -13.0, 1.5),
    "urban": (-2.0, -10.0, 5.0),
}


def toy_sar_chip(
    name: str, rng: np.random.Generator, size: int = 32, looks: float = 4.0
) -> np.ndarray:
    """2 x size x size float32 linear power (VV, VH) of class ``name``."""
    vv, vh, tex = TOY_SAR_CLASSES[name]
    field = tex * _smooth_noise(rng, size, max(3, size // 8))
    out = []
    for mean_db in (vv, vh):
        mean = 10.0 ** ((mean_db + field + rng.normal(0, 0.5)) / 10.0)
        speckle = rng.gamma(looks, 1.0 / looks, size=(size, size))
        out.append(mean * speckle)
    return np.stack(out).astype(np.float32)


def make_toy_sar_dataset(
    out: str | os.PathLike[str],
    *,
    per_class: int = 8,
    size: int = 32,
    seed: int = 0,
    classes: tuple[str, ...] | None = None,
    looks: float = 4.0,
) -> Path:
    """Write ``out/<class>/<class>_<i>.tif`` (float32 VV/VH power, EPSG:32631), atomically."""
    names = classes or tuple(TOY_SAR_CLASSES)
    unknown = [c for c in names if c not in TOY_SAR_CLASSES]
    if unknown:
        raise GeosynthError(
            f"classes: unknown toy SAR class '{unknown[0]}' (have {', '.join(TOY_SAR_CLASSES)})"
        )
    out = Path(out)
    with atomic_path(out) as tmp:
        for c, name in enumerate(names):
            (tmp / name).mkdir(parents=True)
            for i in range(per_class):
                rng = np.random.default_rng([seed, c, i])
                # 10 m pixels, chips side by side in UTM 31N.
                transform = (10.0, 0.0, 500000.0 + 10.0 * size * i, 0.0, -10.0, 5e6 - 1e4 * c)
                write_raster(
                    tmp / name / f"{name}_{i}.tif",
                    Raster(
                        toy_sar_chip(name, rng, size, looks),
                        ["VV", "VH"],
                        None,
                        "EPSG:32631",
                        transform,
                    ),
                )
        write_provenance(
            tmp,
            Provenance.start(
                "toy sar", seeds={"seed": seed}, per_class=per_class, size=size, looks=looks
            ),
        )
    return out
