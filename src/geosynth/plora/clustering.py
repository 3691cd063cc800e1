"""Seeded K-Means with restarts (faiss), keeping the restart with the lowest inertia."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geosynth.errors import GeosynthError
from geosynth.extras import require


@dataclass
class KMeansResult:
    """Centroids (K x D), one cluster per sample, the inertia (sum of squared distances to the
    assigned centroid) and the seed of the attempt that produced them."""

    centroids: np.ndarray
    assignments: np.ndarray
    inertia: float
    seed: int


def _attempt(x: np.ndarray, k: int, *, seed: int, restarts: int, iters: int) -> KMeansResult:
    faiss = require("faiss", "k-means clustering (pLoRA prototypes)")

    km = faiss.Kmeans(
        x.shape[1],
        k,
        niter=iters,
        nredo=restarts,  # faiss keeps the restart with the best objective
        seed=seed,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=max(256, len(x)),  # never subsample: few-shot sets are small
    )
    km.train(x)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(km.centroids)
    dist, assign = index.search(x, 1)
    return KMeansResult(
        centroids=np.asarray(km.centroids, dtype=np.float32),
        assignments=assign[:, 0].astype(np.int64),
        inertia=float(dist.sum()),
        seed=seed,
    )


def kmeans(
    features: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    restarts: int = 10,
    iters: int = 50,
    reseeds: int = 5,
) -> KMeansResult:
    """Cluster ``features`` (N x D) into ``k`` non-empty clusters.

    A run whose final assignment leaves a cluster empty (possible with duplicated points) is
    repeated with another seed, up to ``reseeds`` times; then it is an error, since an empty
    cluster would have no images to train its LoRA on."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    n = len(x)
    if k < 1:
        raise GeosynthError(f"k={k}: must be at least 1")
    if k > n:
        raise GeosynthError(f"k={k}: larger than the number of samples ({n})")
    distinct = len(np.unique(x, axis=0))
    if k > distinct:
        raise GeosynthError(
            f"k={k}: the features hold only {distinct} distinct points, so some cluster "
            "would stay empty"
        )
    for attempt in range(reseeds + 1):
        res = _attempt(x, k, seed=seed + 1000 * attempt, restarts=restarts, iters=iters)
        if len(np.unique(res.assignments)) == k:
            return res
    raise GeosynthError(
        f"k={k}: a cluster stayed empty after {reseeds + 1} seeds; use a smaller `k`"
    )
