"""Training noise, targets and loss weights against references computed another way."""

import numpy as np
import pytest
import torch

from geosynth.diffusion.training.objective import (
    loss_weights,
    sampling_overrides,
    target,
    training_noise,
)


@pytest.mark.parametrize("offset", [0.0, 0.05, 0.1])
def test_offset_noise_channel_mean_variance(offset: float) -> None:
    """Var of a channel's spatial mean is 1/(H*W) + L^2: the offset dominates plain noise's."""
    h = w = 16
    latents = torch.zeros(20000, 4, h, w)
    noise = training_noise(latents, offset, torch.Generator().manual_seed(0))
    means = noise.mean(dim=(2, 3))
    expected = 1 / (h * w) + offset**2
    assert means.var().item() == pytest.approx(expected, rel=0.04)
    # Within a channel the offset is a constant: the pixel variance around the channel mean
    # stays that of standard noise.
    within = (noise - means[..., None, None]).var().item()
    assert within == pytest.approx(1 - 1 / (h * w), rel=0.01)


@pytest.mark.parametrize(("convention", "spatial_mean_var"), [("std", 0.05**2), ("variance", 0.05)])
def test_both_readings_of_eq3(convention: str, spatial_mean_var: float) -> None:
    """lambda = 0.05 read as a standard deviation (diffusers, Guttenberg) or as Eq. 3's variance:
    the channel offset's variance is lambda^2 or lambda."""
    from geosynth.diffusion.training.recipe import Recipe

    recipe = Recipe(offset_noise=0.05, offset_noise_convention=convention)
    recipe.check()
    h = w = 16
    noise = training_noise(
        torch.zeros(20000, 4, h, w), recipe.offset_std, torch.Generator().manual_seed(1)
    )
    assert noise.mean(dim=(2, 3)).var().item() == pytest.approx(
        1 / (h * w) + spatial_mean_var, rel=0.04
    )
    assert recipe.to_dict()["offset_noise_convention"] == convention


def test_unknown_offset_convention_is_refused() -> None:
    from geosynth.diffusion.training.recipe import Recipe
    from geosynth.errors import GeosynthError

    with pytest.raises(
        GeosynthError, match=r"^offset_noise_convention='sigma': expected std or variance"
    ):
        Recipe(offset_noise_convention="sigma").check()


def test_offset_is_shared_by_pixels_and_differs_by_channel() -> None:
    latents = torch.zeros(2, 4, 8, 8)
    a = training_noise(latents, 0.0, torch.Generator().manual_seed(3))
    b = training_noise(latents, 10.0, torch.Generator().manual_seed(3))
    shift = (b - a) / 10.0  # same eps0 stream, so the difference is the offset itself
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift), atol=1e-5)
    assert shift[0, :, 0, 0].unique().numel() == 4


def _ddpm(prediction_type: str = "epsilon", zero_snr: bool = False):
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=prediction_type,
        rescale_betas_zero_snr=zero_snr,
    )


def test_min_snr_weights_match_numpy() -> None:
    sched = _ddpm()
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    abar = np.cumprod(1 - betas)
    t = torch.tensor([0, 10, 100, 500, 999])
    snr = abar[t.numpy()] / (1 - abar[t.numpy()])
    got = loss_weights(sched, t, 5.0).numpy()
    np.testing.assert_allclose(got, np.minimum(snr, 5.0) / snr, rtol=1e-4)
    v = _ddpm("v_prediction")
    np.testing.assert_allclose(
        loss_weights(v, t, 5.0).numpy(), np.minimum(snr, 5.0) / (snr + 1), rtol=1e-4
    )
    assert torch.equal(loss_weights(sched, t, None), torch.ones(5))


def test_zero_terminal_snr_weights_are_finite_and_v_target() -> None:
    sched = _ddpm("v_prediction", zero_snr=True)
    assert float(sched.alphas_cumprod[-1]) < 1e-6
    t = torch.tensor([999, 500])
    w = loss_weights(sched, t, 5.0)
    assert torch.isfinite(w).all() and w[0] == 0
    x0, eps = torch.randn(2, 4, 2, 2), torch.randn(2, 4, 2, 2)
    abar = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    expected = abar.sqrt() * eps - (1 - abar).sqrt() * x0
    torch.testing.assert_close(target(sched, x0, eps, t), expected)
    assert sampling_overrides("epsilon", "v_prediction", True) == {
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "timestep_spacing": "trailing",
    }


def test_training_scheduler_keeps_the_base_prediction_type(tmp_path) -> None:
    """A v-prediction base (SD 2.1 at 768 px) stays v-prediction unless asked otherwise, and the
    card records only what differs from the base."""
    from diffusers import PNDMScheduler

    from geosynth.diffusion.training.objective import training_scheduler

    PNDMScheduler(prediction_type="v_prediction").save_pretrained(tmp_path / "scheduler")
    sched, overrides = training_scheduler(
        str(tmp_path), prediction_type=None, zero_terminal_snr=False
    )
    assert sched.config.prediction_type == "v_prediction" and overrides == {}
    sched, overrides = training_scheduler(
        str(tmp_path), prediction_type="epsilon", zero_terminal_snr=False
    )
    assert overrides == {"prediction_type": "epsilon"}
    _, overrides = training_scheduler(str(tmp_path), prediction_type=None, zero_terminal_snr=True)
    assert overrides == {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}
