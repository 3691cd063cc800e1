"""Fréchet distance (FID, FD-DINOv2, ...) and kernel distance (KID) between two feature sets.

Both are computed in float64 from N x D feature matrices; which network made the features
(Inception-v3 pool3 for classic FID, DINOv2 for FD-DINOv2, any extractor) is the caller's choice
and is recorded in the report.

Fréchet distance between Gaussians fitted to the two sets (Heusel et al. 2017):

    FD = |mu_r - mu_s|^2 + tr(S_r) + tr(S_s) - 2 tr((S_r S_s)^(1/2))

with unbiased covariances (divide by N - 1, as torchmetrics, pytorch-fid and clean-fid do). The
trace of the matrix square root is taken by the symmetric eigen route: with A = S_r^(1/2) (from
``eigh``, negative round-off eigenvalues clipped to 0), A S_s A is symmetric positive
semi-definite and similar to S_r S_s, so tr((S_r S_s)^(1/2)) = sum sqrt(eig(A S_s A)). Unlike
``scipy.linalg.sqrtm`` on the non-symmetric product this never returns complex parts or fails on
rank-deficient covariances, which small sets (N <= D) always have.

KID (Bińkowski et al. 2018) is the unbiased MMD^2 with the cubic polynomial kernel
k(x, y) = (x.y / D + 1)^3, averaged over random subsets (mean and std), as torchmetrics and
torch-fidelity compute it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _f64(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def gaussian_stats(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D) and unbiased covariance (D x D) of N x D features, in float64."""
    x = _f64(features)
    mu = x.mean(axis=0)
    xc = x - mu
    sigma = xc.T @ xc / max(x.shape[0] - 1, 1)
    return mu, sigma


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance; tiny negative eigenvalues (round-off) become 0."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (see the module docstring)."""
    mu1, mu2, sigma1, sigma2 = map(_f64, (mu1, mu2, sigma1, sigma2))
    a = _psd_sqrt(sigma1)
    m = a @ sigma2 @ a
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    # Identical sets give 0 up to round-off, which can land a hair below zero.
    return max(value, 0.0)


def rank_warning(n: int, dim: int, role: str) -> str | None:
    """Why an FD on ``n`` samples of ``dim``-dimensional features is unreliable, or None."""
    if n > dim:
        return None
    return (
        f"FID: {role} has {n} images for {dim}-dimensional features: its covariance has rank at "
        f"most {n - 1} < {dim}, so the Fréchet distance is dominated by estimation error (biased "
        "upward, unstable across samples); use more images than feature dimensions or a "
        "lower-dimensional feature space, or prefer KID"
    )


@dataclass
class FidResult:
    """A Fréchet distance with the set sizes and feature dimension it rests on."""

    value: float
    n_real: int
    n_synthetic: int
    dim: int
    warnings: list[str]

    def to_dict(self) -> dict[str, object]:
        return {
            "value": self.value,
            "n_real": self.n_real,
            "n_synthetic": self.n_synthetic,
            "feature_dim": self.dim,
        }


def fid(real: torch.Tensor | np.ndarray, synthetic: torch.Tensor | np.ndarray) -> FidResult:
    """Fréchet distance between two N x D feature sets, with rank warnings for small sets."""
    r, s = _f64(real), _f64(synthetic)
    if r.shape[0] < 2 or s.shape[0] < 2:
        raise ValueError("FID needs at least 2 samples per set")
    warnings = [
        w
        for w in (
            rank_warning(r.shape[0], r.shape[1], "real"),
            rank_warning(s.shape[0], s.shape[1], "synthetic"),
        )
        if w
    ]
    value = frechet_distance(*gaussian_stats(r), *gaussian_stats(s))
    return FidResult(value, r.shape[0], s.shape[0], r.shape[1], warnings)


def _poly_kernel(
    x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef: float
) -> np.ndarray:
    return (x @ y.T * gamma + coef) ** degree


def unbiased_mmd2(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased MMD^2 from the three kernel matrices (diagonals of the within-set ones dropped)."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    sxx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    syy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * k_xy.mean())


def kid(
    real: torch.Tensor | np.ndarray,
    synthetic: torch.Tensor | np.ndarray,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    seed: int = 0,
) -> dict[str, float | int]:
    """KID mean and std over ``subsets`` random subsets of ``min(subset_size, N_r, N_s)`` per set.

    Subsets are drawn without replacement within a subset, from a generator seeded by ``seed``.
    When the subset size equals both set sizes every subset is the whole set and the std is 0.
    """
    r, s = _f64(real), _f64(synthetic)
    size = min(subset_size, r.shape[0], s.shape[0])
    if size < 2:
        raise ValueError("KID needs at least 2 samples per set")
    g = 1.0 / r.shape[1] if gamma is None else gamma
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = r[rng.choice(r.shape[0], size, replace=False)]
        y = s[rng.choice(s.shape[0], size, replace=False)]
        values.append(
            unbiased_mmd2(
                _poly_kernel(x, x, degree, g, coef),
                _poly_kernel(y, y, degree, g, coef),
                _poly_kernel(x, y, degree, g, coef),
            )
        )
    v = np.asarray(values)
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "subsets": subsets,
        "subset_size": size,
        "degree": degree,
        "gamma": g,
        "coef": coef,
    }
