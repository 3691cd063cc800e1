"""The fine-tuning throughput switches change speed, not what is learnt: cached VAE posteriors
and text features, a channels-last UNet and VAE, and torch.compile each give the plain path's
losses and saved weights within a stated tolerance (docs/finetune.md, "Throughput"); the text
cache is off whenever the text features can change; resume works across the switches."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from geosynth.data import load_dataset
from geosynth.diffusion.training import trainer
from geosynth.diffusion.training.finetune import finetune, parts_dir
from geosynth.diffusion.training.recipe import Recipe
from geosynth.diffusion.training.trainable import prepare_components

#: Relative differences accepted on CPU float32 (per-step loss; saved tensors, see _differences).
#: Cached text features are bit-identical; other layouts and compiled kernels round differently,
#: and Adam turns tiny gradient differences into differences of a fraction of its step size.
LOSS_RTOL = 1e-5
WEIGHT_RTOL = 1e-3

#: UNet LoRA with a frozen text encoder (where the text cache applies) and a VAE decoder trained
#: in full, so that channels-last reaches the VAE's convolutions and a directly saved component.
#: A high learning rate moves the LoRA well away from its start.
RECIPE = dict(
    text_encoder="frozen",
    vae_decoder="full",
    resolution=32,
    batch_size=4,
    max_steps=4,
    checkpoint_every=1000,
    lr=5e-3,
)

Result = tuple[list[float], dict[str, torch.Tensor], list[int]]


def _run(toy_models, toy_data, out: Path, recipe: Recipe, monkeypatch=None, **speed) -> Result:
    """Losses per step (loss.csv), every saved tensor, and the batch size of every text-encoder
    call of one finetune."""
    calls: list[int] = []
    real = trainer._encode_text

    def counting(te, tokenizer, prompts, device):
        calls.append(len(prompts))
        return real(te, tokenizer, prompts, device)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "_encode_text", counting)
        finetune(
            load_dataset(toy_data),
            out,
            recipe,
            model=str(toy_models["sd"]),
            log=lambda s: None,
            device="cpu",
            **speed,
        )
    return (*_outputs(out), calls)


def _outputs(out: Path) -> tuple[list[float], dict[str, torch.Tensor]]:
    with open(out / "loss.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    tensors: dict[str, torch.Tensor] = {}
    for st in sorted(out.rglob("*.safetensors")):
        for k, v in load_file(str(st)).items():
            tensors[f"{st.relative_to(out)}:{k}"] = v
    return losses, tensors


def _differences(a, b) -> tuple[float, float]:
    """Largest relative difference of a step's loss, and of a saved tensor (the norm of the
    difference over the tensor's norm: elementwise, Adam's normalised steps make near-zero
    gradients' rounding noise a sizeable fraction of a step)."""
    la, wa, lb, wb = a[0], a[1], b[0], b[1]
    assert len(la) == len(lb) and wa.keys() == wb.keys()
    loss = max(abs(x - y) / abs(x) for x, y in zip(la, lb, strict=True))
    weight = 0.0
    for k in wa:
        x, y = wa[k].double(), wb[k].double()
        weight = max(weight, float((x - y).norm() / x.norm().clamp(min=1e-30)))
    # the LoRA trained (its up factors start at zero): comparing untrained LoRAs is vacuous
    assert max(float(v.abs().max()) for k, v in wa.items() if "lora.up" in k) > 1e-3
    return loss, weight


@pytest.fixture(scope="module")
def baseline(toy_models, toy_data, tmp_path_factory) -> Result:
    """Every cache on, default layout, not compiled."""
    out = tmp_path_factory.mktemp("throughput") / "baseline"
    return _run(toy_models, toy_data, out, Recipe(**RECIPE), channels_last=False)


def test_cached_text_features_equal_encoding_every_step(
    baseline, toy_models, toy_data, tmp_path
) -> None:
    plain = _run(toy_models, toy_data, tmp_path / "o", Recipe(**RECIPE), cache_text=False)
    loss, weight = _differences(baseline, plain)
    print(f"cache_text: loss rel diff {loss:.2e}, weight rel diff {weight:.2e}")
    assert loss <= LOSS_RTOL and weight <= WEIGHT_RTOL, (loss, weight)
    # each class prompt encoded once, against once per micro-batch
    assert baseline[2] == [1] * len(load_dataset(toy_data).class_names)
    assert plain[2] == [RECIPE["batch_size"]] * RECIPE["max_steps"]


def test_cached_vae_posteriors_equal_encoding_every_step(
    baseline, toy_models, toy_data, tmp_path
) -> None:
    """Each image's posterior (and its mirror image's: flips are the only augmentation) is
    encoded once and sampled every step: the same draw as encoding the batch every step."""
    plain = _run(toy_models, toy_data, tmp_path / "o", Recipe(**RECIPE), cache_latents=False)
    loss, weight = _differences(baseline, plain)
    print(f"cache_latents: loss rel diff {loss:.2e}, weight rel diff {weight:.2e}")
    assert loss <= LOSS_RTOL and weight <= WEIGHT_RTOL, (loss, weight)


