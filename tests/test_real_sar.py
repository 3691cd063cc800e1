"""Real Sentinel-1 speckle through the whole pipeline (../shared's SSL4EO-S12 scenes): tile,
channel-means, a short finetune, leak-aligned generate, evaluate amplitude/GLCM in dB.

The figures ``evaluate`` reports here are recorded in docs/benchmarks.md ("Real SAR")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geosynth.data import open_dataset, read_raster
from geosynth.toy.real_sar import real_sar_root

FAST = ["--resolution", "32", "--batch-size", "4", "--checkpoint-every", "1000"]


@pytest.fixture(scope="module")
def ssl4eo() -> Path:
    root = real_sar_root()
    if root is None:
        pytest.skip(
            "real SSL4EO-S12 scenes not found (../shared/data/sar-real or $GEOSYNTH_SAR_REAL)"
        )
    return root


def test_real_sar_pipeline(cli, ssl4eo, toy_models, tmp_path) -> None:
    chips, sd = tmp_path / "chips", toy_models["sd"]
    # 32 px chips every 128 px: 2 x 2 per 264 px scene, 2 scenes (two dates); few chips keep the
    # three pipeline loads (channel-means, finetune, generate) the test's whole cost.
    res = cli("data", "tile", ssl4eo, "--size", "32", "--stride", "128", "--out", chips)
    assert res.code == 0, res.err
    real = open_dataset(chips)
    assert len(real) == 8 and real.raster(0).band_names == ["VV", "VH"]
    means = tmp_path / "m.safetensors"
    assert cli("channel-means", chips, "--model", sd, "--out", means).code == 0
    lora = tmp_path / "lora"
    res = cli("finetune", chips, "--model", sd, "--out", lora, *FAST, "--max-steps", "2")
    assert res.code == 0, res.err
    card = json.loads((lora / "geosynth.json").read_text())
    rad = card["radiometry"]
    assert rad["kind"] == "sar" and rad["units"] == "db" and rad["band_names"] == ["VV", "VH"]
    out = tmp_path / "synth"
    res = cli(
        "generate", "--model", sd, "--lora", lora, "--noise", "leak-aligned",
        "--channel-means", means, "--per-class", "4", "--steps", "2", "--out", out,
    )  # fmt: skip
    assert res.code == 0, res.err
    first = read_raster(next(out.rglob("*.tif")))
    chip = read_raster(next(chips.rglob("*.tif")))
    # Georeference policy: no CRS, the training chips' pixel size, their band names and dtype.
    assert first.crs is None and first.band_names == ["VV", "VH"] and first.dtype == "float32"
    assert first.transform is not None
    np.testing.assert_allclose(
        [first.transform[0], -first.transform[4]], [chip.transform[0], -chip.transform[4]]
    )
    lo, hi = rad["ranges"][0]
    assert lo - 1e-3 <= first.array[0].min() and first.array[0].max() <= hi + 1e-3  # dB range
    # The chips hold dB already: their native units ("linear", i.e. as stored) are dB.
    report = tmp_path / "eval.json"
    res = cli(
        "evaluate", out, chips, "--metrics", "amplitude,glcm", "--amplitude-scale", "linear",
        "--out", report,
    )  # fmt: skip
    assert res.code == 0, res.err
    r = json.loads(report.read_text())
    amp = r["amplitude"]
    print("real-SAR evaluate:", json.dumps({"amplitude": amp, "glcm": r["glcm"]}))
    assert np.isfinite(amp["wasserstein1"]) and amp["wasserstein1"] >= 0
    assert np.isfinite(r["glcm"]["distance"])
