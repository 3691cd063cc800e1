"""Evaluate a classifier on a labelled dataset: predictions, loss and the metrics of
:mod:`geosynth.classify.metrics`, with images/s."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from geosynth.backbones import eval_transform, native_eval_transform
from geosynth.classify.data import TransformedImages
from geosynth.classify.metrics import classification_metrics, confusion_matrix
from geosynth.classify.model import Classifier
from geosynth.data import ImageDataset
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track

_WRAPPED = re.compile(r"GeosynthError: (.+)$")


def unwrap_worker_errors(batches: Iterable[Any]) -> Iterator[Any]:
    """Iterate a DataLoader; a GeosynthError raised in a worker process arrives wrapped in a
    multi-line message with the worker's traceback: keep just its own one line."""
    try:
        yield from batches
    except GeosynthError as exc:
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        match = _WRAPPED.search(lines[-1]) if len(lines) > 1 else None
        if match:
            raise GeosynthError(match.group(1)) from None
        raise


def loader(
    ds: torch.utils.data.Dataset,
    *,
    batch_size: int,
    workers: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader with the settings every loop here uses."""
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=workers,
        persistent_workers=False,
        drop_last=False,
    )


@torch.no_grad()
def evaluate(
    model: Classifier,
    ds: ImageDataset,
    *,
    batch_size: int = 64,
    workers: int = 0,
    accelerator: Any | None = None,
    track: Track = no_track,
    description: str = "evaluating",
) -> dict[str, Any]:
    """Top-1, per-class precision / recall / F1, macro-F1, confusion matrix and mean loss of
    ``model`` on ``ds`` (labels in the model's class order), plus ``images_per_s``.

    With an ``accelerate`` accelerator the batches are split over processes and gathered
    (``gather_for_metrics`` drops the padding of the last batch).
    """
    was_training = model.training
    model.eval()
    if model.band_input is None:
        tfm: Callable[[Any], torch.Tensor] = eval_transform(
            model.image_size, model.mean, model.std, model.interpolation
        )
    else:
        tfm = native_eval_transform(model.image_size, model.interpolation)
    dl = loader(
        TransformedImages(ds, tfm, model.band_input), batch_size=batch_size, workers=workers
    )
    device = next(model.parameters()).device
    if accelerator is not None:
        dl = accelerator.prepare_data_loader(dl)
        device = accelerator.device
    labels, preds, losses = [], [], []
    t0 = time.perf_counter()
    for pixels, y in track(unwrap_worker_errors(dl), len(dl), description):
        pixels, y = pixels.to(device), y.to(device)
        logits = model(pixels).float()
        loss = F.cross_entropy(logits, y, reduction="none")
        pred = logits.argmax(-1)
        if accelerator is not None:
            y, pred, loss = accelerator.gather_for_metrics((y, pred, loss))
        labels.append(y.cpu())
        preds.append(pred.cpu())
        losses.append(loss.cpu())
    seconds = time.perf_counter() - t0
    model.train(was_training)
    y_all = torch.cat(labels).tolist()
    p_all = torch.cat(preds).tolist()
    metrics = classification_metrics(
        confusion_matrix(y_all, p_all, len(model.class_names)), model.class_names
    )
    metrics["loss"] = float(torch.cat(losses).mean())
    metrics["images_per_s"] = len(y_all) / max(seconds, 1e-9)
    return metrics
