"""Training and evaluation of segmentation models: real, synthetic or mixed pairs; selection and
early stopping on VAL only; a checkpoint every epoch and exact resume.

As in ``train-clf`` (:mod:`geosynth.classify.train`, whose accelerator, seeding and checkpoint
format this reuses): :func:`train_segmenter` never receives TEST, each epoch re-seeds from
``(seed, epoch)`` (data order, augmentation), and ``state_dir/last/`` holds the weights
(safetensors), optimizer and schedule, so a resumed run continues as the uninterrupted one.

Loss: pixel cross-entropy over labelled pixels (ignored pixels, -1, add nothing); with ``real``,
``real_weight * CE(real) + (1 - real_weight) * CE(TRAIN)``. Augmentation (``augment``): random
horizontal and vertical flips and, for square chips, 90-degree rotations, the same for image and
mask (aerial and satellite views have no "up").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from geosynth import faults
from geosynth.classify.evaluation import loader, unwrap_worker_errors
from geosynth.classify.train import (
    TrainResult,
    epoch_seed,
    load_state,
    make_accelerator,
    save_state,
)
from geosynth.data.pairdata import PairedDataset
from geosynth.errors import GeosynthError
from geosynth.limits import check_fields
from geosynth.progress import Track, no_track
from geosynth.segment.data import PairTensors, collate
from geosynth.segment.metrics import confusion, segmentation_metrics
from geosynth.segment.model import Segmenter

SELECT_METRICS = ("miou", "loss")
AUGMENT = {"hflip": 0.5, "vflip": 0.5, "rot90": "uniform over 0, 90, 180, 270 (square chips)"}


@dataclass
class SegTrainConfig:
    """Optimisation settings (recorded in the report)."""

    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    patience: int | None = None
    select: str = "miou"
    real_weight: float = 0.5
    augment: bool = True
    workers: int | None = None  # None: 4 with a GPU, 0 on CPU
    eval_batch_size: int = 16
    precision: str = "auto"
    device: str | None = None

    def __post_init__(self) -> None:
        if self.workers is None:
            self.workers = 4 if torch.cuda.is_available() else 0
        if self.select not in SELECT_METRICS:
            raise GeosynthError(f"select={self.select!r}: expected {', '.join(SELECT_METRICS)}")
        check_fields(self)  # every number against geosynth.limits (NaN and ranges)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "augment_params": AUGMENT if self.augment else None}


def tensors(model: Segmenter, ds: PairedDataset, remap: np.ndarray, *, train: bool) -> PairTensors:
    return PairTensors(
        ds,
        remap,
        mean=model.mean,
        std=model.std,
        bands=model.band_input,
        resolution=model.spec.resolution,
        resize_mask=train,
    )


def augment_batch(
    pixels: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random flips / rotation for each image and its mask."""
    square = pixels.shape[-1] == pixels.shape[-2]
    draws = torch.rand(pixels.shape[0], 3, generator=generator)
    out_p, out_m = [], []
    for p, m, (h, v, r) in zip(pixels, masks, draws.tolist(), strict=True):
        if h < 0.5:
            p, m = p.flip(-1), m.flip(-1)
        if v < 0.5:
            p, m = p.flip(-2), m.flip(-2)
        if square:
            k = int(r * 4)
            p, m = torch.rot90(p, k, (-2, -1)), torch.rot90(m, k, (-2, -1))
        out_p.append(p)
        out_m.append(m)
    return torch.stack(out_p), torch.stack(out_m)


