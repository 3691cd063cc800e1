"""Prototype LoRAs (pLoRA, seed 001 section 4.2): cluster every training image regardless of
class, train one small LoRA per cluster, and mix them per class with bias-score weights."""

from geosynth.plora.kmeans import KMeansResult, kmeans
from geosynth.plora.weights import bias_weights, count_table, uniform_weights

__all__ = ["KMeansResult", "bias_weights", "count_table", "kmeans", "uniform_weights"]
