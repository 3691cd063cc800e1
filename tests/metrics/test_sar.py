"""Amplitude distances and GLCM descriptors: against scikit-image and scipy run by hand, and
known answers (shifts, identical sets)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import wasserstein_distance
from skimage.feature import graycomatrix, graycoprops

from geosynth.data import load_dataset
from geosynth.metrics.pixels import is_greyscale, scan_images
from geosynth.metrics.sar import (
    GLCM_PROPS,
    amplitude,
    log_amplitude_kl,
    quantise,
    wasserstein1,
)


def _skimage_reference(path: Path, levels: int) -> np.ndarray:
    """GLCM descriptors of one image, computed straight from PIL + scikit-image."""
    grey = np.asarray(Image.open(path).convert("L"), dtype=np.int64)
    q = (grey * levels // 256).astype(np.uint8)
    m = graycomatrix(
        q, [1], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=levels, symmetric=True, normed=True
    )
    return np.array([graycoprops(m, p).mean() for p in GLCM_PROPS])


@pytest.mark.parametrize("levels", [16, 64])
def test_glcm_of_real_eurosat_equals_scikit_image(eurosat: Path, levels: int) -> None:
    ds = load_dataset(eurosat, split="train", classes=["Forest", "Industrial"], shots=4, seed=0)
    scan = scan_images(ds, greyscale=False, glcm_levels=levels)
    reference = np.stack([_skimage_reference(s.ref, levels) for s in ds.samples])
    np.testing.assert_allclose(scan.glcm, reference, rtol=1e-12, atol=1e-12)
    # Texture separates the classes: industrial scenes have far more grey-level contrast.
    contrast = scan.glcm[:, GLCM_PROPS.index("contrast")]
    assert contrast[scan.labels == 1].mean() > 2 * contrast[scan.labels == 0].mean()


def test_amplitude_w1_of_a_shift_is_the_shift() -> None:
    rng = np.random.default_rng(0)
    a = rng.gamma(1.0, 40.0, size=20_000)  # speckle-like, heavy-tailed amplitudes
    assert wasserstein1(a, a + 12.5) == pytest.approx(12.5, rel=1e-9)
    assert wasserstein1(a, a) == 0.0
    b = rng.gamma(1.5, 30.0, size=15_000)
    assert wasserstein1(a, b) == pytest.approx(wasserstein_distance(a, b))


def test_log_amplitude_kl_known_answers() -> None:
    rng = np.random.default_rng(1)
    a = rng.gamma(1.0, 40.0, size=50_000)
    assert log_amplitude_kl(a, a) == pytest.approx(0.0, abs=1e-12)
    near = log_amplitude_kl(a, rng.gamma(1.0, 40.0, size=50_000))
    far = log_amplitude_kl(a, rng.gamma(1.0, 120.0, size=50_000))
    assert 0 <= near < 0.01 < far
    # Two well-separated histograms: KL is the hand-computed value with the pseudo-count.
    p = np.full(1000, 1.0)  # log1p(1) = 0.69...
    q = np.full(1000, np.e**2 - 1)  # log1p = 2
    kl = log_amplitude_kl(p, q, bins=2)
    pp = np.array([1.0 + 1e-6, 1e-6]) / (1 + 2e-6)
    qq = pp[::-1]
    assert kl == pytest.approx(float(np.sum(pp * np.log(pp / qq))), rel=1e-9)


def test_sixteen_bit_sar_amplitudes_are_read_as_stored(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    root = tmp_path / "sar" / "ship"
    root.mkdir(parents=True)
    arrays = []
    for i in range(3):
        arr = rng.gamma(1.0, 3000.0, size=(24, 24)).clip(0, 65535).astype(np.uint16)
        Image.fromarray(arr).save(root / f"{i}.png")
        arrays.append(arr)
    ds = load_dataset(tmp_path / "sar")
    assert is_greyscale(ds)
    scan = scan_images(ds, greyscale=True, glcm_levels=32)
    assert scan.channels == ["grey"] and set(scan.modes) <= {"I;16", "I"}
    got = np.sort(scan.class_amplitude())
    np.testing.assert_array_equal(got, np.sort(np.concatenate([a.ravel() for a in arrays])))
    np.testing.assert_allclose(scan.channel_mean[:, 0], [a.mean() / 65535 for a in arrays])
    amp, full = amplitude(Image.open(root / "0.png"))
    np.testing.assert_array_equal(amp, arrays[0])
    assert full in (65535.0, 1.0)
    assert quantise(np.array([0.0, 65535.0]), 65535.0, 32).tolist() == [0, 31]