def pixel_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled pixels (0 for a batch with none)."""
    if not bool((masks >= 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), masks, ignore_index=-1)


@torch.no_grad()
def evaluate_segmenter(
    model: Segmenter,
    data: PairTensors,
    *,
    batch_size: int = 16,
    workers: int = 0,
    accelerator: Any | None = None,
    track: Track = no_track,
    description: str = "evaluating",
    on_batch: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> dict[str, Any]:
    """Segmentation metrics of ``model`` on ``data``: logits scaled up (bilinear) to each mask's
    own size, argmax, a confusion matrix over labelled pixels; plus the mean pixel loss and
    images/s. ``on_batch(pred, target)`` sees every prediction (H x W) with its mask.
    ``accelerator`` gives the device only (see the comment on sharding)."""
    was_training = model.training
    model.eval()
    # Not sharded over processes: a sharded loader pads its last batch with repeated pairs,
    # which would count their pixels twice; every process scores the whole split instead.
    dl = loader(data, batch_size=batch_size, workers=workers)
    dl.collate_fn = collate
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    k = len(model.class_names)
    cm = np.zeros((k, k), np.int64)
    loss_sum, loss_n, seen = 0.0, 0, 0
    t0 = time.perf_counter()
    for pixels, masks in track(unwrap_worker_errors(dl), len(dl), description):
        logits = model(pixels.to(device)).float()
        for lg, mask in zip(logits, masks, strict=True):
            mask = mask.to(device)
            if tuple(lg.shape[-2:]) != tuple(mask.shape):
                lg = F.interpolate(lg[None], size=tuple(mask.shape), mode="bilinear")[0]
            pred = lg.argmax(0)
            labelled = int((mask >= 0).sum())
            if labelled:
                loss_sum += float(F.cross_entropy(lg[None], mask[None], ignore_index=-1)) * labelled
                loss_n += labelled
            cm += confusion(pred, mask, k)
            if on_batch is not None:
                on_batch(pred.cpu(), mask.cpu())
            seen += 1
    seconds = time.perf_counter() - t0
    model.train(was_training)
    metrics = segmentation_metrics(cm, model.class_names)
    metrics["loss"] = loss_sum / loss_n if loss_n else None
    metrics["images_per_s"] = seen / max(seconds, 1e-9)
    return metrics


def _schedule(total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min((step - warmup) / max(1, total - warmup), 1.0)))

    return factor


def _train_loader(
    data: PairTensors, batch_size: int, workers: int, generator: torch.Generator
) -> torch.utils.data.DataLoader:
    """Shuffled batches; a last batch of one pair is left out of the epoch (shuffling puts that
    pair in a full batch in other epochs): BatchNorm cannot train on one sample whose encoder
    features shrink to 1 x 1 (32 px chips)."""
    return torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
        num_workers=workers,
        collate_fn=collate,
        drop_last=len(data) > 1 and len(data) % batch_size == 1,
    )


def _cycle(dl: Any) -> Iterator[Any]:
    while True:
        yield from unwrap_worker_errors(dl)


def _better(select: str, value: float | None, best: float | None) -> bool:
    if value is None:
        return best is None
    if best is None:
        return True
    return value < best if select == "loss" else value > best


def train_segmenter(
    model: Segmenter,
    train: PairTensors,
    val: PairTensors,
    cfg: SegTrainConfig,
    *,
    seed: int = 0,
    real: PairTensors | None = None,
    state_dir: Path | None = None,
    resume: bool = False,
    accelerator: Any | None = None,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> TrainResult:
    """Train ``model`` in place and leave it at its best VAL epoch (module docstring)."""
    acc = accelerator or make_accelerator(cfg.precision, device=cfg.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = max(1, len(train) // cfg.batch_size if len(train) % cfg.batch_size == 1 else
                math.ceil(len(train) / cfg.batch_size)) * cfg.epochs  # fmt: skip
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(total, max(1, int(cfg.warmup_fraction * total)))
    )
    model, optimizer = acc.prepare(model, optimizer)
    core: Segmenter = acc.unwrap_model(model)
    start, history, resumed_from = 1, [], None
    best_metric: float | None = None
    best_epoch, best_val, best_state, since_best, stopped = 0, {}, None, 0, False
    last = state_dir / "last" if state_dir else None
    if resume and last is not None and last.exists():
        ckpt = load_state(last)
        core.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        history, best_metric, best_epoch = ckpt["history"], ckpt["best_metric"], ckpt["best_epoch"]
        best_val, best_state, since_best = ckpt["best_val"], ckpt["best_state"], ckpt["since_best"]
        start = resumed_from = ckpt["epoch"] + 1
        log(f"resuming after epoch {ckpt['epoch']} from {last}")
        if ckpt.get("stopped_early"):
            start = cfg.epochs + 1
    workers = int(cfg.workers or 0)
    for epoch in range(start, cfg.epochs + 1):
        es = epoch_seed(seed, epoch)
        torch.manual_seed(es)
        gen = torch.Generator().manual_seed(es)
        aug = torch.Generator().manual_seed(es + 2)
        dl = _train_loader(train, cfg.batch_size, workers, gen)
        dl = acc.prepare_data_loader(dl)
        real_iter = None
        if real is not None:
            rdl = _train_loader(
                real, cfg.batch_size, workers, torch.Generator().manual_seed(es + 1)
            )
            real_iter = _cycle(acc.prepare_data_loader(rdl))
        model.train()
        seen, loss_sum, t0 = 0, 0.0, time.perf_counter()
        desc = f"seed {seed} epoch {epoch}/{cfg.epochs}"
        for pixels, masks in track(unwrap_worker_errors(dl), len(dl), desc):
            masks = torch.stack(masks).to(pixels.device)
            if cfg.augment:
                pixels, masks = augment_batch(pixels, masks, aug)
            with acc.autocast():
                loss = pixel_loss(model(pixels), masks)
                if real_iter is not None:
                    rp, rm = next(real_iter)
                    rm = torch.stack(rm).to(rp.device)
                    if cfg.augment:
                        rp, rm = augment_batch(rp, rm, aug)
                    real_loss = pixel_loss(model(rp), rm)
                    loss = cfg.real_weight * real_loss + (1 - cfg.real_weight) * loss
            optimizer.zero_grad(set_to_none=True)
            acc.backward(loss)
            optimizer.step()
            schedule.step()
            seen += pixels.shape[0]
            loss_sum += float(loss.detach()) * pixels.shape[0]
        train_seconds = time.perf_counter() - t0
        v = evaluate_segmenter(core, val, batch_size=cfg.eval_batch_size, workers=workers,
                               accelerator=acc)  # fmt: skip
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / max(seen, 1),
            "val_miou": v["miou"],
            "val_pixel_accuracy": v["pixel_accuracy"],
            "val_loss": v["loss"],
            "lr": optimizer.param_groups[0]["lr"],
            "train_images_per_s": seen * acc.num_processes / max(train_seconds, 1e-9),
        }
        history.append(record)
        if _better(cfg.select, v[cfg.select], best_metric) or best_state is None:
            best_metric, best_epoch, best_val, since_best = v[cfg.select], epoch, v, 0
            best_state = {k: t.detach().clone() for k, t in core.state_dict().items()}
        else:
            since_best += 1
        stopped = cfg.patience is not None and since_best >= cfg.patience
        miou = "n/a" if v["miou"] is None else f"{v['miou']:.4f}"
        log(f"{desc}: loss {record['train_loss']:.4f}, val mIoU {miou}"
            + (" (best)" if best_epoch == epoch else ""))  # fmt: skip
        if last is not None and acc.is_main_process:
            save_state(last, {
                "epoch": epoch, "model": core.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "history": history,
                "best_metric": best_metric, "best_epoch": best_epoch, "best_val": best_val,
                "best_state": best_state, "since_best": since_best, "stopped_early": stopped,
            })  # fmt: skip
            faults.stage("train-seg:epoch")
        acc.wait_for_everyone()
        if stopped:
            log(f"early stop: val {cfg.select} did not improve for {cfg.patience} epochs")
            break
    if best_state is None:
        raise GeosynthError("training ran no epoch (nothing to select)")
    core.load_state_dict(best_state)
    core.eval()
    return TrainResult(
        best_epoch=best_epoch,
        best_val=best_val,
        history=history,
        stopped_early=stopped or bool(history and history[-1]["epoch"] < cfg.epochs),
        resumed_from_epoch=resumed_from,
    )
