"""pLoRA mixing weights (seed 001, section 4.2).

For class ``i`` and cluster ``j`` with ``N(c_i, p_j)`` images of class i in cluster j, the bias
score is ``b_ij = N(c_i, p_j) / sum_i' N(c_i', p_j)`` (the class's share of the cluster) and the
class's weights are the L1-normalised row ``w_i = b_i / ||b_i||_1``. The paper's dagger variant
uses the same weight ``1/K`` for every cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def count_table(
    labels: Sequence[int], assignments: Sequence[int], n_classes: int, k: int
) -> np.ndarray:
    """Classes x clusters table of image counts."""
    table = np.zeros((n_classes, k), dtype=np.int64)
    np.add.at(table, (np.asarray(labels), np.asarray(assignments)), 1)
    return table


def bias_weights(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bias scores b, weights w) from a classes x clusters count table. Empty clusters (a zero
    column) get score 0; a class with no images gets an all-zero row."""
    counts = np.asarray(counts, dtype=np.float64)
    col = counts.sum(axis=0, keepdims=True)
    b = np.divide(counts, col, out=np.zeros_like(counts), where=col > 0)
    row = b.sum(axis=1, keepdims=True)
    w = np.divide(b, row, out=np.zeros_like(b), where=row > 0)
    return b, w


def uniform_weights(n_classes: int, k: int) -> np.ndarray:
    """The dagger variant: every cluster LoRA at 1/K for every class."""
    return np.full((n_classes, k), 1.0 / k)
