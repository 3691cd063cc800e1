"""Seed 003's A / (mean + 3 std) amplitude rule: fitted on the training set, exact against numpy,
inverted on the way out (values above the clip come back as the clip), stored in every spec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geosynth.data import load_dataset
from geosynth.data.radiometry import Radiometry
from geosynth.data.raster import Raster, read_raster, write_raster
from geosynth.errors import GeosynthError


def _power_chips(root: Path, per_class: int = 2, size: int = 12, seed: int = 0) -> list[np.ndarray]:
    """float64 VV/VH linear power (4-look speckle, two classes of different brightness)."""
    rng = np.random.default_rng(seed)
    chips = []
    for vv, vh in ((0.08, 0.02), (0.3, 0.05)):
        for _ in range(per_class):
            mean = np.array([vv, vh])[:, None, None]
            chips.append(mean * rng.gamma(4.0, 0.25, (2, size, size)))
    return chips


def _write(root: Path, chips: list[np.ndarray], units: str) -> Path:
    for i, p in enumerate(chips):
        native = {"power": p, "amplitude": np.sqrt(p), "db": 10 * np.log10(p)}[units]
        name = ("dark", "bright")[i // (len(chips) // 2)]
        (root / name).mkdir(parents=True, exist_ok=True)
        write_raster(root / name / f"{i}.tif", Raster(native.astype(np.float32), ["VV", "VH"]))
    return root


def _spec(units: str, **kw) -> dict:
    spec = {"kind": "sar", "bands": ["VV", "VH"], "units": units, "scale": "amplitude"}
    spec.update(std_factor=3, **({"db_floor": -60} if units == "db" else {}), **kw)
    return spec


@pytest.mark.parametrize("units", ["power", "amplitude", "db"])
def test_fitted_forward_and_inverse_equal_numpy(tmp_path: Path, units: str) -> None:
    """mean and std of the linear amplitude over the training set, per channel (VV, VH and the
    VV/VH amplitude ratio); y = 2 clip(A / (mean + 3 std), 0, 1) - 1; back to the file's units."""
    chips = _power_chips(tmp_path)
    ds = load_dataset(_write(tmp_path / "d", chips, units), radiometry=_spec(units))
    spec = ds.radiometry
    assert spec is not None and spec.mean_std is not None and spec.ranges is not None
    # Direct: amplitude of what the files hold (float32), pooled over every pixel.
    stored = [read_raster(ds.samples[i].ref).array.astype(np.float64) for i in range(len(ds))]
    to_amp = {"power": np.sqrt, "amplitude": lambda a: a, "db": lambda d: 10 ** (d / 20)}[units]
    amps = [to_amp(a) for a in stored]
    chans = [np.stack([a[0] for a in amps]), np.stack([a[1] for a in amps])]
    chans.append(chans[0] / chans[1])
    for c, ch in enumerate(chans):
        m, s = spec.mean_std[c]
        np.testing.assert_allclose([m, s], [ch.mean(), ch.std()], rtol=1e-12)
        assert spec.ranges[c] == (0.0, m + 3 * s)
    hit_clip = False
    for i in range(len(ds)):
        y = ds.model_array(i)
        a = amps[i]
        for c, ch in enumerate((a[0], a[1], a[0] / a[1])):
            m, s = spec.mean_std[c]
            want = 2 * np.clip(ch / (m + 3 * s), 0, 1) - 1
            np.testing.assert_allclose(y[c], want, atol=2e-6)
        # The inverse gives the file's values back wherever they were under the clip, and the
        # clip itself where they were above it (those values cannot be recovered).
        back = spec.inverse(y).array.astype(np.float64)
        for c in range(2):
            top = spec.ranges[c][1]
            under = a[c] <= top
            hit_clip |= bool((~under).any())
            clipped = {"power": top**2, "amplitude": top, "db": 20 * np.log10(top)}[units]
            np.testing.assert_allclose(back[c][under], stored[i][c][under], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(back[c][~under], clipped, rtol=1e-5, atol=1e-5)
    assert hit_clip  # the brighter class's speckle peaks do exceed mean + 3 std


def test_single_pol_spec_json_and_refusals(tmp_path: Path) -> None:
    chips = [p[:1] for p in _power_chips(tmp_path)]
    root = tmp_path / "vv"
    for i, p in enumerate(chips):
        (root / "a").mkdir(parents=True, exist_ok=True)
        write_raster(root / "a" / f"{i}.tif", Raster(p.astype(np.float32), ["VV"]))
    spec = {"kind": "sar", "bands": [0], "units": "power", "scale": "amplitude", "std_factor": 3}
    fitted = load_dataset(root, radiometry=spec).radiometry
    assert fitted is not None and fitted.mean_std is not None and len(fitted.mean_std) == 1
    amp = np.sqrt(np.stack([read_raster(p).array[0] for p in sorted(root.rglob("*.tif"))]))
    np.testing.assert_allclose(fitted.mean_std[0], [amp.mean(), amp.std()], rtol=1e-6)
    d = json.loads(fitted.to_json())
    assert d["std_factor"] == 3.0 and d["scale"] == "amplitude"
    assert d["ranges"] == [[0.0, d["mean_std"][0][0] + 3 * d["mean_std"][0][1]]]
    assert Radiometry.from_dict(d) == fitted  # read back from an artifact: nothing refitted
    # Specs without the rule serialise as before (no new keys).
    old = Radiometry(kind="sar", bands=(0,), ranges=((-25.0, 5.0),))
    assert "std_factor" not in old.to_dict() and "mean_std" not in old.to_dict()

    def refused(match: str, **kw) -> None:
        with pytest.raises(GeosynthError, match=match):
            Radiometry.from_dict({**spec, **kw})

    refused("not both", percentiles=[1, 99])
    refused("needs kind 'sar' and scale 'amplitude'", scale="db")
    refused("positive number", std_factor=-1)
    refused("need 1 finite", mean_std=[[0.1, 0.1], [0.2, 0.2]])
    refused("do not follow from mean_std", mean_std=[[0.1, 0.1]], ranges=[[0, 1]])
    refused("leave ranges out", ranges=[[0, 1]])
    refused("needs db_floor", units="db")
    with pytest.raises(GeosynthError, match="std_factor too"):
        Radiometry.from_dict({**spec, "std_factor": None, "mean_std": [[0.1, 0.1]]})


def test_toy_pipeline_stores_the_rule_in_every_artifact(cli, toy_models, tmp_path: Path) -> None:
    """channel-means, finetune and generate on toy SAR with the rule: each artifact records the
    fitted spec, and generated power never exceeds (mean + 3 std)^2."""
    from geosynth.artifacts import load_channel_means
    from geosynth.toy import make_toy_sar_dataset

    sar = make_toy_sar_dataset(tmp_path / "sar", per_class=2, size=32, classes=("water", "urban"))
    spec = json.dumps(_spec("power"))
    sd = toy_models["sd"]
    means = tmp_path / "m.safetensors"
    res = cli("channel-means", sar, "--model", sd, "--radiometry", spec, "--out", means)
    assert res.code == 0, res.err
    stored = json.loads(load_channel_means(means).metadata["radiometry"])
    assert stored["std_factor"] == 3.0 and len(stored["mean_std"]) == 3
    lora = tmp_path / "lora"
    res = cli("finetune", sar, "--model", sd, "--radiometry", spec, "--out", lora,
              "--resolution", "32", "--batch-size", "4", "--max-steps", "1")  # fmt: skip
    assert res.code == 0, res.err
    assert json.loads((lora / "geosynth.json").read_text())["radiometry"] == stored
    out = tmp_path / "synth"
    res = cli("generate", "--model", sd, "--lora", lora, "--channel-means", means,
              "--noise", "leak-aligned", "--per-class", "1", "--steps", "2", "--out", out)  # fmt: skip
    assert res.code == 0, res.err
    assert json.loads((out / "radiometry.json").read_text()) == stored
    tops = [hi for _, hi in stored["ranges"][:2]]
    for tif in sorted(out.rglob("*.tif")):
        r = read_raster(tif)
        assert r.band_names == ["VV", "VH"] and r.array.dtype == np.float32
        for c in range(2):
            assert r.array[c].min() >= 0 and r.array[c].max() <= tops[c] ** 2 * (1 + 1e-5)
