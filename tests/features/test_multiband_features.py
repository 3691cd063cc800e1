"""``embed`` and ``evaluate`` on every band of 13-band uint16 chips: timm with ``in_chans``,
per-band standardisation recorded, the same numbers as the network applied by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from geosynth.artifacts import load_embeddings
from geosynth.data import load_dataset
from geosynth.data.multiband import band_input
from geosynth.toy import make_toy_timm
from tests.data.rasters.data import write_s2_13band


@pytest.fixture(scope="module")
def s2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("s2-features")
    return {
        "a": write_s2_13band(root / "a", per_class=3, size=32, seed=1),
        "b": write_s2_13band(root / "b", per_class=3, size=32, seed=2),
        "timm": make_toy_timm(root / "timm"),
    }


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_embed_reads_all_13_bands_through_an_adapted_stem(s2, cli, tmp_path) -> None:
    import timm
    from timm.data import resolve_data_config

    out = tmp_path / "e.safetensors"
    model = f"timm:local-dir:{s2['timm']}"
    r = cli("embed", s2["a"], "--features", model, "--bands", "all", "--out", out, "--json")
    assert r.code == 0, r.err
    emb = load_embeddings(out)
    pre = json.loads(emb.metadata["preprocessing"])
    ds = load_dataset(s2["a"])
    bi = band_input(ds)
    assert pre["bands"]["mean"] == list(bi.mean) and pre["bands"]["count"] == 13
    # By hand: timm's own 13-channel model on the standardised bands, resized to its input size.
    net = timm.create_model(f"local-dir:{s2['timm']}", pretrained=True, num_classes=0, in_chans=13)
    size = resolve_data_config({}, model=net)["input_size"][-1]
    x = torch.stack([bi.tensor(ds.raster(i)) for i in range(len(ds))])
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", antialias=True)
    with torch.no_grad():
        expected = net.eval()(x)
    torch.testing.assert_close(emb.embeddings, expected, rtol=1e-4, atol=1e-4)
    # True colour by band name, standardised with another set's statistics (the training set).
    out3 = tmp_path / "rgb.safetensors"
    r = cli(
        "embed", s2["a"], "--features", model, "--bands", "B04,B03,B02", "--band-stats", s2["b"],
        "--out", out3,
    )  # fmt: skip
    assert r.code == 0, r.err
    pre3 = json.loads(load_embeddings(out3).metadata["preprocessing"])
    assert pre3["bands"]["bands"] == [3, 2, 1]
    assert pre3["bands"]["mean"] == list(band_input(load_dataset(s2["b"]), "3,2,1").mean)
    # A model that only takes RGB is refused, nothing written.
    bad = tmp_path / "bad.safetensors"
    r = cli("embed", s2["a"], "--features", "dinov2-small", "--bands", "all", "--out", bad)
    assert r.code == 2 and "needs a timm:NAME model" in r.err and not bad.exists()


def test_evaluate_feature_metrics_on_all_bands(s2, cli, tmp_path) -> None:
    model = f"timm:local-dir:{s2['timm']}"
    out = tmp_path / "r.json"
    base = ["--features", model, "--bands", "all", "--metrics", "fid,kid", "--kid-subset-size", "4"]
    r = cli("evaluate", s2["a"], s2["a"], *base, "--out", out)
    assert r.code == 0, r.err
    rep = json.loads(out.read_text())
    assert rep["fid"]["value"] == pytest.approx(0.0, abs=1e-3)
    bands = rep["features"]["preprocessing"]["bands"]
    assert bands["stats_from"].startswith(str(s2["a"])) and len(bands["mean"]) == 13
    r = cli("evaluate", s2["b"], s2["a"], *base, "--out", tmp_path / "r2.json")
    assert r.code == 0, r.err
    rep2 = json.loads((tmp_path / "r2.json").read_text())
    assert rep2["fid"]["value"] > 0 and np.isfinite(rep2["fid"]["value"])
    # Both sets were standardised with REAL's statistics (the same as before: REAL is a).
    assert rep2["features"]["preprocessing"]["bands"] == bands
    r = cli("evaluate", s2["b"], s2["a"], *base[:4], "--bands", "B99", "--metrics", "fid")
    assert r.code == 2 and "--bands: band 'B99' is not in the file" in r.err


def test_evaluate_picks_bands_by_name_in_each_set(s2, cli, tmp_path) -> None:
    """A 3-band B04, B03, B02 set (what `generate` writes) against the 13-band set it was cut
    from: the bands are found by name in each, so the same pixels give FID 0 and no colour or
    amplitude difference."""
    from geosynth.data.raster import Raster, read_raster, write_raster

    three = tmp_path / "three"
    for src in sorted(Path(s2["b"]).rglob("*.tif")):
        r = read_raster(src)
        dst = three / src.parent.name / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_raster(
            dst, Raster(r.array[[3, 2, 1]], ["B04", "B03", "B02"], None, r.crs, r.transform)
        )
    model = f"timm:local-dir:{s2['timm']}"
    out = tmp_path / "r.json"
    r = cli(
        "evaluate", three, s2["b"], "--features", model, "--bands", "B04,B03,B02",
        "--metrics", "fid,color,amplitude", "--kid-subset-size", "4", "--out", out,
    )  # fmt: skip
    assert r.code == 0, r.err
    rep = json.loads(out.read_text())
    assert rep["fid"]["value"] == pytest.approx(0.0, abs=1e-3)
    assert rep["features"]["preprocessing"]["bands"]["names"] == ["B04", "B03", "B02"]
    assert rep["color"]["channels"] == ["B04", "B03", "B02"]
    assert rep["color"]["mean_abs_error"] == pytest.approx(0.0, abs=1e-12)
    assert rep["amplitude"]["wasserstein1"] == pytest.approx(0.0, abs=1e-9)
    # Without --bands the pixel metrics compare the bands SYNTH names, and say so.
    r = cli("evaluate", three, s2["b"], "--metrics", "color", "--json")
    assert r.code == 0, r.err
    rep = json.loads(r.out)
    assert rep["color"]["channels"] == ["B04", "B03", "B02"]
    assert any(n.startswith("bands: SYNTH holds B04, B03, B02") for n in rep["notes"])
