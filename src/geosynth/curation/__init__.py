"""Curate generated data before training on it (``geosynth filter``): drop memorised copies of
the training shots, off-class and off-manifold samples, and keep a per-class budget."""

from geosynth.curation.run import REASONS, FilterReport, filter_dataset

__all__ = ["REASONS", "FilterReport", "filter_dataset"]
