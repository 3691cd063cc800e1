"""SAR stored in dB (as SSL4EO-S12 and BigEarthNet-S1 chips are) is evaluated as dB: the units of
each set are known (from its values or its radiometry spec), never taken for linear values, and
the report names the space. Known answers: a synthetic set exactly g dB brighter gives W1 = |g|
and shift_db = g in the dB space."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from geosynth.data.raster import Raster, write_raster
from geosynth.metrics.evaluation import EvalOptions, evaluate
from tests.metrics.test_sar_native import sar_arrays


def _db_set(root: Path, gain_db: float = 0.0, seed: int = 0) -> Path:
    """Dual-pol VV/VH chips in dB (float32, negative values), 32 x 32 (every pixel sampled)."""
    arrays = sar_arrays(seed, n=3)
    for name, images in arrays.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, power in enumerate(images):
            vv = 10 * np.log10(power[:32, :32]) + gain_db
            vh = vv - 7.0
            r = Raster(np.stack([vv, vh]).astype(np.float32), ["VV", "VH"])
            write_raster(root / name / f"{i}.tif", r)
    return root


@pytest.fixture(scope="module")
def db_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("db-sar")
    return {"real": _db_set(root / "real"), "bright": _db_set(root / "bright", gain_db=3.0)}


def _amplitude(synth: Path, real: Path, **kw: object) -> dict:
    opts = EvalOptions(sections=("amplitude", "glcm"), **kw)  # type: ignore[arg-type]
    return evaluate(str(synth), str(real), opts).report


def test_db_data_compared_in_db_with_known_answers(db_sets) -> None:
    rep = _amplitude(db_sets["bright"], db_sets["real"], amplitude_scale="db")
    amp = rep["amplitude"]
    scale = amp["scale"]
    assert scale["space"] == "db" and scale.get("db_floor") is None
    assert scale["input_units"] == {"synthetic": "db", "real": "db"}
    assert "negative" in scale["input_units_from"]["real"]
    # A pure +3 dB gain: W1 exactly 3 dB per band, shift +3 dB (no floor was needed or used).
    for band in ("VV", "VH"):
        assert amp["per_band"][band]["wasserstein1"] == pytest.approx(3.0, abs=1e-4)
        assert amp["per_band"][band]["shift_db"] == pytest.approx(3.0, abs=1e-4)
    # the dB range of the bins is the real dB values' (not a floor: nothing collapsed)
    lo, hi = scale["range"]["VV"]
    assert -40 < lo < hi < 10
    assert not rep["warnings"], rep["warnings"]


def test_auto_space_of_db_data_is_db_and_w1_is_scipys_on_the_values(db_sets) -> None:
    rep = _amplitude(db_sets["bright"], db_sets["real"])
    assert rep["amplitude"]["scale"]["space"] == "db"
    same = _amplitude(db_sets["bright"], db_sets["real"], amplitude_scale="db")
    assert rep["amplitude"]["wasserstein1"] == same["amplitude"]["wasserstein1"]
    # W1 of VV against scipy on all the raw dB values (32 x 32 chips: every pixel is sampled)
    from geosynth.data import load_dataset

    def values(root: Path) -> np.ndarray:
        ds = load_dataset(str(root))
        return np.concatenate([ds.raster(i).array[0].ravel() for i in range(len(ds))])

    want = wasserstein_distance(values(db_sets["real"]), values(db_sets["bright"]))
    got = rep["amplitude"]["per_band"]["VV"]["wasserstein1"]
    assert got == pytest.approx(want, rel=1e-5)


def test_linear_space_converts_db_data_to_power(db_sets) -> None:
    rep = _amplitude(db_sets["bright"], db_sets["real"], amplitude_scale="linear")
    scale = rep["amplitude"]["scale"]
    assert scale["space"] == "linear" and scale["input_units"]["real"] == "db"
    assert scale["conversion"]["real"].startswith("10^(dB / 10)")
    # +3 dB is a factor 10^0.3 in power: the gain reads +3 dB from the linear means too
    assert rep["amplitude"]["per_band"]["VV"]["shift_db"] == pytest.approx(3.0, abs=1e-3)
    assert 0 < scale["range"]["VV"][0] < scale["range"]["VV"][1] < 10  # power, not dB


def test_a_floor_above_the_data_is_said_to_compare_nothing(db_sets) -> None:
    rep = _amplitude(
        db_sets["bright"], db_sets["real"], amplitude_scale="db", amplitude_db_floor=20.0
    )
    assert any("compare" in w and "nothing" in w for w in rep["warnings"]), rep["warnings"]


def test_cli_db_scale_on_db_data_needs_no_floor(cli, db_sets, tmp_path) -> None:
    out = tmp_path / "r.json"
    res = cli(
        "evaluate", db_sets["bright"], db_sets["real"], "--metrics", "amplitude",
        "--amplitude-scale", "db", "--out", out,
    )  # fmt: skip
    assert res.code == 0, res.err
    amp = json.loads(out.read_text())["amplitude"]
    assert amp["scale"]["space"] == "db" and amp["wasserstein1"] == pytest.approx(3.0, abs=1e-4)
