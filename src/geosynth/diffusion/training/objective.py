"""The denoising objective used for fine-tuning: training noise (with offset noise), the
prediction target (epsilon or v), min-SNR loss weights and the zero-terminal-SNR schedule.

Offset noise (seed 000, section 4.1, Eq. 3) adds a channel-wise constant to the Gaussian noise:
``noise = eps0 + s * eps_c`` with ``eps0 ~ N(0, I)`` of shape (B, C, H, W) and ``eps_c ~ N(0, 1)``
of shape (B, C, 1, 1). The same ``noise`` both noises the latents and is the epsilon target. The
per-channel spatial mean of ``noise`` then has variance ``1/(H*W) + s^2``: the offset dominates the
tiny ``1/(H*W)`` of plain noise (1/4096 at 512 px), which is what stops the model from trusting the
leaked channel means.

How the paper's ``lambda`` maps to ``s`` is open. Eq. 3 writes ``eps_c ~ N(0, lambda Sigma_c)``,
literally a variance (``s = sqrt(lambda)``: 0.224 for lambda = 0.05); the paper's values (0.05
EuroSAT, 0.07 PatternNet, 0.035 RESISC45) are in the range used with diffusers' ``noise_offset``
and Guttenberg's offset-noise post, where the value multiplies ``eps_c`` (``s = lambda``). The
DataDream training script the paper builds on trains with plain Gaussian noise, so it does not
settle the question. Both readings are offered (:data:`OFFSET_CONVENTIONS`, :func:`offset_std`);
the default is the standard-deviation one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from geosynth.diffusion.types import Scheduler
from geosynth.errors import GeosynthError

PREDICTION_TYPES = ("epsilon", "v_prediction")
#: How an offset-noise value is read: ``std`` (s = value; diffusers' ``noise_offset``, Guttenberg)
#: or ``variance`` (s = sqrt(value); seed 000's Eq. 3 taken literally).
OFFSET_CONVENTIONS = ("std", "variance")


def offset_std(value: float, convention: str = "std") -> float:
    """The standard deviation ``s`` of the channel offset for an offset-noise ``value``."""
    if convention not in OFFSET_CONVENTIONS:
        raise GeosynthError(
            f"offset_noise_convention={convention!r}: expected one of {OFFSET_CONVENTIONS}"
        )
    return float(value) if convention == "std" else float(value) ** 0.5


def training_noise(
    latents: torch.Tensor, offset: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``eps0 + offset * eps_c``; ``eps_c`` is constant over each channel of each sample and
    ``offset`` is its standard deviation (see :func:`offset_std`)."""
    noise = torch.randn(
        latents.shape, generator=generator, device=latents.device, dtype=latents.dtype
    )
    if offset:
        b, c = latents.shape[:2]
        shift = torch.randn(
            (b, c, 1, 1), generator=generator, device=latents.device, dtype=latents.dtype
        )
        noise = noise + offset * shift
    return noise


def training_scheduler(
    model: str | Mapping[str, Any], *, prediction_type: str | None, zero_terminal_snr: bool
):
    """The DDPM training schedule of ``model``'s scheduler config (or of a loaded scheduler's
    config, as a mapping) and the scheduler keys a sampler needs for the result: the prediction
    type (None keeps the base model's, e.g. v-prediction for SD 2.1 at 768 px) and, optionally,
    betas rescaled to zero terminal SNR (Lin et al. 2024)."""
    from diffusers import DDPMScheduler

    from geosynth.runtime import load_with

    if isinstance(model, Mapping):
        config = dict(model)
    else:
        config = dict(
            load_with(
                lambda ref: DDPMScheduler.load_config(ref, subfolder="scheduler"), model, "model"
            )
        )
    base_type = config.get("prediction_type", "epsilon")
    kind = prediction_type or base_type
    if zero_terminal_snr and kind != "v_prediction":
        raise GeosynthError(
            f"zero_terminal_snr=True needs prediction_type='v_prediction' (got {kind!r}; epsilon "
            "cannot be predicted from pure noise at the last timestep)"
        )
    config.update(prediction_type=kind, rescale_betas_zero_snr=zero_terminal_snr)
    if zero_terminal_snr:
        # Zero terminal SNR only makes sense when sampling starts at t = T (trailing spacing).
        config["timestep_spacing"] = "trailing"
    return DDPMScheduler.from_config(config), sampling_overrides(base_type, kind, zero_terminal_snr)


def sampling_overrides(
    base_type: str, prediction_type: str, zero_terminal_snr: bool
) -> dict[str, object]:
    """Scheduler config keys a sampler needs to use a model trained with these settings (written
    to the LoRA card; ``generate`` applies them)."""
    out: dict[str, object] = {}
    if prediction_type != base_type:
        out["prediction_type"] = prediction_type
    if zero_terminal_snr:
        out.update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    return out


def snr(scheduler: Scheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio abar / (1 - abar) at ``timesteps`` (float64 for the division)."""
    abar = scheduler.alphas_cumprod.to(timesteps.device, torch.float64)[timesteps]
    return abar / (1 - abar)


def target(
    scheduler: Scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
):
    """What the UNet should predict: the noise, or the velocity sqrt(abar) eps - sqrt(1-abar) x0."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"unsupported prediction type {kind!r}")


def loss_weights(
    scheduler: Scheduler, timesteps: torch.Tensor, snr_gamma: float | None
) -> torch.Tensor:
    """Per-sample MSE weights: ones, or min-SNR-gamma (Hang et al. 2023): min(SNR, gamma) / SNR
    for epsilon targets and min(SNR, gamma) / (SNR + 1) for v targets. With zero terminal SNR the
    last timestep has SNR 0 and both formulas give it weight 0 (guarded against 0/0)."""
    if not snr_gamma:
        return torch.ones(timesteps.shape, dtype=torch.float32, device=timesteps.device)
    s = snr(scheduler, timesteps)
    clipped = torch.clamp(s, max=snr_gamma)
    if scheduler.config.prediction_type == "v_prediction":
        w = clipped / (s + 1)
    else:
        w = torch.where(s > 0, clipped / s.clamp(min=1e-20), torch.zeros_like(s))
    return w.to(torch.float32)
