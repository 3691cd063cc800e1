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

from geosynth.metrics.knn import EPS32, error_bound, exact_sqdist, knn_sqradii, sqdist_block


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
            "rarity_mean": float(scores.mean()) if scores.numel() else math.nan,
            "rarity_median": float(scores.median()) if scores.numel() else math.nan,
            "rarity_fraction_inside": float(inside.sum()) / m,
            "rarity_n_inside": int(inside.sum()),
        }


def _decide(
    d2: torch.Tensor,
    r2: torch.Tensor,
    tol: torch.Tensor,
    ref: torch.Tensor,
    tgt: torch.Tensor,
    along_rows: bool,
) -> tuple[torch.Tensor, int]:
    """``d2 < r2`` with float64 re-checks where float32 could be wrong.

    ``r2`` is per row (reference radii) when ``along_rows`` else per column (target radii);
    ``tol`` is the per-row error bound of ``d2``.
    """
    r = (r2.unsqueeze(1) if along_rows else r2.unsqueeze(0)).float()
    # Also cover the rounding of the float64 radius to float32.
    t = tol.unsqueeze(1) + EPS32 * r.abs()
    inside = d2 < r
    unsure = (d2 - r).abs() <= t
    n_unsure = int(unsure.sum())
    if n_unsure:
        ii, jj = torch.nonzero(unsure, as_tuple=True)
        exact = exact_sqdist(ref[ii], tgt[jj])
        rr = r2[ii] if along_rows else r2[jj]
        inside[ii, jj] = exact < rr
    return inside, n_unsure


def manifold_metrics(
    reference: torch.Tensor,
    target: torch.Tensor,
    *,
    k: int = 5,
    rarity_k: int = 3,
    target_labels: torch.Tensor | None = None,
    num_classes: int | None = None,
    block_ref: int = 2048,
    block_tgt: int = 4096,
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

    ref_r2 = knn_sqradii(ref, sorted({k, rarity_k}), block=min(block_ref, 1024))
    r2_ref_k, r2_ref_rk = ref_r2[k], ref_r2[rarity_k]
    r2_tgt = knn_sqradii(tgt, [k], block=min(block_tgt, 1024))[k]
    rarity_radius = r2_ref_rk.sqrt()

    per_class = target_labels is not None
    if per_class:
        labels = target_labels.to(dev).long()
        c = int(num_classes if num_classes is not None else int(labels.max()) + 1)
        # Class-internal target radii, for per-class recall.
        r2_tgt_cls = torch.empty(m, dtype=torch.float64, device=dev)
        for cls in range(c):
            idx = torch.nonzero(labels == cls).flatten()
            if idx.numel() > k:
                r2_tgt_cls[idx] = knn_sqradii(tgt[idx], [k])[k]
            else:
                r2_tgt_cls[idx] = -1.0  # too few samples: such balls contain nothing
        covered_c = torch.zeros(n, c, dtype=torch.bool, device=dev)
        recalled_c = torch.zeros(n, c, dtype=torch.bool, device=dev)
        onehot = torch.nn.functional.one_hot(labels, c).to(torch.float32)

    sq_ref, sq_tgt = ref.pow(2).sum(1), tgt.pow(2).sum(1)
    tol_ref = error_bound(sq_ref, float(sq_tgt.max()), dim)
    counts = torch.zeros(m, dtype=torch.int64, device=dev)
    rarity = torch.full((m,), math.inf, dtype=torch.float64, device=dev)
    covered = torch.zeros(n, dtype=torch.bool, device=dev)
    recalled = torch.zeros(n, dtype=torch.bool, device=dev)
    checked = 0
    inf = torch.tensor(math.inf, dtype=torch.float64, device=dev)

    for i0 in range(0, n, block_ref):
        i1 = min(i0 + block_ref, n)
        rb, tol = ref[i0:i1], tol_ref[i0:i1]
        for j0 in range(0, m, block_tgt):
            j1 = min(j0 + block_tgt, m)
            tb = tgt[j0:j1]
            d2 = sqdist_block(rb, tb, sq_ref[i0:i1], sq_tgt[j0:j1])
            in_k, u1 = _decide(d2, r2_ref_k[i0:i1], tol, rb, tb, along_rows=True)
            in_rk, u2 = _decide(d2, r2_ref_rk[i0:i1], tol, rb, tb, along_rows=True)
            in_t, u3 = _decide(d2, r2_tgt[j0:j1], tol, rb, tb, along_rows=False)
            checked += u1 + u2 + u3
            counts[j0:j1] += in_k.sum(0)
            covered[i0:i1] |= in_k.any(1)
            recalled[i0:i1] |= in_t.any(1)
            radii = rarity_radius[i0:i1].unsqueeze(1)
            rarity[j0:j1] = torch.minimum(
                rarity[j0:j1], torch.where(in_rk, radii, inf).min(0).values
            )
            if per_class:
                oh = onehot[j0:j1]
                covered_c[i0:i1] |= (in_k.float() @ oh) > 0
                in_tc, u4 = _decide(d2, r2_tgt_cls[j0:j1], tol, rb, tb, along_rows=False)
                checked += u4
                recalled_c[i0:i1] |= (in_tc.float() @ oh) > 0
            del d2

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
