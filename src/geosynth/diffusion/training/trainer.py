"""The fine-tuning loop: accelerate for devices, data parallelism and mixed precision; a
stateless sample order and per-step random streams, so a resumed run repeats nothing and skips
nothing and ends with the same weights as an uninterrupted one.

Sample order: the training set is walked as one endless stream of per-epoch permutations (seeded
by seed and epoch). Micro-batch ``g`` of process ``r`` of ``W`` is global micro-batch
``q = g * W + r`` and takes stream positions ``[q * B, (q + 1) * B)``. Everything random within
a micro-batch (flip, latent sample, timesteps, noise, dropout) comes from a generator seeded by
(seed, q), so ``W`` processes with ``A`` accumulation steps draw exactly what one process with
``W * A`` accumulation steps draws. A checkpoint therefore only needs the trainable weights, the
optimiser and LR-scheduler states and the step.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import zlib
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from geosynth import faults
from geosynth.artifacts import atomic_path, load_torch_state, settings_diff
from geosynth.artifacts.jsontext import json_text
from geosynth.diffusion.family import ModelFamily, PromptEmbeds, family_of
from geosynth.diffusion.training.guard import check_step
from geosynth.diffusion.training.objective import loss_weights, target, training_noise
from geosynth.diffusion.training.optim import check_optimizer, make_optimizer
from geosynth.diffusion.training.recipe import Recipe
from geosynth.diffusion.training.resume import recipe_record
from geosynth.diffusion.training.train_data import TrainingSet
from geosynth.diffusion.training.trainable import (
    load_trainable_state,
    parameter_groups,
    trainable_state,
)
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track
from geosynth.runtime import accelerate_precision, check_report_to, pick_device

StepHook = Callable[["StepInfo"], None]


@dataclass
class StepInfo:
    """One optimiser step, as the progress display and the loss log see it."""

    step: int
    total: int
    epoch: float
    loss: float
    lr: float
    images_per_s: float


@dataclass
class TrainResult:
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0

    @property
    def final_loss(self) -> float:
        """Mean loss over the last epoch's worth of steps (single steps are noisy)."""
        if not self.history:
            return float("nan")
        last_epoch = self.history[-1]["epoch"] - 1.0
        tail = [h["loss"] for h in self.history if h["epoch"] > last_epoch]
        return float(sum(tail) / len(tail))


def _seed(*parts: int) -> int:
    return zlib.crc32(json_text(parts).encode())


