"""Prototype LoRAs (pLoRA, seed 001 section 4.2): cluster every training image regardless of
class, train one small LoRA per cluster, and mix them per class with bias-score weights.
:func:`build_plora` does all of it (what ``geosynth cluster-plora`` does)."""

from typing import Any

from geosynth.plora.clustering import KMeansResult, kmeans
from geosynth.plora.weights import bias_weights, count_table, uniform_weights

#: imported on first use: building needs torch, datasets and the diffusion stack
_BUILD = ("build_plora", "cluster_plora", "train_clusters")

__all__ = [
    "KMeansResult",
    "bias_weights",
    "build_plora",
    "cluster_plora",
    "count_table",
    "kmeans",
    "train_clusters",
    "uniform_weights",
]


def __getattr__(name: str) -> Any:
    if name in _BUILD:
        from geosynth.plora import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
