"""Exact k-nearest-neighbour radii without an N x N matrix.

Distances are computed block by block in float32 with the expansion
``|x - y|^2 = |x|^2 + |y|^2 - 2 x.y`` (one matrix multiply per block, the fast path on CPU and GPU),
and every decision that float32 rounding could flip is re-checked in float64 from the difference
vectors. The bound used is the classical one for a float32 dot product of length D: the rounding
error of ``|x|^2 + |y|^2 - 2 x.y`` is below ``D * eps32 * (|x|^2 + |y|^2)``; we use twice that.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from geosynth.distributed import gather_rows, rank_and_size, row_range

EPS32 = float(torch.finfo(torch.float32).eps)
#: Extra candidates fetched beyond the k+1 needed, so float64 re-ranking rarely needs a full row.
EXTRA_CANDIDATES = 8


def error_bound(sq_a: torch.Tensor, sq_b_max: float, dim: int) -> torch.Tensor:
    """Per-row bound on the float32 error of squared distances from rows with norms ``sq_a`` to
    any row whose squared norm is at most ``sq_b_max``."""
    return 2.0 * dim * EPS32 * (sq_a + sq_b_max) + 1e-30


def exact_sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared distances of paired rows in float64, from the difference vectors (exact up to
    float64 rounding; identical points give exactly 0)."""
    return (a.double() - b.double()).pow(2).sum(-1)


def gathered_sqdist(
    rows: torch.Tensor, x: torch.Tensor, idx: torch.Tensor, chunk: int = 64
) -> torch.Tensor:
    """Exact (float64) squared distances from each of ``rows`` to the points ``x[idx[row]]``.

    Rows are processed in chunks and converted to float64 there, so neither a float64 copy of
    the features nor a large difference tensor ever exists.
    """
    out = torch.empty(idx.shape, dtype=torch.float64, device=x.device)
    for c in range(0, idx.shape[0], chunk):
        diff = x[idx[c : c + chunk]].double()
        diff.sub_(rows[c : c + chunk].double().unsqueeze(1))
        out[c : c + chunk] = diff.square_().sum(-1)
    return out


def sqdist_block(
    a: torch.Tensor, b: torch.Tensor, sq_a: torch.Tensor, sq_b: torch.Tensor
) -> torch.Tensor:
    """float32 squared distances between all rows of ``a`` and ``b`` (len(a) x len(b))."""
    d2 = torch.addmm(sq_b.unsqueeze(0), a, b.T, beta=1.0, alpha=-2.0)
    d2.add_(sq_a.unsqueeze(1))
    return d2


def knn_radii(x: torch.Tensor, ks: Sequence[int], *, block: int = 1024) -> dict[int, torch.Tensor]:
    """For each k in ``ks``, the distance of every row to its k-th nearest *other* row (float64).

    See :func:`knn_sqradii`; this is its square root, for reporting.
    """
    return {k: v.sqrt() for k, v in knn_sqradii(x, ks, block=block).items()}


def knn_sqradii(
    x: torch.Tensor,
    ks: Sequence[int],
    *,
    block: int = 1024,
    split: bool = False,
) -> dict[int, torch.Tensor]:
    """For each k in ``ks``, the squared distance of every row to its k-th nearest *other* row,
    in float64. With ``split`` under torch.distributed each rank computes its own rows
    (:func:`geosynth.distributed.row_range`) and every rank gets all of them; each row's value is
    exact, so the result equals a single process's. Comparisons use squares: a square root then a square would not round-trip, and a
    strict ``<`` against a radius that is itself a distance must see exact ties.

    As in Naeem et al.'s ``prdc``: the k-th smallest distance of a row excluding the row itself,
    i.e. the (k+1)-th smallest including the zero self-distance; duplicates of a point count as
    neighbours at distance 0.
    """
    n, dim = x.shape
    kmax = max(ks)
    if n <= kmax:
        raise ValueError(f"k={kmax} needs more than {kmax} points, got {n}")
    x = x.float().contiguous()
    sq = x.pow(2).sum(1)
    sq_max = float(sq.max())
    cand = min(n, kmax + 1 + EXTRA_CANDIDATES)
    first, last = row_range(n) if split else (0, n)
    out = {k: torch.empty(last - first, dtype=torch.float64, device=x.device) for k in ks}
    for start in range(first, last, block):
        stop = min(start + block, last)
        # |x_i|^2 is constant along a row, so ranking needs only |x_j|^2 - 2 x_i.x_j: one pass
        # over the tile fewer. It is added back to the few values that are kept.
        sq_rows = sq[start:stop].unsqueeze(1)
        d2 = torch.addmm(sq.unsqueeze(0), x[start:stop], x.T, beta=1.0, alpha=-2.0)
        v32, idx = torch.topk(d2, cand, dim=1, largest=False, sorted=True)
        v32 += sq_rows
        exact = gathered_sqdist(x[start:stop], x, idx).sort(dim=1).values
        if cand < n:
            # Points outside the candidates have float32 distance >= the last candidate's; if
            # that is within the error bound of the k-th exact distance, one of them could be
            # closer: re-rank that row exactly over every point inside the band.
            tol = error_bound(sq[start:stop], sq_max, dim).double()
            unsafe = v32[:, -1].double() - tol <= exact[:, kmax]
            for r in torch.nonzero(unsafe).flatten().tolist():
                edge = float(exact[r, kmax] + 2 * tol[r] - sq_rows[r])
                band = torch.nonzero(d2[r] <= edge).flatten()
                row = gathered_sqdist(x[start + r : start + r + 1], x, band.unsqueeze(0))
                exact[r] = row.sort(dim=1).values[0, :cand]
        del d2
        for k in ks:
            out[k][start - first : stop - first] = exact[:, k].clamp_min(0)
    if split and rank_and_size()[1] > 1:
        return {k: gather_rows(v, n) for k, v in out.items()}
    return out


def class_sqradii(x: torch.Tensor, labels: torch.Tensor, num_classes: int, k: int) -> torch.Tensor:
    """Each row's squared k-NN radius within its own class (per-class recall); -1 for rows of
    classes with at most k members, whose balls then contain nothing."""
    out = torch.full((x.shape[0],), -1.0, dtype=torch.float64, device=x.device)
    for cls in range(num_classes):
        idx = torch.nonzero(labels == cls).flatten()
        if idx.numel() > k:
            out[idx] = knn_sqradii(x[idx], [k])[k]
    return out
