"""Precision, recall, density, coverage (Naeem et al. 2020) and rarity (Han et al. 2022), exactly,
in one blocked pass over reference x target distances.

REFERENCE plays "real" and TARGET "fake". With r_i the k-NN radius of reference point i (itself
excluded) and s_j that of target point j within the target set:

* precision = fraction of targets inside at least one reference ball (d(i, j) < r_i);
* recall    = fraction of references inside at least one target ball (d(i, j) < s_j);
* density   = (1/k) * mean over targets of the number of reference balls containing them;
* coverage  = fraction of references whose ball contains at least one target;
* rarity(j) = min of r_i (with ``rarity_k``) over the reference balls strictly containing j;
  targets inside no ball have no score: they are counted and left out of the mean and median.

All comparisons are strict ``<``, as in the ``prdc`` package and the rarity-score code. Memory is
the features plus O(block^2); no N x M matrix is ever held. Comparisons that float32 rounding
could flip are re-decided in float64 (see :mod:`geosynth.metrics.knn`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from geosynth.distributed import all_reduce, rank_and_size, row_range
from geosynth.metrics.knn import (
    EPS32,
    class_sqradii,
    error_bound,
    exact_sqdist,
    knn_sqradii,
    sqdist_block,
)


@dataclass
class ManifoldResult:
    """Per-sample results of the cross pass, from which every summary is derived."""

    k: int
    rarity_k: int
    ball_counts: torch.Tensor  # M int64: reference k-balls containing each target
    rarity: torch.Tensor  # M float64: min containing rarity_k-radius, inf when none
    covered: torch.Tensor  # N bool: reference ball contains some target
    recalled: torch.Tensor  # N bool: reference inside some target ball
    target_labels: torch.Tensor | None = None
    covered_by_class: torch.Tensor | None = None  # N x C bool
    recalled_by_class: torch.Tensor | None = None  # N x C bool (class-internal target radii)
    pairs_checked_in_float64: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self, mask: torch.Tensor | None = None, cls: int | None = None) -> dict[str, Any]:
        """Metrics over all targets, or the targets selected by ``mask`` (class ``cls``)."""
        counts = self.ball_counts if mask is None else self.ball_counts[mask]
        rarity = self.rarity if mask is None else self.rarity[mask]
        if cls is None:
            covered, recalled = self.covered, self.recalled
        else:
            assert self.covered_by_class is not None and self.recalled_by_class is not None
            covered, recalled = self.covered_by_class[:, cls], self.recalled_by_class[:, cls]
        inside = torch.isfinite(rarity)
        scores = rarity[inside]
        m = max(int(counts.numel()), 1)
        return {
            "n_target": int(counts.numel()),
            "precision": float((counts > 0).sum()) / m,
            "recall": float(recalled.double().mean()),
            "density": float(counts.double().sum()) / (self.k * m),
            "coverage": float(covered.double().mean()),
            # None (JSON null): no target inside any ball, so there is no rarity to average
            "rarity_mean": float(scores.mean()) if scores.numel() else None,
            "rarity_median": float(scores.median()) if scores.numel() else None,
            "rarity_fraction_inside": float(inside.sum()) / m,
            "rarity_n_inside": int(inside.sum()),
        }


def _decide(
    d2: torch.Tensor,
    r2: torch.Tensor,
    tol: torch.Tensor,
    ref: torch.Tensor,
    tgt: torch.Tensor,
) -> tuple[torch.Tensor, int]:
    """``d2 < r2[row]`` for a tile, with float64 re-checks where float32 could be wrong.

    ``tol`` is the per-row error bound of ``d2``; two comparisons against the band edges
    ``r2 -/+ tol`` find the few pairs whose side float32 cannot decide.
    """
    r = r2.float()
    t = tol + EPS32 * r.abs()  # also covers rounding the float64 radius to float32
    inside = d2 < (r - t).unsqueeze(1)
    unsure = (d2 < (r + t).unsqueeze(1)) ^ inside
    n_unsure = int(unsure.sum())
    if n_unsure:
        ii, jj = torch.nonzero(unsure, as_tuple=True)
        inside[ii, jj] = exact_sqdist(ref[ii], tgt[jj]) < r2[ii]
    return inside, n_unsure


def _rows_inside_some_column_ball(
    d2: torch.Tensor,
    r2: torch.Tensor,
    tol: torch.Tensor,
    ref: torch.Tensor,
    tgt: torch.Tensor,
    known: torch.Tensor,
) -> tuple[torch.Tensor, int]:
    """Per row: is it inside at least one column's ball (``d2 < r2[col]``)? Rows already ``known``
    to be, or shown to be by a definite float32 decision, skip their float64 re-checks: recall
    and coverage only need "any", and in high dimensions many pairs sit near a radius."""
    r = r2.float()
    t = tol.unsqueeze(1) + EPS32 * r.abs().unsqueeze(0)
    lo, hi = r.unsqueeze(0) - t, r.unsqueeze(0) + t
    surely = d2 < lo
    result = known | surely.any(1)
    unsure = (d2 < hi) ^ surely
    unsure &= ~result.unsqueeze(1)
    n_unsure = int(unsure.sum())
    if n_unsure:
        ii, jj = torch.nonzero(unsure, as_tuple=True)
        hit = exact_sqdist(ref[ii], tgt[jj]) < r2[jj]
        result[ii[hit]] = True
    return result, n_unsure


def _decide_pairs(
    d2: torch.Tensor, r2: torch.Tensor, tol: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """``_decide`` for a list of pairs (row i of ``a`` with row i of ``b``)."""
    r = r2.float()
    t = tol + EPS32 * r.abs()
    inside = d2 < r - t
    unsure = (d2 < r + t) ^ inside
    n_unsure = int(unsure.sum())
    if n_unsure:
        idx = torch.nonzero(unsure).flatten()
        inside[idx] = exact_sqdist(a[idx], b[idx]) < r2[idx]
    return inside, n_unsure


def manifold_metrics(
    reference: torch.Tensor,
    target: torch.Tensor,
    *,
    k: int = 5,
    rarity_k: int = 3,
    target_labels: torch.Tensor | None = None,
    num_classes: int | None = None,
    block_ref: int = 1024,
    block_tgt: int = 2048,
    device: torch.device | str | None = None,
) -> ManifoldResult:
    """Exact PRDC and rarity between ``reference`` (N x D) and ``target`` (M x D).

    With ``target_labels`` the result also holds per-class coverage and recall (recall per class
    uses each class's own k-NN radii), so per-class summaries come from the same single pass.
    """
    dev = torch.device(device) if device else reference.device
    ref = reference.to(dev, torch.float32).contiguous()
    tgt = target.to(dev, torch.float32).contiguous()
    n, dim = ref.shape
    m = tgt.shape[0]

    # Under torch.distributed every pass is split by rows: the k-NN radii by the rows whose radii
    # are computed, the cross pass by reference rows; the partial results are combined exactly
    # (gathered rows, summed counts, minimum rarity), so any number of ranks gives the same result.
    ref_r2 = knn_sqradii(ref, sorted({k, rarity_k}), block=min(block_ref, 1024), split=True)
    r2_ref_k, r2_ref_rk = ref_r2[k], ref_r2[rarity_k]
    r2_tgt = knn_sqradii(tgt, [k], block=min(block_tgt, 1024), split=True)[k]
    rarity_radius = r2_ref_rk.sqrt()
    r2_big, r2_small = (r2_ref_k, r2_ref_rk) if k >= rarity_k else (r2_ref_rk, r2_ref_k)

    per_class = target_labels is not None
    if target_labels is not None:
        labels = target_labels.to(dev).long()
        c = int(num_classes if num_classes is not None else int(labels.max()) + 1)
        # Class-internal target radii, for per-class recall.
        r2_tgt_cls = class_sqradii(tgt, labels, c, k)
        covered_c = torch.zeros(n, c, dtype=torch.bool, device=dev)
        recalled_c = torch.zeros(n, c, dtype=torch.bool, device=dev)

    sq_ref, sq_tgt = ref.pow(2).sum(1), tgt.pow(2).sum(1)
    tol_ref = error_bound(sq_ref, float(sq_tgt.max()), dim)
    counts = torch.zeros(m, dtype=torch.int64, device=dev)
    rarity = torch.full((m,), math.inf, dtype=torch.float64, device=dev)
    covered = torch.zeros(n, dtype=torch.bool, device=dev)
    recalled = torch.zeros(n, dtype=torch.bool, device=dev)
    checked = 0

    first, last = row_range(n)
    for i0 in range(first, last, block_ref):
        i1 = min(i0 + block_ref, last)
        rb, tol = ref[i0:i1], tol_ref[i0:i1]
        for j0 in range(0, m, block_tgt):
            j1 = min(j0 + block_tgt, m)
            tb = tgt[j0:j1]
            d2 = sqdist_block(rb, tb, sq_ref[i0:i1], sq_tgt[j0:j1])
            # Balls of the larger radius first (full tile); the smaller radius's balls lie inside
            # them, so its decisions only concern the few pairs already found inside.
            in_big, u1 = _decide(d2, r2_big[i0:i1], tol, rb, tb)
            ii, jj = torch.nonzero(in_big, as_tuple=True)
            d2_pairs = d2[ii, jj]
            in_small, u2 = _decide_pairs(d2_pairs, r2_small[ii + i0], tol[ii], rb[ii], tb[jj])
            ik, jk = (ii, jj) if k >= rarity_k else (ii[in_small], jj[in_small])
            irk, jrk = (ii[in_small], jj[in_small]) if k >= rarity_k else (ii, jj)
            recalled[i0:i1], u3 = _rows_inside_some_column_ball(
                d2, r2_tgt[j0:j1], tol, rb, tb, recalled[i0:i1]
            )
            checked += u1 + u2 + u3
            counts.index_add_(0, jk + j0, torch.ones_like(jk))
            covered[ik + i0] = True
            if irk.numel():
                rarity.scatter_reduce_(0, jrk + j0, rarity_radius[irk + i0], "amin")
            if per_class:
                covered_c[ik + i0, labels[jk + j0]] = True
                lab = labels[j0:j1]
                for cls in torch.unique(lab).tolist():
                    cols = torch.nonzero(lab == cls).flatten()
                    recalled_c[i0:i1, cls], u4 = _rows_inside_some_column_ball(
                        d2[:, cols],
                        r2_tgt_cls[j0 + cols],
                        tol,
                        rb,
                        tb[cols],
                        recalled_c[i0:i1, cls],
                    )
                    checked += u4
            del d2

    if rank_and_size()[1] > 1:
        counts, rarity = all_reduce(counts, "sum"), all_reduce(rarity, "min")
        covered, recalled = all_reduce(covered, "max"), all_reduce(recalled, "max")
        if per_class:
            covered_c, recalled_c = all_reduce(covered_c, "max"), all_reduce(recalled_c, "max")
        checked = int(all_reduce(torch.tensor([checked], device=dev), "sum")[0])

    return ManifoldResult(
        k=k,
        rarity_k=rarity_k,
        ball_counts=counts.cpu(),
        rarity=rarity.cpu(),
        covered=covered.cpu(),
        recalled=recalled.cpu(),
        target_labels=None if not per_class else labels.cpu(),
        covered_by_class=None if not per_class else covered_c.cpu(),
        recalled_by_class=None if not per_class else recalled_c.cpu(),
        pairs_checked_in_float64=checked,
    )
