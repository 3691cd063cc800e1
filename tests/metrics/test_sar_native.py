"""SAR metrics on native data (float32 backscatter, 16-bit amplitudes): bins from the real set,
known answers for identical sets and dB shifts of gamma-speckled SAR, every GLCM level used."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geosynth.data import load_dataset
from geosynth.errors import GeosynthError
from geosynth.metrics.evaluation import EvalOptions, evaluate
from geosynth.metrics.pixels import amplitude_scale, read_pixels, scan_images
from geosynth.metrics.sar import quantise

#: mean backscatter per class (dB): bright urban / ships, dark calm water
CLASSES = {"urban": -6.0, "field": -12.0, "water": -20.0}
LOOKS = 4.4  # equivalent number of looks of Sentinel-1 GRD (IW, high resolution)


def speckled_sar(rng: np.random.Generator, sigma0_db: float, size: int = 48) -> np.ndarray:
    """Linear-power backscatter: the class mean times a smooth texture times gamma speckle
    (mean 1, LOOKS looks), float32."""
    coarse = rng.gamma(6.0, 1 / 6.0, size=(size // 8, size // 8))
    texture = np.kron(coarse, np.ones((8, 8)))  # patches of 8 px
    speckle = rng.gamma(LOOKS, 1 / LOOKS, size=(size, size))
    return (10 ** (sigma0_db / 10) * texture * speckle).astype(np.float32)


def write_set(root: Path, images: dict[str, list[np.ndarray]], suffix: str = ".tif") -> Path:
    for name, arrays in images.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, a in enumerate(arrays):
            Image.fromarray(a).save(root / name / f"{i}{suffix}")
    return root


def sar_arrays(seed: int, n: int = 6, gain_db: float = 0.0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {c: [speckled_sar(rng, db + gain_db) for _ in range(n)] for c, db in CLASSES.items()}


@pytest.fixture(scope="module")
def real_sar(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[np.ndarray]]]:
    arrays = sar_arrays(0)
    return write_set(tmp_path_factory.mktemp("real-sar"), arrays), arrays


def _eval(synth: Path, real: Path, **kw) -> dict:
    opts = EvalOptions(sections=("color", "amplitude", "glcm"), **kw)
    return evaluate(str(synth), str(real), opts).report


@pytest.mark.parametrize("space", ["linear", "db"])
def test_identical_float_sar_sets_give_zero(real_sar, space: str) -> None:
    root, arrays = real_sar
    rep = _eval(root, root, amplitude_scale=space)
    amp, glcm = rep["amplitude"], rep["glcm"]
    assert amp["wasserstein1"] == 0.0 and amp["kl_log_amplitude"] == pytest.approx(0, abs=1e-12)
    assert amp["shift_db"] == 0.0 and amp["mean_difference"] == 0.0
    assert glcm["distance"] == 0.0
    assert all(v["wasserstein1"] == 0.0 for v in amp["per_class"].values())
    # The bins come from the real set and are recorded: its robust range, in the metric space.
    pooled = np.concatenate([a.ravel() for v in arrays.values() for a in v]).astype(np.float64)
    if space == "db":
        pooled = 10 * np.log10(pooled)
    lo, hi = amp["scale"]["range"]["grey"]
    assert lo == pytest.approx(np.percentile(pooled, 0.5), rel=1e-9)
    assert hi == pytest.approx(np.percentile(pooled, 99.5), rel=1e-9)
    assert amp["scale"]["range_from"] == "real set, percentiles 0.5..99.5"
    assert glcm["quantisation"] == amp["scale"] and amp["units"] == (
        "dB" if space == "db" else "native"
    )


def test_a_db_shift_of_speckled_sar_is_reported_with_sign_and_size(real_sar, tmp_path) -> None:
    root, arrays = real_sar
    # The same scenes 3 dB brighter: every amplitude doubles.
    brighter = {c: [a * np.float32(10**0.3) for a in v] for c, v in arrays.items()}
    up = write_set(tmp_path / "up", brighter)
    db = _eval(up, root, amplitude_scale="db")["amplitude"]
    assert db["shift_db"] == pytest.approx(3.0, abs=1e-4)
    assert db["wasserstein1"] == pytest.approx(3.0, abs=1e-4)  # a pure shift in dB
    for cls in CLASSES:
        assert db["per_class"][cls]["shift_db"] == pytest.approx(3.0, abs=1e-4)
    lin = _eval(up, root)["amplitude"]  # native (linear power) units, the default
    assert lin["scale"]["space"] == "linear"
    assert lin["shift_db"] == pytest.approx(3.0, abs=1e-4)
    assert lin["mean_difference"] == pytest.approx(lin["real_mean"] * (10**0.3 - 1), rel=1e-4)
    assert lin["kl_log_amplitude"] > 0.1
    # Independent speckle, 2 dB darker: the sign and size survive sampling noise.
    down = write_set(tmp_path / "down", sar_arrays(1, gain_db=-2.0))
    rep = _eval(down, root, amplitude_scale="db")
    assert rep["amplitude"]["shift_db"] == pytest.approx(-2.0, abs=0.35)
    assert rep["amplitude"]["wasserstein1"] == pytest.approx(2.0, abs=0.35)
    same = _eval(write_set(tmp_path / "same", sar_arrays(2)), root, amplitude_scale="db")
    assert abs(same["amplitude"]["shift_db"]) < 0.35
    assert same["amplitude"]["kl_log_amplitude"] < rep["amplitude"]["kl_log_amplitude"]
    assert same["glcm"]["distance"] < 1.0


def _levels_used(ds, scale, levels: int) -> set[int]:
    used: set[int] = set()
    for i in range(len(ds)):
        values = scale.values(read_pixels(ds, i).array[0].astype(np.float64), "test")
        used |= set(np.unique(scale.quantise(values, 0, levels)).tolist())
    return used


@pytest.mark.parametrize("space", ["linear", "db"])
def test_glcm_uses_all_levels_on_float32_and_16_bit_sar(real_sar, tmp_path, space: str) -> None:
    root, arrays = real_sar
    # Amplitude as Sentinel-1 GRD stores it: sqrt(power) times a calibration constant (~ 1000 at
    # -12 dB), as uint16 and as float32 digital numbers.
    dn = {c: [np.sqrt(a / 10**-1.2) * 1000 for a in v] for c, v in arrays.items()}
    root16 = write_set(
        tmp_path / "amp16",
        {c: [a.clip(1, 65535).astype(np.uint16) for a in v] for c, v in dn.items()},
        ".png",
    )
    rootf = write_set(
        tmp_path / "ampf", {c: [a.astype(np.float32) for a in v] for c, v in dn.items()}
    )
    for where, old_full, old_levels in ((root, None, None), (root16, 65535.0, 8), (rootf, 1.0, 1)):
        ds = load_dataset(where)
        scale = amplitude_scale(ds, space=space)
        for levels in (16, 64):
            assert _levels_used(ds, scale, levels) == set(range(levels))
        scan = scan_images(ds, greyscale=True, glcm_levels=64, scale=scale)
        assert scan.native and np.isfinite(scan.glcm).all()
        if old_full is not None:
            # The old fixed full scale: 16-bit amplitudes in a handful of 64 levels, float
            # amplitudes (full scale taken as 1) all in the top one.
            pooled = np.concatenate([read_pixels(ds, i).array.ravel() for i in range(len(ds))])
            assert np.unique(quantise(pooled.astype(np.float64), old_full, 64)).size <= old_levels


def test_db_of_non_positive_values_needs_a_floor(real_sar, tmp_path, cli) -> None:
    root, arrays = real_sar
    zeros = {
        c: [np.where(a < np.median(a), 0, a).astype(np.float32) for a in v]
        for c, v in arrays.items()
    }
    zroot = write_set(tmp_path / "zeros", zeros)
    with pytest.raises(GeosynthError, match=r"non-positive.*amplitude_db_floor"):
        _eval(root, zroot, amplitude_scale="db")
    rep = _eval(root, zroot, amplitude_scale="db", amplitude_db_floor=-40.0)
    assert rep["amplitude"]["scale"]["db_floor"] == -40.0
    assert rep["amplitude"]["scale"]["range"]["grey"][0] == -40.0
    out = tmp_path / "r.json"
    res = cli(
        "evaluate", root, zroot, "--metrics", "amplitude", "--amplitude-scale", "db", "--out", out
    )
    assert (
        res.code == 2
        and "--amplitude-db-floor" in res.err
        and len(res.err.strip().splitlines()) == 1
    )
    assert not (tmp_path / "r.json").exists()


def test_nan_pixels_are_left_out(real_sar, tmp_path) -> None:
    _, arrays = real_sar
    holed = {c: [a.copy() for a in v] for c, v in arrays.items()}
    for v in holed.values():
        for a in v:
            a[:5, :] = np.nan
    hroot = write_set(tmp_path / "holes", holed)
    rep = _eval(hroot, hroot, amplitude_scale="db")
    assert np.isfinite(rep["amplitude"]["real_mean"]) and rep["glcm"]["distance"] == 0.0
    kept = np.concatenate([a[5:].ravel() for v in arrays.values() for a in v])
    assert rep["amplitude"]["real_mean"] == pytest.approx(np.mean(10 * np.log10(kept)), rel=1e-5)
    blank = {"urban": [np.full((16, 16), np.nan, np.float32)]}
    with pytest.raises(GeosynthError, match=r"every (pixel|value) is NaN or nodata"):
        _eval(write_set(tmp_path / "blank", blank), hroot)


def test_dual_pol_geotiffs_are_compared_band_by_band(tmp_path) -> None:
    from geosynth.data.raster import read_raster, write_raster
    from tests.data.rasters.data import write_sar_dualpol

    real = write_sar_dualpol(tmp_path / "real", per_class=4)
    rep = _eval(real, real, amplitude_scale="db")
    amp = rep["amplitude"]
    assert set(amp["per_band"]) == {"VV", "VH"} and amp["wasserstein1"] == 0.0
    assert rep["glcm"]["distance"] == 0.0 and set(amp["scale"]["range"]) == {"VV", "VH"}
    # VH is darker than VV: each band has its own range.
    assert amp["scale"]["range"]["VH"][1] < amp["scale"]["range"]["VV"][1]
    # +3 dB on VV only: reported on VV, not on VH; the top level is the mean over bands.
    for path in real.rglob("*.tif"):
        r = read_raster(path)
        r.array[0] *= np.float32(10**0.3)
        out = tmp_path / "synth" / path.relative_to(real)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_raster(out, r)
    amp = _eval(tmp_path / "synth", real, amplitude_scale="db")["amplitude"]
    assert amp["per_band"]["VV"]["shift_db"] == pytest.approx(3.0, abs=1e-4)
    assert amp["per_band"]["VH"]["shift_db"] == 0.0
    assert amp["shift_db"] == pytest.approx(1.5, abs=1e-4)
