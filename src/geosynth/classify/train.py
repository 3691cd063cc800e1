"""The training loop: synthetic, real or mixed data; selection and early stopping on VAL only;
checkpoints every epoch and exact resume.

The loop never sees TEST: :func:`train_classifier` takes the training data and VAL and returns the
model at its best VAL epoch. Evaluating TEST once afterwards is the caller's job
(:mod:`geosynth.classify.run`), so no choice made here can depend on it.

Determinism: each epoch re-seeds torch (augmentations, dropout, shuffling) and the mixing RNG
from ``(seed, epoch)``, and the checkpoint holds the optimizer and schedule, so a run resumed
from geosynth.artifacts.jsontext import json_text
after epoch e continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geosynth import faults
from geosynth.artifacts import atomic_path, load_tensors, load_torch_state, safetensors_bytes
from geosynth.artifacts.jsontext import json_text
from geosynth.classify.augment import (
    AUGMENT_PARAMS,
    mix_batch,
    native_train_transform,
    one_hot,
    train_transform,
)
from geosynth.classify.data import TransformedImages
from geosynth.classify.evaluation import evaluate, loader, unwrap_worker_errors
from geosynth.classify.model import Classifier
from geosynth.data import ImageDataset
from geosynth.errors import GeosynthError
from geosynth.limits import check_fields
from geosynth.progress import Track, no_track
from geosynth.runtime import accelerate_precision, pick_device

#: Learning rates by backbone and mode when ``lr`` is not given. CLIP's pretrained head and
#: adapters want small steps; timm's fresh linear head a larger one (``head_lr``).
DEFAULT_LR = {
    ("clip", "lora"): 1e-4,
    ("clip", "head"): 1e-3,
    ("clip", "full"): 1e-5,
    ("timm", "lora"): 1e-3,
    ("timm", "head"): 1e-3,
    ("timm", "full"): 1e-4,
}
SELECT_METRICS = ("top1", "macro_f1", "loss")


@dataclass
class TrainConfig:
    """Optimisation settings (recorded in the report)."""

    epochs: int = 20
    batch_size: int = 32
    lr: float | None = None
    head_lr: float | None = None
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    label_smoothing: float = 0.0
    patience: int | None = None
    select: str = "top1"
    real_weight: float = 0.5
    mixup: float = 0.0
    cutmix: float = 0.0
    augment: bool = True
    #: data-loader processes; None: 4 with a GPU, 0 on CPU (where the model competes with
    #: loader processes for the same cores)
    workers: int | None = None
    eval_batch_size: int = 64
    precision: str = "auto"
    device: str | None = None  # None: this process's GPU (accelerate), else the CPU

    def __post_init__(self) -> None:
        if self.workers is None:
            self.workers = 4 if torch.cuda.is_available() else 0
        if self.select not in SELECT_METRICS:
            raise GeosynthError(f"select={self.select!r}: expected {', '.join(SELECT_METRICS)}")
        check_fields(self)

    @property
    def loader_workers(self) -> int:
        """``workers`` as resolved when the config was made."""
        assert self.workers is not None
        return self.workers

    def resolved_lr(self, model: Classifier) -> tuple[float, float]:
        """(backbone lr, head lr): defaults by backbone and mode (see :data:`DEFAULT_LR`)."""
        kind = "clip" if model.spec.is_clip else "timm"
        lr = self.lr if self.lr is not None else DEFAULT_LR[(kind, model.spec.mode)]
        head_default = lr if kind == "clip" else max(lr, 1e-3)
        return lr, self.head_lr if self.head_lr is not None else head_default

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "augment_params": AUGMENT_PARAMS if self.augment else None}


@dataclass
class TrainResult:
    """What training decided, from VAL alone."""

    best_epoch: int
    best_val: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    resumed_from_epoch: int | None = None


def epoch_seed(seed: int, epoch: int) -> int:
    """One 63-bit seed per (run seed, epoch)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


def soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy against soft targets (mixup / cutmix), with optional label smoothing."""
    if smoothing:
        targets = targets * (1 - smoothing) + smoothing / targets.shape[-1]
    return -(targets * torch.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def _better(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


def _cosine_with_warmup(total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def make_accelerator(
    precision: str = "auto",
    cpu: bool = False,
    device: str | None = None,
    report_to: str | None = None,
    logging_dir: Path | None = None,
) -> Any:
    """An ``accelerate`` Accelerator: one process here, every GPU under ``accelerate launch``.
    ``auto`` means bf16 (or fp16) autocast on CUDA and float32 on CPU. ``report_to``
    (``tensorboard`` / ``wandb``) sets up accelerate's tracker, writing into ``logging_dir``."""
    from accelerate import Accelerator

    dev = pick_device(device)
    use_cpu = cpu or dev.type != "cuda"
    if not use_cpu and dev.index is not None and device is not None:
        torch.cuda.set_device(dev)  # accelerate takes the current CUDA device
    device_ = torch.device("cpu") if use_cpu else dev
    mixed = accelerate_precision(precision, device_, prefer_bf16=True)
    return Accelerator(
        mixed_precision=mixed,
        cpu=use_cpu,
        log_with=report_to,
        project_dir=str(logging_dir) if logging_dir is not None else None,
    )