def test_channels_last_equals_the_default_layout(baseline, toy_models, toy_data, tmp_path) -> None:
    """The UNet and the training VAE in NHWC; the fully trained decoder is saved as usual."""
    nhwc = _run(toy_models, toy_data, tmp_path / "o", Recipe(**RECIPE), channels_last=True)
    loss, weight = _differences(baseline, nhwc)
    print(f"channels_last: loss rel diff {loss:.2e}, weight rel diff {weight:.2e}")
    assert loss <= LOSS_RTOL and weight <= WEIGHT_RTOL, (loss, weight)
    assert any(k.startswith("vae/") for k in nhwc[1])


def test_channels_last_resumes_a_default_layout_checkpoint(
    baseline, toy_models, toy_data, tmp_path
) -> None:
    """Checkpoints hold contiguous tensors whatever the layout: a run cut in the default layout
    resumes channels-last (optimiser state included) to the uninterrupted run's weights."""

    class Stop(Exception):
        pass

    def crash(info) -> None:
        if info.step == 3:
            raise Stop

    recipe = Recipe(**{**RECIPE, "checkpoint_every": 2})
    out, ds, model = tmp_path / "cut", load_dataset(toy_data), str(toy_models["sd"])
    kw = dict(log=lambda s: None, device="cpu")
    with pytest.raises(Stop):
        finetune(ds, out, recipe, model=model, on_step=crash, **kw)
    finetune(ds, out, recipe, model=model, resume=True, channels_last=True, **kw)
    loss, weight = _differences(baseline, _outputs(out))
    assert loss <= LOSS_RTOL and weight <= WEIGHT_RTOL, (loss, weight)


@pytest.mark.parametrize("kw", [dict(text_encoder="lora"), dict(learn_token="<toy>")])
def test_no_text_cache_while_the_text_features_change(toy_models, toy_data, tmp_path, kw) -> None:
    """A text-encoder LoRA or a learned token changes the features every step."""
    recipe = Recipe(**{**RECIPE, "vae_decoder": "frozen", "max_steps": 2, **kw})
    calls = _run(toy_models, toy_data, tmp_path / "o", recipe)[2]
    assert calls == [RECIPE["batch_size"]] * 2


def test_attention_runs_through_scaled_dot_product_attention(toy_models) -> None:
    """diffusers' default processor on torch 2 is SDPA; LoRA adapters must not replace it."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    from geosynth.diffusion.loading import load_sd_pipeline

    pipe = load_sd_pipeline(str(toy_models["sd"]), device="cpu")
    prepare_components(pipe, Recipe(**{**RECIPE, "vae_decoder": "lora"}))
    for module in (pipe.unet, pipe.vae):
        procs = module.attn_processors
        assert procs and all(isinstance(p, AttnProcessor2_0) for p in procs.values()), {
            type(p).__name__ for p in procs.values()
        }


@pytest.mark.slow
def test_compiled_unet_equals_and_resumes(baseline, toy_models, toy_data, tmp_path) -> None:
    """torch.compile: same losses and weights within tolerance, LoRA keys without the compiled
    wrapper's ``_orig_mod.`` prefix, and an interrupted compiled run resumes without compiling
    (the switch is not part of the recipe) to the uninterrupted run's weights. About 3 minutes
    on 2 CPU cores, inductor's C++ compilation included: marked slow."""
    recipe = Recipe(**{**RECIPE, "checkpoint_every": 2})
    t0 = time.perf_counter()
    compiled = _run(toy_models, toy_data, tmp_path / "compiled", recipe, compile_unet=True)
    wall = time.perf_counter() - t0
    loss, weight = _differences(baseline, compiled)
    print(f"compile_unet: loss rel diff {loss:.2e}, weight rel diff {weight:.2e}; {wall:.0f}s")
    assert loss <= LOSS_RTOL and weight <= WEIGHT_RTOL, (loss, weight)
    assert not any("_orig_mod" in k for k in compiled[1])

    class Stop(Exception):
        pass

    def crash(info) -> None:
        if info.step == 3:
            raise Stop

    out = tmp_path / "cut"
    ds = load_dataset(toy_data)
    model = str(toy_models["sd"])
    with pytest.raises(Stop):
        finetune(ds, out, recipe, model=model, on_step=crash, log=lambda s: None, compile_unet=True)
    assert (parts_dir(out) / "checkpoints" / "step-00000002").is_dir()
    finetune(ds, out, recipe, model=model, resume=True, log=lambda s: None, device="cpu")
    loss, weight = _differences(compiled, _outputs(out))
    assert loss <= LOSS_RTOL and weight <= WEIGHT_RTOL, (loss, weight)
