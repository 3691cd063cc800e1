"""Initial noise for sampling: plain Gaussian, or leak-aligned (seed 000, section 4.2, Eq. 4).

Training noises a latent as ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``. Because ``abar``
at the last training step is not zero (SD's scaled-linear schedule), the model learns to use the
leaked low-frequency signal ``sqrt(abar) x0`` (channel means: colour). Sampling from pure noise
removes it; leak-aligned noise puts it back with the class's latent channel means:
``x_T = sqrt(abar) x0_cls + sqrt(1 - abar) eps``.

Two details make this right for every scheduler:

* **Which abar.** The UNet first sees the scheduler's *first inference timestep*, not t=999:
  SD 2.1-base's PNDM/DDIM with "leading" spacing and 50 steps start at t=981
  (sqrt(abar)=0.0760 rather than t=999's 0.0683); DPM-Solver with the same config starts at t=951.
  We read it from the configured scheduler. ``leak_timestep`` reproduces the paper's fixed-T
  variant. (The paper's constants are float16 roundings of sqrt(abar_999) = 0.0682649 and
  sqrt(1 - abar_999) = 0.9976672.)
* **Which sample space.** Pipelines multiply given latents by ``init_noise_sigma``, and
  schedulers then scale the UNet input (``scale_model_input``; sigma-space schedulers such as
  Euler sample ``x = x0 + sigma eps`` and divide by ``sqrt(sigma^2 + 1)``). We probe both scalings
  on a copy of the scheduler reset to the start of its schedule (a finished pipeline run leaves
  the step index at sigma 0) and divide them out, so the UNet receives exactly the training
  distribution ``N(sqrt(abar) x0_cls, (1 - abar) I)`` in every batch.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch


def first_timestep(scheduler) -> torch.Tensor:
    """The first timestep of a scheduler on which ``set_timesteps`` has been called."""
    if getattr(scheduler, "timesteps", None) is None or len(scheduler.timesteps) == 0:
        raise ValueError("call scheduler.set_timesteps(steps) first")
    return scheduler.timesteps[0]


def alpha_bar_at_start(scheduler, leak_timestep: int | None = None) -> float:
    """abar of the noise level the UNet sees first (or of ``leak_timestep`` when given)."""
    abar = scheduler.alphas_cumprod
    if leak_timestep is not None:
        return float(abar[int(leak_timestep)])
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None and len(sigmas):
        # Schedulers with sigmas may use fractional timesteps (Karras spacing): sigma is exact.
        sigma = float(sigmas[0])
        return 1.0 / (1.0 + sigma * sigma)
    return float(abar[round(float(first_timestep(scheduler)))])


def model_input_scale(scheduler) -> float:
    """The factor between latents handed to a pipeline and what its UNet first receives:
    ``init_noise_sigma`` times ``scale_model_input`` at the first timestep.

    Sigma-space schedulers (Euler, Euler-a, LMS, Heun) pick the sigma to divide by from a step
    index that a pipeline run leaves at the end of the schedule (sigma 0). The probe is a copy
    whose step index is reset to the state every run starts from (``set_timesteps`` does the same),
    so the result does not depend on what ran before."""
    probe = copy.deepcopy(scheduler)
    for attr in ("_step_index", "_begin_index"):
        if hasattr(probe, attr):
            setattr(probe, attr, None)
    if getattr(probe, "step_index", None) is not None:  # a scheduler keeping its index elsewhere
        raise ValueError(f"{type(scheduler).__name__}: cannot reset its step index for probing")
    t0 = first_timestep(probe)
    ones = torch.ones(1, 1, 1, 1)
    scaled = probe.scale_model_input(ones * float(probe.init_noise_sigma), t0)
    return float(scaled.flatten()[0])


def gaussian_latents(shape: Sequence[int], generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Standard-normal latents, one generator per image (so an image does not depend on the
    batch it is generated in); the pipeline scales them as it scales its own noise."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in generators])


def leak_aligned_latents(
    channel_means: torch.Tensor,
    shape: Sequence[int],
    generators: Sequence[torch.Generator],
    scheduler,
    *,
    leak_timestep: int | None = None,
) -> torch.Tensor:
    """Latents to hand to a diffusers pipeline so that its UNet first receives
    ``sqrt(abar) x0 + sqrt(1 - abar) eps`` with ``x0`` constant per channel at ``channel_means``
    (C values, in the scaled latent space) and one generator per image."""
    c, h, w = shape
    if channel_means.numel() != c:
        raise ValueError(f"channel means have {channel_means.numel()} channels, latents {c}")
    abar = alpha_bar_at_start(scheduler, leak_timestep)
    eps = torch.stack([torch.randn((c, h, w), generator=g) for g in generators])
    x0 = channel_means.float().view(1, c, 1, 1)
    target = abar**0.5 * x0 + (1.0 - abar) ** 0.5 * eps
    return target / model_input_scale(scheduler)
