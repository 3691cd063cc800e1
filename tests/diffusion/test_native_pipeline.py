"""SAR end to end in native units: channel-means, finetune and generate through a radiometry spec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from geosynth.artifacts import load_channel_means
from geosynth.data import load_dataset
from geosynth.data.raster import read_raster
from geosynth.diffusion import load_vae
from geosynth.diffusion.latents import encode_latents
from geosynth.diffusion.sampling.generate import previews_dir
from geosynth.toy import make_toy_sar_dataset

FAST = ["--resolution", "32", "--batch-size", "4", "--checkpoint-every", "1000"]


def _one_line_error(res, *needles: str) -> None:
    assert res.code == 2, (res.out, res.err)
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1, res.err
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def sar(tmp_path_factory) -> Path:
    return make_toy_sar_dataset(tmp_path_factory.mktemp("sar") / "sar", per_class=3, size=32)


@pytest.fixture(scope="module")
def sar_run(sar, toy_models, tmp_path_factory) -> dict[str, Path]:
    """channel-means + a short finetune on toy SAR with the default (printed) radiometry."""
    from geosynth.cli.main import main

    d = tmp_path_factory.mktemp("sar-run")
    sd = str(toy_models["sd"])
    assert main(["channel-means", str(sar), "--model", sd, "--out", str(d / "m.safetensors")]) == 0
    args = ["finetune", str(sar), "--model", sd, "--out", str(d / "lora"), *FAST]
    assert main([*args, "--max-steps", "2"]) == 0
    return {"means": d / "m.safetensors", "lora": d / "lora", "dir": d}


def test_channel_means_equal_a_direct_computation(sar, sar_run, toy_models) -> None:
    cm = load_channel_means(sar_run["means"])
    spec = json.loads(cm.metadata["radiometry"])
    assert spec["kind"] == "sar" and spec["units"] == "power" and spec["band_names"] == ["VV", "VH"]
    # Direct: read each GeoTIFF, apply the same transform by hand (dB, clip, scale), encode.
    vae = load_vae(str(toy_models["sd"]))
    ranges = spec["ranges"]
    ds = load_dataset(sar)
    rows = []
    for i in range(len(ds)):
        r = read_raster(ds.samples[i].ref).array.astype(np.float64)
        db = 10 * np.log10(r)
        chans = [db[0], db[1], db[0] - db[1]]
        x = [
            2 * (np.clip(c, lo, hi) - lo) / (hi - lo) - 1
            for c, (lo, hi) in zip(chans, ranges, strict=True)
        ]
        pix = torch.from_numpy(np.stack(x).astype(np.float32))[None]
        rows.append(encode_latents(vae, pix).float().mean(dim=(2, 3))[0])
    per_image = torch.stack(rows)
    labels = torch.tensor(ds.labels)
    for c, name in enumerate(cm.class_names):
        torch.testing.assert_close(
            cm.for_class(name), per_image[labels == c].mean(0), atol=1e-5, rtol=1e-4
        )


def test_generate_writes_native_geotiffs(cli, sar_run, toy_models, tmp_path) -> None:
    card = json.loads((sar_run["lora"] / "geosynth.json").read_text())
    assert card["radiometry"]["kind"] == "sar"
    out = tmp_path / "synth"
    res = cli(
        "generate", "--model", toy_models["sd"], "--lora", sar_run["lora"],
        "--noise", "leak-aligned", "--channel-means", sar_run["means"],
        "--per-class", "2", "--steps", "2", "--out", out,
    )  # fmt: skip
    assert res.code == 0, res.err
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["file_name"].endswith(".tif") for r in rows)
    for r in rows:
        native = read_raster(out / r["file_name"])
        assert native.array.dtype == np.float32 and native.count == 2
        assert native.band_names == ["VV", "VH"] and (native.array > 0).all()
        assert (previews_dir(out) / r["file_name"]).with_suffix(".png").is_file()
    assert not list(out.rglob("*.png"))  # readers of OUT see one image per row
    assert json.loads((out / "radiometry.json").read_text()) == card["radiometry"]
    # The synthetic set reads back like the real one: same dtype and bands, in linear power.
    synth = load_dataset(out, radiometry=card["radiometry"])
    assert synth.raster(0).dtype == "float32" and synth.model_array(0).shape == (3, 32, 32)


def test_radiometry_mismatch_is_refused(cli, sar, sar_run, toy_models, tmp_path) -> None:
    other = '{"kind": "sar", "bands": ["VV", "VH"], "percentiles": [5, 95]}'
    m2 = tmp_path / "m2.safetensors"
    res = cli("channel-means", sar, "--model", toy_models["sd"], "--out", m2, "--radiometry", other)
    assert res.code == 0, res.err
    out = tmp_path / "synth"
    base = ["generate", "--model", toy_models["sd"], "--lora", sar_run["lora"], "--per-class", "1"]
    res = cli(*base, "--steps", "1", "--noise", "leak-aligned", "--channel-means", m2, "--out", out)
    _one_line_error(res, "m2.safetensors", "made with radiometry")
    assert not out.exists()
    fixed = '{"kind": "sar", "bands": [0, 1], "ranges": [[-30, 0], [-35, -5], [0, 15]]}'
    res = cli(*base, "--steps", "1", "--radiometry", fixed, "--out", out)
    _one_line_error(res, "--lora", "made with radiometry")
    assert not out.exists()


def test_eurosat_ms_true_colour_finetune_and_generate(
    cli, eurosat_ms, toy_models, tmp_path
) -> None:
    """Real 13-band EuroSAT-MS: SD learns the B04,B03,B02 composite; generate writes uint16
    GeoTIFFs of those bands in the data's own scale (reflectance x 10000)."""
    spec = json.dumps(
        {"kind": "optical", "bands": ["B04", "B03", "B02"], "file_bands": "eurosat-ms",
         "percentiles": [1, 99]}
    )  # fmt: skip
    common = [eurosat_ms, "--split", "train", "--classes", "Forest,SeaLake", "--shots", "4"]
    res = cli("finetune", *common, "--model", toy_models["sd"], "--out", tmp_path / "lora",
              "--radiometry", spec, *FAST, "--max-steps", "2")  # fmt: skip
    assert res.code == 0, res.err
    card = json.loads((tmp_path / "lora" / "geosynth.json").read_text())
    rad = card["radiometry"]
    assert rad["band_names"] == ["B04", "B03", "B02"] and rad["dtype"] == "uint16"
    assert rad["band_count"] == 13 and all(0 <= lo < hi < 20000 for lo, hi in rad["ranges"])
    out = tmp_path / "synth"
    res = cli("generate", "--model", toy_models["sd"], "--lora", tmp_path / "lora",
              "--per-class", "1", "--steps", "2", "--out", out)  # fmt: skip
    assert res.code == 0, res.err
    for tif in sorted(out.rglob("*.tif")):
        r = read_raster(tif)
        assert r.array.dtype == np.uint16 and r.count == 3 and r.band_names == rad["band_names"]
        for b, (lo, hi) in enumerate(rad["ranges"]):
            assert round(lo) <= r.array[b].min() and r.array[b].max() <= round(hi)
    assert len(list(out.rglob("*.tif"))) == 2
