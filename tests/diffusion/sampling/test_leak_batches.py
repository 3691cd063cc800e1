"""Leak-aligned noise as users run it: ``geosynth generate`` with every scheduler it offers, several
classes and several batches per class, read at the UNet's own input, for both families (the
toy SD 2.1-shaped pipeline and the toy SDXL, whose Euler scheduler is SDXL base's default).

A pipeline run leaves a scheduler's step index at its end; noise for the next batch must not
depend on it. Each batch's first UNet input must follow ``q(x_t | x0_cls)`` at the timestep the
UNet sees, and the images must not depend on how jobs are grouped into batches, shards or resumed
runs (within the one grey level docs/generation.md allows).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image

from geosynth.artifacts import ChannelMeans, Provenance, save_channel_means
from geosynth.diffusion.sampling.schedulers import SCHEDULERS

CLASSES = ["water", "desert", "forest"]
MEANS = torch.tensor([[8.0, -8.0, 4.0, 0.0], [-4.0, 6.0, 0.0, 2.0], [2.0, 2.0, -6.0, 4.0]])
STEPS = 3


@pytest.fixture(scope="module", params=["sd", "sdxl"])
def model(request, toy_models) -> Path:
    return toy_models["sd"] if request.param == "sd" else request.getfixturevalue("toy_sdxl")


@pytest.fixture(scope="module")
def means_file(model, tmp_path_factory) -> Path:
    from geosynth.diffusion import load_vae
    from geosynth.diffusion.channel_means import vae_identity

    vae = load_vae(model)
    cm = ChannelMeans(
        means=MEANS,
        class_names=CLASSES,
        metadata={"resolution": "32", **vae_identity(vae, str(model))},
    )
    path = tmp_path_factory.mktemp("leak") / "means.safetensors"
    return save_channel_means(path, cm, provenance=Provenance.start("test"))


def _command(
    model, means_file, scheduler: str, out: Path, *extra: str, classes=CLASSES, per_class=4
) -> list[str]:
    return [
        "generate",
        "--model",
        str(model),
        "--classes",
        ",".join(classes),
        "--per-class",
        str(per_class),
        "--steps",
        str(STEPS),
        "--scheduler",
        scheduler,
        "--noise",
        "leak-aligned",
        "--channel-means",
        str(means_file),
        "--out",
        str(out),
        *extra,
    ]


class _UNetInputs:
    """Every UNet call's sample and timestep, through a global forward pre-hook."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, float]] = []

    def __enter__(self) -> _UNetInputs:
        def hook(module, args):
            if isinstance(module, UNet2DConditionModel):
                t = float(torch.as_tensor(args[1]).flatten()[0])
                self.calls.append((args[0].detach().float().clone(), t))

        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()

    def first_inputs(self) -> list[tuple[torch.Tensor, float]]:
        """The first UNet input of every pipeline run: the calls at the first (largest) timestep
        (unique in every scheduler's timestep list)."""
        t0 = self.calls[0][1]
        return [(x, t) for x, t in self.calls if t == t0]


def _images(out: Path) -> dict[str, np.ndarray]:
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    return {r["file_name"]: np.asarray(Image.open(out / r["file_name"])).astype(int) for r in rows}


# Every scheduler in `make test-all`; `make test` keeps one of each kind (each case is a 12-image
# generate run, among the suite's slowest): the toy pipeline's own PNDM (what `generate` uses by default), DDIM (timestep space),
# Euler (sigma space, init_noise_sigma > 1) and DPM-Solver++ (multistep).
SWEEP = [
    s if s in ("pndm", "ddim", "euler", "dpm-solver++") else pytest.param(s, marks=pytest.mark.slow)
    for s in SCHEDULERS
]


@pytest.mark.parametrize("scheduler", SWEEP)
def test_every_batch_starts_from_the_leak_distribution(
    cli, model, means_file, tmp_path, scheduler: str
) -> None:
    from diffusers import DDPMScheduler

    alphas_cumprod = DDPMScheduler.from_pretrained(model, subfolder="scheduler").alphas_cumprod
    with _UNetInputs() as seen:
        res = cli(*_command(model, means_file, scheduler, tmp_path / "b2"), "--batch-size", "2")
    assert res.code == 0, res.err
    firsts = seen.first_inputs()
    # 3 classes x 2 batches of 2 images, classes in order.
    assert len(firsts) == 6
    batch_classes = [0, 0, 1, 1, 2, 2]
    for k, ((x, t), cls) in enumerate(zip(firsts, batch_classes, strict=True)):
        x = x[: x.shape[0] // 2]  # classifier-free guidance stacks (unconditional, text) inputs
        if float(t) == int(t):
            abar = float(alphas_cumprod[int(t)])
        else:  # fractional (sigma-space) timesteps: interpolate the schedule
            lo = int(t)
            w = t - lo
            abar = float((1 - w) * alphas_cumprod[lo] + w * alphas_cumprod[lo + 1])
        # Per channel, 2 images x 16 x 16 values: standard errors about 0.044 (mean) and 0.063
        # (variance), so the bounds sit at about 4.5 standard errors. A start built for the
        # end-of-schedule state is off by init_noise_sigma (about 3 at 3 steps, 13 at 50).
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(2, 3)).mean(0)
        torch.testing.assert_close(
            mean, abar**0.5 * MEANS[cls], atol=0.2, rtol=0, msg=f"batch {k} mean"
        )
        torch.testing.assert_close(
            var, torch.full((4,), 1 - abar), atol=0.3, rtol=0, msg=f"batch {k} variance"
        )


# Every scheduler, but only two in the default suite (four generate runs each); the test above
# checks the cause for all of them.
GROUPING = [
    s if s in ("euler", "dpm-solver++") else pytest.param(s, marks=pytest.mark.slow)
    for s in SCHEDULERS
]


@pytest.mark.parametrize("scheduler", GROUPING)
def test_images_do_not_depend_on_batches_shards_or_resume(
    cli, model, means_file, tmp_path, scheduler: str
) -> None:
    def run(name: str, *extra: str) -> Path:
        out = tmp_path / name
        cmd = _command(model, means_file, scheduler, out, classes=CLASSES[:2], per_class=2)
        res = cli(*cmd, *extra)
        assert res.code == 0, res.err
        return out

    reference = _images(run("b2", "--batch-size", "2"))
    sharded = run("shard", "--batch-size", "2", "--shard", "0/2")
    run("shard", "--batch-size", "1", "--shard", "1/2", "--resume")
    for other in (_images(run("b1", "--batch-size", "1")), _images(sharded)):
        assert other.keys() == reference.keys()
        for k in reference:
            diff = int(np.abs(other[k] - reference[k]).max())
            assert diff <= 1, f"{k}: {diff} grey levels apart"
