"""The fine-tuning throughput switches change speed, not what is learnt: cached text features,
channels-last UNet and torch.compile each give the plain path's losses and weights within a
stated tolerance (docs/finetune.md, "Throughput"), and resume works across them."""

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


def _recipe(**kw) -> Recipe:
    # a high learning rate so that the weights move well away from their initial values
    base = dict(resolution=32, batch_size=4, max_steps=6, checkpoint_every=1000, lr=5e-3)
    base.update(kw)
    return Recipe(**base)


def _run(toy_models, toy_data, out: Path, recipe: Recipe, **speed) -> tuple[list[float], dict]:
    """Losses per step (loss.csv) and every saved tensor of one finetune."""
    finetune(
        load_dataset(toy_data),
        out,
        recipe,
        model=str(toy_models["sd"]),
        log=lambda s: None,
        device="cpu",
        **speed,
    )
    return _run_result(out)


def _run_result(out: Path) -> tuple[list[float], dict]:
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
    (la, wa), (lb, wb) = a, b
    assert len(la) == len(lb) and wa.keys() == wb.keys()
    loss = max(abs(x - y) / abs(x) for x, y in zip(la, lb, strict=True))
    weight = 0.0
    for k in wa:
        x, y = wa[k].double(), wb[k].double()
        weight = max(weight, float((x - y).norm() / x.norm().clamp(min=1e-30)))
    # the LoRA did train (B starts at zero): comparing two untrained LoRAs would pass vacuously
    assert max(float(wa[k].abs().max()) for k in wa) > 1e-3
    return loss, weight


def test_cached_text_features_match_encoding_every_step(toy_models, toy_data, tmp_path) -> None:
    recipe = _recipe(text_encoder="frozen")
    t0 = time.perf_counter()
    cached = _run(toy_models, toy_data, tmp_path / "cached", recipe)
    t1 = time.perf_counter()
    plain = _run(toy_models, toy_data, tmp_path / "plain", recipe, cache_text=False)
    t2 = time.perf_counter()
    loss, weight = _differences(cached, plain)
    print(
        f"cache_text: loss rel diff {loss:.2e}, weight rel diff {weight:.2e}; "
        f"{t1 - t0:.1f}s cached vs {t2 - t1:.1f}s plain"
    )
    assert loss <= LOSS_RTOL and weight <= WEIGHT_RTOL, (loss, weight)


@pytest.mark.parametrize(
    "kw, calls",
    [
        (dict(text_encoder="frozen"), "once per prompt"),
        (dict(text_encoder="lora"), "every micro-batch"),
        (dict(text_encoder="frozen", learn_token="<toy>"), "every micro-batch"),
    ],
)
def test_the_text_cache_is_used_only_while_the_encoder_is_fixed(
    toy_models, toy_data, tmp_path, monkeypatch, kw, calls
) -> None:
    """A text-encoder LoRA or a learned token changes the features every step: no cache then."""
    seen: list[int] = []
    real = trainer._encode_text

    def counting(te, tokenizer, prompts, device):
        seen.append(len(prompts))
        return real(te, tokenizer, prompts, device)

    monkeypatch.setattr(trainer, "_encode_text", counting)
    recipe = _recipe(max_steps=3, grad_accum=2, **kw)
    _run(toy_models, toy_data, tmp_path / "out", recipe)
    prompts = len(load_dataset(toy_data).class_names)
    if calls == "once per prompt":
        assert seen == [1] * prompts
    else:
        assert seen == [recipe.batch_size] * (3 * 2)


def test_channels_last_matches_the_default_layout(toy_models, toy_data, tmp_path) -> None:
    # LoRA on the attention projections; the convolutions run in NHWC
    recipe = _recipe()
    nchw = _run(toy_models, toy_data, tmp_path / "nchw", recipe, channels_last=False)
    nhwc = _run(toy_models, toy_data, tmp_path / "nhwc", recipe, channels_last=True)
    loss, weight = _differences(nchw, nhwc)
    print(f"channels_last (LoRA): loss rel diff {loss:.2e}, weight rel diff {weight:.2e}")
    assert loss <= LOSS_RTOL and weight <= WEIGHT_RTOL, (loss, weight)


def test_channels_last_full_unet_and_vae_decoder_export(toy_models, toy_data, tmp_path) -> None:
    """Convolution weights trained in NHWC (UNet in full, VAE decoder) are saved as usual."""
    recipe = _recipe(unet="full", text_encoder="frozen", vae_decoder="full", max_steps=3, lr=1e-3)
    nchw = _run(toy_models, toy_data, tmp_path / "nchw", recipe, channels_last=False)
    nhwc = _run(toy_models, toy_data, tmp_path / "nhwc", recipe, channels_last=True)
    loss, weight = _differences(nchw, nhwc)
    print(f"channels_last (full UNet + decoder): loss rel diff {loss:.2e}, weight {weight:.2e}")
    assert loss <= LOSS_RTOL and weight <= WEIGHT_RTOL, (loss, weight)


def test_attention_runs_through_scaled_dot_product_attention(toy_models) -> None:
    """diffusers' default processor on torch 2 is SDPA; LoRA adapters must not replace it."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    from geosynth.diffusion.loading import load_sd_pipeline

    pipe = load_sd_pipeline(str(toy_models["sd"]), device="cpu")
    prepare_components(pipe, _recipe())
    for module in (pipe.unet, pipe.vae):
        procs = module.attn_processors
        assert procs and all(isinstance(p, AttnProcessor2_0) for p in procs.values()), {
            type(p).__name__ for p in procs.values()
        }


@pytest.mark.slow
def test_compiled_unet_matches_and_resumes(toy_models, toy_data, tmp_path) -> None:
    """torch.compile: same losses and weights within tolerance, LoRA keys without the compiled
    wrapper's ``_orig_mod.`` prefix, and an interrupted compiled run resumes without compiling
    (the switch is not part of the recipe) to an uninterrupted compiled run's weights. About
    3 minutes on 2 CPU cores, inductor's C++ compilation included: marked slow."""
    recipe = _recipe(checkpoint_every=3)
    plain = _run(toy_models, toy_data, tmp_path / "plain", recipe)
    t0 = time.perf_counter()
    compiled = _run(toy_models, toy_data, tmp_path / "compiled", recipe, compile_unet=True)
    wall = time.perf_counter() - t0
    loss, weight = _differences(plain, compiled)
    print(f"compile_unet: loss rel diff {loss:.2e}, weight rel diff {weight:.2e}; {wall:.0f}s")
    assert loss <= LOSS_RTOL and weight <= WEIGHT_RTOL, (loss, weight)
    assert not any("_orig_mod" in k for k in compiled[1])

    class Stop(Exception):
        pass

    def crash(info) -> None:
        if info.step == 4:
            raise Stop

    out = tmp_path / "cut"
    ds = load_dataset(toy_data)
    model = str(toy_models["sd"])
    with pytest.raises(Stop):
        finetune(ds, out, recipe, model=model, on_step=crash, log=lambda s: None, compile_unet=True)
    assert (parts_dir(out) / "checkpoints" / "step-00000003").is_dir()
    finetune(ds, out, recipe, model=model, resume=True, log=lambda s: None, device="cpu")
    resumed = _run_result(out)
    loss, weight = _differences(compiled, resumed)
    assert loss <= LOSS_RTOL and weight <= WEIGHT_RTOL, (loss, weight)
