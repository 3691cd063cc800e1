"""Real Sentinel-1 speckle through the whole pipeline: the README's SAR block, run as written
on ../shared's SSL4EO-S12 scenes (tile, channel-means, a short finetune, leak-aligned generate,
evaluate FID, PRDC and amplitude/GLCM in dB), with the toy models and small step counts of
tests/doc_commands.py.

The figures ``evaluate`` reports here are recorded in docs/benchmarks.md ("Real SAR")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geosynth.data import open_dataset, read_raster
from geosynth.toy.real_sar import real_sar_root
from tests.doc_commands import REPO, block_with, cheap_options, replay


@pytest.fixture(scope="module")
def ssl4eo() -> Path:
    root = real_sar_root()
    if root is None:
        pytest.skip(
            "real SSL4EO-S12 scenes not found (../shared/data/sar-real or $GEOSYNTH_SAR_REAL)"
        )
    return root


def test_readme_sar_block_on_real_sentinel1(
    cli, ssl4eo, toy_models, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    block = block_with(REPO / "README.md", "sar-real/ssl4eo-s12-s1")
    base = cheap_options(toy_models)

    def extra(words: list[str]) -> list[str]:
        # 32 px chips every 128 px: 2 x 2 per 264 px scene, 2 scenes (two dates); few chips
        # keep the three pipeline loads (channel-means, finetune, generate) the test's cost.
        if words[:2] == ["data", "tile"]:
            return [*base(words), "--size", "32", "--stride", "128"]
        if words[0] == "generate":  # PRDC needs more than k = 5 synthetic images
            return [*base(words), "--per-class", "6"]
        return base(words)

    replay(cli, block, extra)
    chips = Path("sar")
    real = open_dataset(chips)
    assert len(real) == 8 and real.raster(0).band_names == ["VV", "VH"]
    card = json.loads(Path("sar-lora/geosynth.json").read_text())
    rad = card["radiometry"]
    assert rad["kind"] == "sar" and rad["units"] == "db" and rad["band_names"] == ["VV", "VH"]
    first = read_raster(next(Path("sar-synth").rglob("*.tif")))
    chip = read_raster(next(chips.rglob("*.tif")))
    # Georeference policy: no CRS, the training chips' pixel size, their band names and dtype.
    assert first.crs is None and first.band_names == ["VV", "VH"] and first.dtype == "float32"
    assert first.transform is not None
    np.testing.assert_allclose(
        [first.transform[0], -first.transform[4]], [chip.transform[0], -chip.transform[4]]
    )
    lo, hi = rad["ranges"][0]
    assert lo - 1e-3 <= first.array[0].min() and first.array[0].max() <= hi + 1e-3  # dB range
    # FID and PRDC (DINOv2 on the view the generated set's spec gives both sets) ...
    r = json.loads(Path("sar-eval.json").read_text())
    for key in ("fid", "precision", "recall", "density", "coverage", "amplitude_w1"):
        assert np.isfinite(r["summary"]["overall"][key]), key
    assert r["radiometry"]["from"].startswith("recorded by SYNTH")
    # ... and both sets hold dB: `--amplitude-scale db` compares the dB values as stored.
    amp = r["amplitude"]
    print("real-SAR evaluate:", json.dumps({"amplitude": amp, "glcm": r["glcm"]}))
    scale = amp["scale"]
    assert scale["space"] == "db" and scale["input_units"] == {"synthetic": "db", "real": "db"}
    assert scale["conversion"] == {"synthetic": "as stored (dB)", "real": "as stored (dB)"}
    assert np.isfinite(amp["wasserstein1"]) and amp["wasserstein1"] > 0
    assert np.isfinite(r["glcm"]["distance"])