def train_classifier(
    model: Classifier,
    train: ImageDataset,
    val: ImageDataset,
    cfg: TrainConfig,
    *,
    seed: int = 0,
    real: ImageDataset | None = None,
    state_dir: Path | None = None,
    resume: bool = False,
    accelerator: Any | None = None,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place and leave it at its best VAL epoch.

    ``train`` (and ``real``, mixed as ``real_weight * CE(real) + (1 - real_weight) * CE(train)``)
    must be labelled in the model's class order; so must ``val``. With ``state_dir``, the state
    after every epoch goes to ``state_dir/last/`` (:func:`save_state`) and ``resume`` continues
    from it.
    """
    acc = accelerator or make_accelerator(cfg.precision, device=cfg.device)
    k = len(model.class_names)
    lr, head_lr = cfg.resolved_lr(model)
    head = model.head_parameter_names()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise GeosynthError("the classifier has no trainable parameters")
    groups = [
        {"params": [p for n, p in trainable if n not in head], "lr": lr},
        {"params": [p for n, p in trainable if n in head], "lr": head_lr},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _cosine_with_warmup(total, max(1, int(cfg.warmup_fraction * total)))
    )
    model, optimizer = acc.prepare(model, optimizer)
    core: Classifier = acc.unwrap_model(model)

    start_epoch, history = 1, []
    best_metric: float | None = None
    best_epoch, best_val, best_state = 0, {}, None
    since_best, resumed_from = 0, None
    last_path = state_dir / "last" if state_dir else None
    if resume and last_path is not None and last_path.exists():
        ckpt = load_state(last_path)
        core.load_trainable_state(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        history = ckpt["history"]
        best_metric, best_epoch, best_val = (
            ckpt["best_metric"],
            ckpt["best_epoch"],
            ckpt["best_val"],
        )
        best_state, since_best = ckpt["best_state"], ckpt["since_best"]
        start_epoch = resumed_from = ckpt["epoch"] + 1
        log(f"resuming after epoch {ckpt['epoch']} from {last_path}")
        if ckpt.get("stopped_early"):
            start_epoch = cfg.epochs + 1

    if core.band_input is None:
        tfm: Callable[[Any], torch.Tensor] = train_transform(
            core.image_size, core.mean, core.std, core.interpolation, augment=cfg.augment
        )
    else:  # multi-band native data: standardised bands, geometric augmentations
        tfm = native_train_transform(core.image_size, core.interpolation, augment=cfg.augment)
    train_images = TransformedImages(train, tfm, core.band_input)
    real_images = TransformedImages(real, tfm, core.band_input) if real is not None else None
    stopped = False
    for epoch in range(start_epoch, cfg.epochs + 1):
        es = epoch_seed(seed, epoch)
        torch.manual_seed(es)
        mix_rng = np.random.default_rng(es)
        gen = torch.Generator().manual_seed(es)
        dl = acc.prepare_data_loader(
            loader(
                train_images,
                batch_size=cfg.batch_size,
                workers=cfg.loader_workers,
                shuffle=True,
                generator=gen,
            )
        )
        real_iter = None
        if real_images is not None:
            real_gen = torch.Generator().manual_seed(es + 1)
            real_dl = acc.prepare_data_loader(
                loader(
                    real_images,
                    batch_size=cfg.batch_size,
                    workers=cfg.loader_workers,
                    shuffle=True,
                    generator=real_gen,
                )
            )
            real_iter = _cycle(real_dl)
        model.train()
        seen, correct, loss_sum, t0 = 0, 0.0, 0.0, time.perf_counter()
        desc = f"seed {seed} epoch {epoch}/{cfg.epochs}"
        for pixels, y in track(unwrap_worker_errors(dl), len(dl), desc):
            targets = one_hot(y, k).to(pixels.device)
            pixels, targets = mix_batch(
                pixels, targets, mixup=cfg.mixup, cutmix=cfg.cutmix, rng=mix_rng
            )
            with acc.autocast():
                logits = model(pixels)
                loss = soft_cross_entropy(logits, targets, cfg.label_smoothing)
                if real_iter is not None:
                    rp, ry = next(real_iter)
                    rt = one_hot(ry, k).to(rp.device)
                    rp, rt = mix_batch(rp, rt, mixup=cfg.mixup, cutmix=cfg.cutmix, rng=mix_rng)
                    real_loss = soft_cross_entropy(model(rp), rt, cfg.label_smoothing)
                    loss = cfg.real_weight * real_loss + (1 - cfg.real_weight) * loss
            optimizer.zero_grad(set_to_none=True)
            acc.backward(loss)
            optimizer.step()
            schedule.step()
            seen += y.shape[0]
            correct += float((logits.argmax(-1) == targets.argmax(-1)).sum())
            loss_sum += float(loss.detach()) * y.shape[0]
        train_seconds = time.perf_counter() - t0
        val_metrics = evaluate(
            core, val, batch_size=cfg.eval_batch_size, workers=cfg.loader_workers, accelerator=acc
        )
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / max(seen, 1),
            "train_top1": correct / max(seen, 1),
            "val_top1": val_metrics["top1"],
            "val_macro_f1": val_metrics["macro_f1"],
            "val_loss": val_metrics["loss"],
            "lr": optimizer.param_groups[0]["lr"],
            "train_images_per_s": seen * acc.num_processes / max(train_seconds, 1e-9),
            "val_images_per_s": val_metrics["images_per_s"],
        }
        history.append(record)
        value = val_metrics[cfg.select]
        if _better(cfg.select, value, best_metric):
            best_metric, best_epoch, best_val, since_best = value, epoch, val_metrics, 0
            best_state = core.trainable_state()
        else:
            since_best += 1
        stopped = cfg.patience is not None and since_best >= cfg.patience
        log(
            f"{desc}: loss {record['train_loss']:.4f}, train top-1 {record['train_top1']:.3f}, "
            f"val top-1 {record['val_top1']:.3f}, val macro-F1 {record['val_macro_f1']:.3f}, "
            f"{record['train_images_per_s']:.1f} img/s" + (" (best)" if best_epoch == epoch else "")
        )
        if last_path is not None and acc.is_main_process:
            ckpt = {
                "epoch": epoch,
                "model": core.trainable_state(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "history": history,
                "best_metric": best_metric,
                "best_epoch": best_epoch,
                "best_val": best_val,
                "best_state": best_state,
                "since_best": since_best,
                "stopped_early": stopped,
            }
            save_state(last_path, ckpt)
            faults.stage("train-clf:epoch")
        acc.wait_for_everyone()
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
        if stopped:
            log(f"early stop: val {cfg.select} did not improve for {cfg.patience} epochs")
            break
    if best_state is None:
        raise GeosynthError("training ran no epoch (nothing to select)")
    core.load_trainable_state(best_state)
    core.eval()
    return TrainResult(
        best_epoch=best_epoch,
        best_val=best_val,
        history=history,
        stopped_early=stopped or bool(history and _stopped_in(history, cfg)),
        resumed_from_epoch=resumed_from,
    )


_TENSOR_KEYS = ("model", "best_state")
_TORCH_KEYS = ("optimizer", "schedule")


def save_state(path: Path, ckpt: dict[str, Any]) -> None:
    """An epoch's training state as a folder, written atomically and without pickle: the model
    tensors in ``tensors.safetensors`` (``model/...`` and ``best_state/...``), the optimizer and
    schedule (torch's own state dicts: tensors, numbers, lists) in ``optim.pt``, read back with
    ``weights_only=True``, and everything else in ``state.json``."""
    tensors = {
        f"{key}/{name}": t.detach().cpu().contiguous()
        for key in _TENSOR_KEYS
        if ckpt.get(key) is not None
        for name, t in ckpt[key].items()
    }
    rest = {k: v for k, v in ckpt.items() if k not in _TENSOR_KEYS + _TORCH_KEYS}
    rest["has_best_state"] = ckpt.get("best_state") is not None
    with atomic_path(path) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "tensors.safetensors").write_bytes(safetensors_bytes(tensors, {}))
        torch.save({k: ckpt[k] for k in _TORCH_KEYS}, tmp / "optim.pt")
        (tmp / "state.json").write_text(json_text(rest, indent=1) + "\n")


def load_state(path: Path) -> dict[str, Any]:
    """Inverse of :func:`save_state`; a damaged or foreign file is a one-line error."""
    try:
        rest = json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise GeosynthError(
            f"{path / 'state.json'}: not a readable training state ({exc})"
        ) from None
    tensors = load_tensors(path / "tensors.safetensors").tensors
    torch_state = load_torch_state(path / "optim.pt")
    if not isinstance(torch_state, dict) or set(torch_state) != set(_TORCH_KEYS):
        raise GeosynthError(f"{path / 'optim.pt'}: expected the optimizer and schedule states")
    ckpt = {**rest, **torch_state}
    for key in _TENSOR_KEYS:
        prefix = f"{key}/"
        part = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        ckpt[key] = part if (key == "model" or rest.get("has_best_state")) else None
    return ckpt


def _stopped_in(history: list[dict[str, Any]], cfg: TrainConfig) -> bool:
    """A resumed run that had already stopped early ran fewer epochs than configured."""
    return history[-1]["epoch"] < cfg.epochs


def _cycle(dl: Any) -> Any:
    """Endless iteration over a (small, real) loader; reshuffles on each pass."""
    while True:
        yield from unwrap_worker_errors(dl)
