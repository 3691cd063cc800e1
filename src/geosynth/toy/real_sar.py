"""SAR chips for the demo and the tests: real Sentinel-1 speckle when it is at hand.

The repository's sibling ``../shared/data/sar-real/ssl4eo-s12-s1`` (or ``$GEOSYNTH_SAR_REAL``)
holds two real SSL4EO-S12 Sentinel-1 GRD scenes (VV and VH as separate float32 dB files). When
present, :func:`sar_chips` tiles them into ``size`` px 2-band chips (``geosynth data tile``'s
library function: VV/VH stacked, dtype and georeference kept); otherwise it writes the
procedural toy (4-look gamma speckle in linear power, :mod:`geosynth.toy.sar`).
"""

from __future__ import annotations

import os
from pathlib import Path

REAL_SAR_ENV = "GEOSYNTH_SAR_REAL"


def real_sar_root() -> Path | None:
    """The SSL4EO-S12 S1 folder of ``../shared`` (or ``$GEOSYNTH_SAR_REAL``), or None."""
    env = os.environ.get(REAL_SAR_ENV)
    repo = Path(__file__).resolve().parents[3]  # src/geosynth/toy/ -> repository root
    root = Path(env) if env else repo.parent / "shared" / "data" / "sar-real" / "ssl4eo-s12-s1"
    return root if root.is_dir() else None


def sar_chips(out: Path, size: int, seed: int = 0, stride: int | None = None) -> tuple[Path, str]:
    """A SAR chip folder at ``out`` and what it holds ("real ..." or "toy ...")."""
    from geosynth.data.tile import tile_scenes
    from geosynth.toy.sar import make_toy_sar_dataset

    root = real_sar_root()
    if root is None:
        make_toy_sar_dataset(out, per_class=8, size=size, seed=seed)
        return out, "procedural toy SAR (float32 linear power, 4-look gamma speckle)"
    summary = tile_scenes([root], out, size, stride)
    return out, (
        f"real Sentinel-1 (SSL4EO-S12, float32 dB), {size} px VV/VH chips cut by `data tile` "
        f"from {summary['scenes']} scenes"
    )
