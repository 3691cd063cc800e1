"""Leak-aligned noise reaches the UNet with the training distribution, for every scheduler and
both families (SD 2.1-shaped and SDXL).

The check reads the UNet's own first input and timestep through a forward hook and compares them
with ``q(x_t | x0)`` from the scheduler's alphas_cumprod at that timestep: it does not reuse the
formula under test.
"""

import pytest
import torch

from geosynth.diffusion import alpha_bar_at_start, leak_aligned_latents, load_sd_pipeline
from geosynth.diffusion.sampling.schedulers import SCHEDULERS, make_scheduler

MEANS = torch.tensor([8.0, -8.0, 4.0, 0.0])


class _FirstCallSeen(Exception):
    """Raised by the hook: only the UNet's first input matters, the other 49 steps are skipped."""


@pytest.fixture(scope="module", params=["sd", "sdxl"])
def pipe(request, toy_models):
    """The toy SD 2.1-shaped pipeline and the toy SDXL (which keeps SD's noise schedule)."""
    model = toy_models["sd"] if request.param == "sd" else request.getfixturevalue("toy_sdxl")
    return load_sd_pipeline(model, device="cpu")


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_first_unet_input_has_leak_mean_and_variance(pipe, name: str) -> None:
    pipe.scheduler = make_scheduler(name, pipe.scheduler.config)
    pipe.scheduler.set_timesteps(50)
    seen: dict[str, torch.Tensor] = {}

    def hook(module, args, kwargs):
        seen["x"], seen["t"] = args[0].detach().clone(), torch.as_tensor(args[1])
        raise _FirstCallSeen

    handle = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        gens = [torch.Generator().manual_seed(i) for i in range(6)]
        latents = leak_aligned_latents(MEANS, (4, 32, 32), gens, pipe.scheduler)
        with pytest.raises(_FirstCallSeen):
            pipe(
                ["a satellite photo of a forest"] * 6,
                latents=latents,
                num_inference_steps=50,
                height=64,
                width=64,
                guidance_scale=1.0,
                output_type="latent",
                generator=gens,
            )
    finally:
        handle.remove()
    t = float(seen["t"].flatten()[0])
    abar = float(pipe.scheduler.alphas_cumprod[round(t)])
    x = seen["x"]
    # Mean over 6 x 1024 values per channel: its standard error is about 0.013.
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), abar**0.5 * MEANS, atol=0.05, rtol=0)
    torch.testing.assert_close(
        x.var(dim=(2, 3)).mean(0), torch.full((4,), 1 - abar), atol=0.08, rtol=0
    )


def test_sd21_first_step_and_paper_constants(pipe) -> None:
    pipe.scheduler = make_scheduler("pndm", pipe.scheduler.config)
    pipe.scheduler.set_timesteps(50)
    assert int(pipe.scheduler.timesteps[0]) == 981
    assert alpha_bar_at_start(pipe.scheduler) ** 0.5 == pytest.approx(0.0760, abs=5e-5)
    abar_999 = alpha_bar_at_start(pipe.scheduler, leak_timestep=999)
    assert abar_999**0.5 == pytest.approx(0.0682649, abs=1e-7)
    assert (1 - abar_999) ** 0.5 == pytest.approx(0.9976672, abs=1e-7)
