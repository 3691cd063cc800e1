"""Ball membership as one range search: the lifted formulation, exact or approximate (faiss).

"q lies in the ball of radius r_i around x_i" is ``|q - x_i|^2 < r_i^2``. Lifting every ball
centre to ``[x_i, sqrt(R^2 - r_i^2)]`` and every query to ``[q, 0]`` with ``R = max r_i`` turns it
into ``|lifted q - lifted x_i|^2 < R^2``: a single range search with one radius, which any faiss
index answers. With a flat index the answer is exact (candidates within the float32 error bound
of the radius are re-decided in float64); with an IVF index it is approximate (some balls are
not visited), which the report labels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from geosynth.metrics.knn import EPS32, class_sqradii, exact_sqdist, knn_sqradii
from geosynth.metrics.manifold import ManifoldResult


def _index(dim: int, n: int, approximate: bool, nprobe: int):
    import faiss

    if not approximate:
        return faiss.IndexFlatL2(dim)
    # About sqrt(n) lists, each with enough points for faiss' k-means (39 per centroid).
    nlist = max(1, min(4096, int(math.sqrt(n)), n // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist)
    index.nprobe = min(nprobe, nlist)
    return index


def ball_pairs(
    centres: torch.Tensor,
    r2: torch.Tensor,
    queries: torch.Tensor,
    *,
    approximate: bool = False,
    nprobe: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(centre, query) index pairs with ``|query - centre|^2 < r2[centre]`` (float64-exact on the
    pairs found; with a flat index every such pair is found)."""
    c = centres.float().cpu().numpy()
    q = queries.float().cpu().numpy()
    r2_np = r2.double().cpu().numpy()
    big_r2 = float(r2_np.max())
    lift = np.sqrt(np.maximum(big_r2 - r2_np, 0.0)).astype(np.float32)
    lc = np.concatenate([c, lift[:, None]], axis=1)
    lq = np.concatenate([q, np.zeros((q.shape[0], 1), np.float32)], axis=1)
    # float32 error of the lifted squared distances, as in geosynth.metrics.knn.error_bound.
    dim = lc.shape[1]
    margin = 2.0 * dim * EPS32 * (float((lq**2).sum(1).max()) + float((lc**2).sum(1).max()))
    margin += EPS32 * big_r2
    index = _index(dim, lc.shape[0], approximate, nprobe)
    if approximate:
        index.train(lc)
    index.add(lc)
    lims, _, ids = index.range_search(lq, big_r2 + margin)
    jj = torch.from_numpy(np.repeat(np.arange(lq.shape[0]), np.diff(lims.astype(np.int64))))
    ii = torch.from_numpy(ids.astype(np.int64))
    if ii.numel() == 0:
        return ii, jj
    keep = exact_sqdist(centres[ii], queries[jj]) < r2.cpu()[ii]
    return ii[keep], jj[keep]


def _approx_sqradii(x: torch.Tensor, ks: list[int], nprobe: int) -> dict[int, torch.Tensor]:
    """k-NN radii from an IVF index (approximate: a true neighbour may be missed)."""
    xs = x.float().cpu().numpy()
    index = _index(xs.shape[1], xs.shape[0], True, nprobe)
    index.train(xs)
    index.add(xs)
    _, nn = index.search(xs, max(ks) + 1)
    nn = torch.from_numpy(np.where(nn < 0, 0, nn))
    d2 = exact_sqdist(x.unsqueeze(1), x[nn]).sort(dim=1).values
    return {k: d2[:, k] for k in ks}


def lifted_manifold_metrics(
    reference: torch.Tensor,
    target: torch.Tensor,
    *,
    k: int = 5,
    rarity_k: int = 3,
    target_labels: torch.Tensor | None = None,
    num_classes: int | None = None,
    approximate: bool = False,
    nprobe: int = 32,
) -> ManifoldResult:
    """The same :class:`ManifoldResult` as the blocked pass, from range searches over lifted
    balls: reference balls queried with targets (precision, density, coverage, rarity) and
    target balls queried with references (recall)."""
    ref, tgt = reference.float().cpu(), target.float().cpu()
    n, m = ref.shape[0], tgt.shape[0]
    if approximate:
        ref_r2 = _approx_sqradii(ref, sorted({k, rarity_k}), nprobe)
        tgt_r2 = _approx_sqradii(tgt, [k], nprobe)[k]
    else:
        ref_r2 = knn_sqradii(ref, sorted({k, rarity_k}))
        tgt_r2 = knn_sqradii(tgt, [k])[k]
    search: dict[str, Any] = {"approximate": approximate, "nprobe": nprobe}

    ii, jj = ball_pairs(ref, ref_r2[k], tgt, **search)
    counts = torch.bincount(jj, minlength=m)
    covered = torch.zeros(n, dtype=torch.bool)
    covered[ii] = True
    ri, rj = ball_pairs(ref, ref_r2[rarity_k], tgt, **search)
    rarity = torch.full((m,), math.inf, dtype=torch.float64)
    if ri.numel():
        rarity.scatter_reduce_(0, rj, ref_r2[rarity_k][ri].sqrt(), "amin")
    _, tj = ball_pairs(tgt, tgt_r2, ref, **search)
    recalled = torch.zeros(n, dtype=torch.bool)
    recalled[tj] = True

    covered_c = recalled_c = labels = None
    if target_labels is not None:
        labels = target_labels.long().cpu()
        c = int(num_classes if num_classes is not None else int(labels.max()) + 1)
        covered_c = torch.zeros(n, c, dtype=torch.bool)
        covered_c[ii, labels[jj]] = True
        recalled_c = torch.zeros(n, c, dtype=torch.bool)
        r2_cls = class_sqradii(tgt, labels, c, k)
        for cls in range(c):
            idx = torch.nonzero((labels == cls) & (r2_cls >= 0)).flatten()
            if idx.numel():
                _, hit = ball_pairs(tgt[idx], r2_cls[idx], ref, **search)
                recalled_c[hit, cls] = True
    return ManifoldResult(
        k=k,
        rarity_k=rarity_k,
        ball_counts=counts,
        rarity=rarity,
        covered=covered,
        recalled=recalled,
        target_labels=labels,
        covered_by_class=covered_c,
        recalled_by_class=recalled_c,
    )