class SampleStream:
    """Stream position -> training-set index, through seeded per-epoch permutations."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self._perms: dict[int, torch.Tensor] = {}

    def __getitem__(self, pos: int) -> int:
        epoch, i = divmod(pos, self.n)
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(_seed(self.seed, epoch, 7))
            self._perms = {epoch: torch.randperm(self.n, generator=g)}
        return int(self._perms[epoch][i])


def total_steps(recipe: Recipe, n: int, world: int) -> int:
    """Optimiser steps for ``recipe.epochs`` passes over ``n`` examples (or ``max_steps``)."""
    if recipe.max_steps is not None:
        return int(recipe.max_steps)
    per_step = recipe.batch_size * world * recipe.grad_accum
    return max(1, math.ceil(recipe.epochs * n / per_step))


def _mixed_precision(recipe: Recipe, device: torch.device) -> str:
    """accelerate's name for the recipe's precision on ``device`` (runtime's policy)."""
    return accelerate_precision(recipe.mixed_precision, device)


def _encode_text(family: ModelFamily, encoders, prompts: list[str], device) -> PromptEmbeds:
    """What the UNet is conditioned on for ``prompts`` (the family's prompt encoding: SD's last
    hidden states; SDXL's two encoders' penultimate states and the pooled embedding)."""
    return family.encode_prompts(encoders, prompts, device)


def latest_checkpoint(work: Path) -> Path | None:
    ckpts = sorted((work / "checkpoints").glob("step-*"))
    return ckpts[-1] if ckpts else None


def train(
    pipe,
    data: TrainingSet,
    recipe: Recipe,
    scheduler,
    work: Path,
    *,
    resume: bool = False,
    track: Track = no_track,
    on_step: StepHook | None = None,
    device: str | None = None,
    report_to: str | None = None,
    logging_dir: Path | None = None,
    cache_text: bool = True,
    cache_latents: bool = True,
    channels_last: bool | None = None,
    compile_unet: bool = False,
    family: ModelFamily | None = None,
) -> TrainResult:
    """Run the loop; checkpoints go to ``work/checkpoints/step-<n>/``. ``device``: None for this
    process's GPU (its ``LOCAL_RANK`` under ``accelerate launch``) or the CPU, ``cpu`` to force
    the CPU, ``cuda:N`` for one GPU of a single process. ``report_to``: ``tensorboard`` or
    ``wandb`` (accelerate's trackers) logs loss and learning rate per step into
    ``logging_dir``.

    Throughput switches (they change speed, not what is learnt; docs/finetune.md, "Throughput"):
    ``cache_text`` encodes each distinct prompt once when the text encoder does not train (no
    LoRA, no full training, no learned token); False runs the frozen encoder every step.
    ``cache_latents``: False encodes every batch with the (frozen) VAE encoder instead of
    sampling the posteriors cached in ``data`` (which then needs ``data.pixels``).
    ``channels_last`` stores the UNet (and the VAE when it runs every step) channels-last;
    None: on CUDA only. ``compile_unet`` runs the UNet through ``torch.compile``.

    ``family`` (default: the pipeline's) encodes prompts and conditions the UNet; nothing here
    depends on which family it is."""
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler

    dev = pick_device(device)
    cuda = dev.type == "cuda"
    check_optimizer(recipe.optimizer, dev)
    if cuda and dev.index is not None:
        torch.cuda.set_device(dev)  # accelerate takes the current CUDA device
    mp = _mixed_precision(recipe, dev)
    # Accumulation is done by hand (micro-batches below), so accelerate is told 1.
    check_report_to(report_to)
    acc = Accelerator(
        mixed_precision=mp,
        gradient_accumulation_steps=1,
        cpu=not cuda,
        log_with=report_to,
        project_dir=str(logging_dir) if logging_dir is not None else None,
    )
    device, world, rank = acc.device, acc.num_processes, acc.process_index
    if report_to:
        acc.init_trackers("geosynth-finetune", config=recipe.tracker_config())
    half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mp, torch.float32)

    fam = family or family_of(pipe)
    unet, vae = pipe.unet, pipe.vae
    tes = [getattr(pipe, name) for name in fam.text_encoders]
    # Frozen weights may live in half precision; trainable ones (and LoRA factors) stay float32.
    vae_mode = recipe.vae_encoder if recipe.vae_encoder != "frozen" else recipe.vae_decoder
    modes = [(unet, recipe.unet), *((te, recipe.text_encoder) for te in tes), (vae, vae_mode)]
    for module, mode in modes:
        module.to(device)
        # Frozen weights and LoRA bases may live in half precision; the VAE keeps float32 when
        # part of it trains, since a VAE LoRA is merged into (and saved with) its weights, and
        # where its family cannot run it in ``half`` (SDXL's overflows in float16).
        if half != torch.float32 and (mode == "frozen" or (mode == "lora" and module is not vae)):
            module.to(fam.vae_dtype(vae, half) if module is vae else half)
        for p in module.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    if recipe.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if recipe.text_encoder != "frozen":
            for te in tes:
                te.gradient_checkpointing_enable()
    train_te = any(p.requires_grad for te in tes for p in te.parameters())
    train_unet = any(p.requires_grad for p in unet.parameters())
    train_vae = any(p.requires_grad for p in vae.parameters())
    train_encoder = recipe.vae_encoder != "frozen"
    # A training encoder changes every step, so its posteriors cannot be cached.
    encode_now = train_encoder or not cache_latents
    if encode_now and data.pixels is None:
        raise GeosynthError(
            "cache_latents=False needs the training images' pixels (build_training_set with "
            "keep_pixels=True)"
        )
    # from_pretrained returns eval-mode modules; training mode enables dropout and makes
    # transformers' gradient checkpointing take effect.
    for module, trains in ((unet, train_unet), *((te, train_te) for te in tes), (vae, train_vae)):
        module.train(trains)
    if channels_last is None:
        channels_last = cuda
    # NHWC convolutions are faster on tensor-core GPUs; the VAE only matters when it runs every
    # step (a frozen encoder's posteriors are cached before training).
    per_step = [unet, *((vae,) if encode_now or train_vae else ())]
    layout = torch.channels_last if channels_last else torch.contiguous_format
    for module in per_step:
        module.to(memory_format=layout)

    steps = total_steps(recipe, len(data), world)
    optimizer = make_optimizer(recipe.optimizer, parameter_groups(pipe, recipe), recipe.lr)
    lr_sched = get_scheduler(
        recipe.lr_schedule,
        optimizer,
        num_warmup_steps=int(recipe.warmup_ratio * steps),
        num_training_steps=steps,
    )
    wrapped = {"unet": acc.prepare_model(unet) if train_unet else unet}
    tokenizers = [getattr(pipe, name) for name in fam.tokenizers]
    # The encoders as the loop calls them: DDP-wrapped when they train.
    encoders = [
        (acc.prepare_model(te) if train_te else te, tok)
        for te, tok in zip(tes, tokenizers, strict=True)
    ]
    plain_encoders = list(zip(tes, tokenizers, strict=True))
    optimizer = acc.prepare_optimizer(optimizer)
    # The compiled wrapper only runs the forward; checkpoints and exports read ``pipe.unet``
    # (the same parameters), so no ``_orig_mod.`` prefix reaches a saved file.
    unet_call = torch.compile(wrapped["unet"]) if compile_unet else wrapped["unet"]

    result = TrainResult(steps=steps)
    start = 0
    ckpt = latest_checkpoint(work) if resume else None
    if ckpt is not None:
        from safetensors.torch import load_file

        load_trainable_state(pipe, load_file(str(ckpt / "trainable.safetensors")))
        blob = load_torch_state(ckpt / "optim.pt")
        optimizer.load_state_dict(blob["optimizer"])
        lr_sched.load_state_dict(blob["lr_scheduler"])
        if acc.scaler is not None and "scaler" in blob:  # fp16 loss scale, for an exact resume
            acc.scaler.load_state_dict(blob["scaler"])
        state = json.loads((ckpt / "state.json").read_text())
        new = recipe_record(recipe.to_dict())
        if state.get("recipe") != new:  # finetune checks before loading; this is the last word
            raise GeosynthError(
                f"resume=True: {ckpt} was written with other settings "
                f"({settings_diff(state.get('recipe') or {}, new)})"
            )
        start, result.history = int(state["step"]), list(state["history"])
        result.resumed_from = start

    # Text features are fixed when the text encoder does not train (``train_te`` covers LoRA,
    # full training and a learned token): encode each distinct prompt once, under the same
    # autocast as the per-step path, and index the table per micro-batch.
    text_rows: torch.Tensor | None = None
    text_table: PromptEmbeds | None = None
    if cache_text and not train_te:
        distinct = sorted(set(data.prompts))
        row_of = {p: i for i, p in enumerate(distinct)}
        text_rows = torch.tensor([row_of[p] for p in data.prompts])
        with torch.no_grad(), acc.autocast():
            text_table = PromptEmbeds.cat(
                [_encode_text(fam, plain_encoders, [p], device) for p in distinct]
            )

    stream = SampleStream(len(data), recipe.seed)
    B = recipe.batch_size
    tick = time.perf_counter()
    for step in track(range(start, steps), steps - start, "finetune"):
        step_losses = []
        for micro in range(recipe.grad_accum):
            g = step * recipe.grad_accum + micro
            # The global micro-batch index names the stream slice and the random draws, so W
            # processes with accumulation A draw what one process with accumulation W * A draws.
            q = g * world + rank
            gen = torch.Generator().manual_seed(_seed(recipe.seed, q, 0))
            torch.manual_seed(_seed(recipe.seed, q, 0, 1))  # dropout
            pos = q * B
            idx = torch.tensor([stream[pos + i] for i in range(B)])
            flip = (
                torch.randint(0, data.flips, (B,), generator=gen)
                if data.flips > 1
                else torch.zeros(B, dtype=torch.long)
            )
            mean = data.latent_mean[flip, idx]
            std = data.latent_std[flip, idx]
            # Drawn on the CPU generator, then moved: results do not depend on the device.
            sample = torch.randn(mean.shape, generator=gen)
            if encode_now:
                # Encode the batch now: the same reparameterised draw the cache would have used.
                pixels = _batch_pixels(data, idx, flip).to(device, vae.dtype)
                with nullcontext() if train_encoder else torch.no_grad():
                    posterior = vae.encode(pixels).latent_dist
                z = posterior.mean + posterior.std * sample.to(device, posterior.mean.dtype)
                latents = (z * vae.config.scaling_factor).detach().float().cpu()
            else:
                latents = mean + std * sample
            noise = training_noise(latents, recipe.offset_std, gen).to(device)
            latents = latents.to(device)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (B,), generator=gen)
            t = t.to(device)
            noisy = scheduler.add_noise(latents, noise, t)
            want = target(scheduler, latents, noise, t)
            extra = data.unet_inputs(idx, flip, gen, device)
            sizes = None if data.sizes is None else data.sizes[flip, idx].to(device)
            prompts = [data.prompts[int(i)] for i in idx]
            sync = micro == recipe.grad_accum - 1
            ctx = acc.no_sync(wrapped["unet"]) if (not sync and train_unet) else nullcontext()
            with ctx, acc.autocast():
                if text_table is not None and text_rows is not None:
                    cond = text_table.rows(text_rows[idx].to(device))
                elif train_te:
                    cond = _encode_text(fam, encoders, prompts, device)
                else:
                    with torch.no_grad():
                        cond = _encode_text(fam, plain_encoders, prompts, device)
                noisy = noisy.to(half).contiguous(memory_format=layout)
                conditioning = fam.unet_conditioning(cond, sizes, half)
                pred = unet_call(noisy, t, **conditioning, **extra).sample
                per = F.mse_loss(pred.float(), want.float(), reduction="none").mean((1, 2, 3))
                loss = (per * loss_weights(scheduler, t, recipe.snr_gamma)).mean()
                if train_encoder:
                    loss = loss + _autoencoder_loss(vae, pixels, z, posterior)
                elif train_vae:
                    loss = loss + _decoder_loss(vae, data, idx, flip, latents, device)
            acc.backward(loss / recipe.grad_accum)
            step_losses.append(loss.detach())
        if train_vae and world > 1:
            # The decoder is trained outside DDP's forward, so average its gradients by hand.
            for p in vae.parameters():
                if p.grad is not None:
                    p.grad = acc.reduce(p.grad, reduction="mean")
        params = [p for grp in optimizer.param_groups for p in grp["params"]]
        norm = acc.clip_grad_norm_(params, 1.0)
        # the same numbers on every rank (gathered loss, all-reduced gradients): all stop together
        mean_loss = acc.gather(torch.stack(step_losses).mean().reshape(1)).mean().item()
        done = step + 1
        scaled = acc.scaler is not None  # fp16 loss scaling skips non-finite gradients itself
        grad = None if scaled or norm is None else float(norm)
        check_step(mean_loss, grad, done, steps, lambda: latest_checkpoint(work))
        optimizer.step()
        lr_sched.step()
        optimizer.zero_grad(set_to_none=True)
        now = time.perf_counter()
        info = StepInfo(
            step=done,
            total=steps,
            epoch=done * B * world * recipe.grad_accum / len(data),
            loss=mean_loss,
            lr=lr_sched.get_last_lr()[0],
            images_per_s=B * world * recipe.grad_accum / max(now - tick, 1e-9),
        )
        tick = now
        result.history.append(
            {"step": done, "epoch": round(info.epoch, 6), "loss": mean_loss, "lr": info.lr}
        )
        if done % recipe.checkpoint_every == 0 and done < steps:
            if acc.is_main_process:
                save_checkpoint(pipe, optimizer, lr_sched, result, done, work, recipe, acc.scaler)
                faults.stage("finetune:checkpoint")
            acc.wait_for_everyone()
        if on_step is not None:
            on_step(info)
        if report_to:
            acc.log({"loss": mean_loss, "lr": float(info.lr), "epoch": info.epoch}, step=done)
    acc.wait_for_everyone()
    if report_to:
        acc.end_training()
    # Back to the default layout: safetensors saves only contiguous tensors (exports of fully
    # trained components), and callers expect the modules as they came.
    for module in per_step:
        module.to(memory_format=torch.contiguous_format)
    return result


