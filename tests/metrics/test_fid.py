"""Fréchet distance and KID against torchmetrics on the same features, and against scipy's sqrtm."""

import numpy as np
import pytest
import scipy.linalg
import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from geosynth.metrics.frechet import fid, frechet_distance, gaussian_stats, kid, rank_warning


class _Rows(torch.nn.Module):
    """A 'feature extractor' for torchmetrics that returns the rows it is given, so both
    implementations see exactly the same features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _sets(n: int, m: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.5
    b = rng.normal(size=(m, d)) @ rng.normal(size=(d, d)) * 0.6 + 0.3
    return a.astype(np.float32), b.astype(np.float32)


@pytest.mark.parametrize(("n", "m", "d"), [(300, 200, 16), (40, 30, 64)])
def test_fid_equals_torchmetrics_on_the_same_features(n: int, m: int, d: int) -> None:
    real, synth = _sets(n, m, d)
    tm = FrechetInceptionDistance(feature=_Rows(d))
    tm.update(torch.from_numpy(real), real=True)
    tm.update(torch.from_numpy(synth), real=False)
    expected = float(tm.compute())
    ours = fid(real, synth)
    assert ours.value == pytest.approx(expected, rel=1e-5)
    # d >= n: the rank-deficient case warns, naming the set and the reason.
    assert bool(ours.warnings) == (d >= min(n, m))


def test_fid_matches_the_scipy_sqrtm_formula_and_is_zero_for_identical_sets() -> None:
    real, synth = _sets(500, 400, 8, seed=3)
    mu1, s1 = gaussian_stats(real)
    mu2, s2 = gaussian_stats(synth)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-9)
    assert np.allclose(s1, np.cov(real.astype(np.float64), rowvar=False))
    assert fid(real, real).value == pytest.approx(0.0, abs=1e-8)
    # A pure mean shift of c in every one of d dimensions costs d * c^2.
    assert fid(real, real + 0.5).value == pytest.approx(8 * 0.25, rel=1e-6)


def test_kid_equals_torchmetrics_when_subsets_are_whole_sets() -> None:
    real, synth = _sets(60, 60, 12, seed=1)
    tm = KernelInceptionDistance(feature=_Rows(12), subsets=3, subset_size=60)
    tm.update(torch.from_numpy(real), real=True)
    tm.update(torch.from_numpy(synth), real=False)
    mean, std = (float(v) for v in tm.compute())
    ours = kid(real, synth, subsets=3, subset_size=60)
    assert ours["mean"] == pytest.approx(mean, rel=1e-5)
    # Every subset is the whole set: the spread is round-off only (torchmetrics works in float32).
    assert ours["std"] < 1e-9 and std < 1e-5 * abs(mean)


def test_kid_is_seeded_and_near_zero_for_identical_distributions() -> None:
    real, synth = _sets(200, 200, 8, seed=2)
    a = kid(real, synth, subsets=10, subset_size=50, seed=7)
    assert a == kid(real, synth, subsets=10, subset_size=50, seed=7)
    assert a["mean"] > 0.05
    same = kid(real, real, subsets=10, subset_size=50, seed=7)
    assert abs(same["mean"]) < a["mean"] / 20


def test_rank_warning_says_why() -> None:
    assert rank_warning(3000, 2048, "real") is None
    msg = rank_warning(100, 2048, "synthetic")
    assert msg is not None and "synthetic has 100 images" in msg and "rank at most 99" in msg
