"""Map fidelity of generated images measured by a segmentation model (seed 004): a model trained
on real pairs (``train-seg``) segments each generated image, and its prediction is scored
against the mask the image was generated from (``generate --maps``) or with (a joint model):
mIoU, pixel accuracy and per-class IoU over all pairs, as ``train-seg`` scores TEST. The same
score on real held-out pairs is the ceiling the segmenter itself allows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from geosynth.segment.data import _load, align
from geosynth.segment.run import load_segmenter
from geosynth.segment.train import evaluate_segmenter, tensors


@torch.no_grad()
def segmenter_fidelity(
    segmenter: str | os.PathLike[str],
    pairs: Any,
    *,
    map_legend: Any = None,
    ignore: Any = None,
    batch_size: int = 16,
    role: str = "pairs",
) -> dict[str, Any]:
    """Score ``segmenter`` (a ``train-seg`` ``seed-S/model.safetensors``) on the image/mask
    ``pairs`` (a path or a PairedDataset; its classes matched to the model's by name); ``role``
    names ``pairs`` in errors."""
    model = load_segmenter(Path(segmenter))
    ds = _load(pairs, role, map_legend=map_legend, ignore=ignore, split=None, shots=None,
               seed=0)  # fmt: skip
    assert ds.legend is not None
    remap = align(ds.legend, list(model.class_names), role, ds.source)
    result = evaluate_segmenter(
        model, tensors(model, ds, remap, train=False), batch_size=batch_size
    )
    keep = ("miou", "pixel_accuracy", "mean_accuracy", "per_class")
    return {
        "segmenter": str(segmenter),
        "pairs": str(ds.source),
        "n": len(ds),
        **{k: result[k] for k in keep if k in result},
    }