#: Weight of the KL term when the encoder trains: that of the LDM / SD autoencoders (kl-f8).
ENCODER_KL_WEIGHT = 1e-6


def _batch_pixels(data: TrainingSet, idx, flip) -> torch.Tensor:
    """The batch's images in [-1, 1], mirrored where ``flip`` says so."""
    assert data.pixels is not None, "pixels are kept when the decoder trains"
    pixels = data.pixels[idx]
    return torch.where(flip.view(-1, 1, 1, 1) == 1, torch.flip(pixels, dims=[3]), pixels)


def _decoder_loss(vae, data: TrainingSet, idx, flip, latents, device) -> torch.Tensor:
    """Reconstruction MSE of the decoder on this batch's latent samples (seed 003's VAE tuning:
    the diffusion loss never reaches the decoder)."""
    pixels = _batch_pixels(data, idx, flip)
    decoded = vae.decode(latents / vae.config.scaling_factor).sample
    return F.mse_loss(decoded.float(), pixels.to(device).float())


def _autoencoder_loss(vae, pixels: torch.Tensor, z: torch.Tensor, posterior) -> torch.Tensor:
    """When the encoder trains (seed 003 compares VAE tuning): reconstruction MSE through the
    decoder (trained or frozen) plus the KL term that keeps the posterior near N(0, I). The
    diffusion loss sees the latents detached, so it cannot move the encoder to make its own task
    easier (e.g. by shrinking the latents)."""
    decoded = vae.decode(z).sample
    recon = F.mse_loss(decoded.float(), pixels.float())
    return recon + ENCODER_KL_WEIGHT * posterior.kl().float().mean()


def save_checkpoint(
    pipe,
    optimizer,
    lr_sched,
    result: TrainResult,
    step: int,
    work: Path,
    recipe: Recipe,
    scaler=None,
) -> None:
    """``work/checkpoints/step-<n>/``, written atomically; keeps the newest ``checkpoints_kept``."""
    from safetensors.torch import save_file

    root = work / "checkpoints"
    with atomic_path(root / f"step-{step:08d}") as tmp:
        tmp.mkdir(parents=True)
        save_file(trainable_state(pipe), str(tmp / "trainable.safetensors"))
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "lr_scheduler": lr_sched.state_dict(),
                **({"scaler": scaler.state_dict()} if scaler is not None else {}),
            },
            tmp / "optim.pt",
        )
        state = {"step": step, "history": result.history, "recipe": recipe.to_dict()}
        (tmp / "state.json").write_text(json_text(state))
    for old in sorted(root.glob("step-*"))[: -max(1, recipe.checkpoints_kept)]:
        shutil.rmtree(old, ignore_errors=True)
