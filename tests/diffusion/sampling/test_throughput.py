"""Generation's speed paths give the plain path's images: LoRA mixtures fused per class (base
weights restored exactly), text embeddings cached per class, SDPA and channels-last, and
torch.compile. Tolerances are stated per test; docs/generation.md ("Throughput") quotes them."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geosynth.artifacts import Provenance
from geosynth.diffusion import adapters
from geosynth.diffusion.sampling.generate import run_generation, text_embeddings
from geosynth.diffusion.sampling.pipeline import load_generation, tune_for_speed
from geosynth.toy import make_toy_lora

CLASSES = ["water", "desert", "forest"]
TEMPLATE = "a satellite photo of a <sar> {}"


@pytest.fixture(scope="module")
def mixture(toy_models, tmp_path_factory) -> Path:
    """weights.json over a UNet LoRA and a UNet + text-encoder LoRA with a learned token;
    water uses one, desert the other, forest both, so every class switch changes the mix."""
    root = tmp_path_factory.mktemp("mix")
    make_toy_lora(toy_models["sd"], root / "a", seed=1)
    make_toy_lora(toy_models["sd"], root / "b", seed=2, text_encoder=True, learned_token="<sar>")
    weights = {
        "loras": {"a": "a", "b": "b"},
        "weights": {
            "water": {"a": 1.0, "b": 0.0},
            "desert": {"a": 0.0, "b": 0.8},
            "forest": {"a": 0.6, "b": 0.5},
        },
    }
    (root / "weights.json").write_text(json.dumps(weights))
    return root / "weights.json"


@pytest.fixture(scope="module")
def gen(toy_models, mixture):
    return load_generation(
        model=str(toy_models["sd"]),
        classes=CLASSES,
        per_class=2,
        steps=4,
        lora_weights=mixture,
        prompt_template=TEMPLATE,
    )


@pytest.fixture(scope="module")
def fused(gen, tmp_path_factory) -> dict[str, np.ndarray]:
    """The default path's images (fused mixtures, cached text), checking on the way that the
    run leaves every base weight exactly as it found it."""
    base = _params(gen.pipe)
    images = _run(gen, tmp_path_factory.mktemp("fused") / "out")
    after = _params(gen.pipe)
    assert all(torch.equal(base[k], after[k]) for k in base), "base weights changed"
    return images


def _params(pipe) -> dict[str, torch.Tensor]:
    return {
        f"{c}.{n}": p.detach().clone()
        for c in ("unet", "text_encoder")
        for n, p in getattr(pipe, c).named_parameters()
    }


def _run(gen, out: Path, spec=None, **kw) -> dict[str, np.ndarray]:
    """Generate into ``out`` with batches of 2; the images by file name, as int arrays."""
    run_generation(
        gen.pipe, spec or gen.spec, out, provenance=Provenance.start("t"), batch_size=2, **kw
    )
    return {
        p.relative_to(out).as_posix(): np.asarray(Image.open(p)).astype(int)
        for p in sorted(out.glob("*/*.png"))
    }


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> int:
    assert a.keys() == b.keys() and a
    return max(int(np.abs(a[k] - b[k]).max()) for k in a)


def test_fused_mixtures_match_the_adapters_and_leave_the_base_weights(gen, fused, tmp_path):
    plain = _run(gen, tmp_path / "plain", fuse_loras=False)
    # Measured on the toy model (fp32, 3 classes x 8 images, 20 steps): 1 value of 73,728 off
    # by one grey level. The tolerance is that grey level.
    assert _max_diff(fused, plain) <= 1
    row = json.loads((tmp_path / "plain" / "metadata.jsonl").read_text().splitlines()[0])
    assert row["prompt"] == "a satellite photo of a <sar> water"


def test_a_class_fused_from_scratch_is_byte_identical(gen, fused, tmp_path) -> None:
    """A resumed or sharded run fuses a class after other switches (or none): its images must
    not depend on that history (diffusers' unfuse_lora alone leaves the weights off by up to
    2e-7 after a few switches; the saved base weights are copied back instead)."""
    alone = _run(gen, tmp_path / "forest", spec=dataclasses.replace(gen.spec, classes=["forest"]))
    assert alone and all(np.array_equal(alone[k], fused[k]) for k in alone)


def test_fused_layers_compute_what_the_adapters_compute(gen) -> None:
    """At the tensor level: UNet noise prediction and text embeddings for forest's mixture
    (both LoRAs, one on the text encoder) agree within 1e-5 of their scale, fused or not."""
    pipe = gen.pipe
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, pipe.unet.config.in_channels, 4, 4, generator=g)
    weights = gen.spec.weights_for("forest")

    def outputs() -> tuple[torch.Tensor, torch.Tensor]:
        emb = text_embeddings(pipe, gen.spec.prompt("forest"), 2, 2.0)["prompt_embeds"]
        with torch.no_grad():
            return emb, pipe.unet(x, 500, encoder_hidden_states=emb).sample

    with adapters.ClassMix(pipe, fuse=False) as mix:
        mix.set(weights)
        emb0, eps0 = outputs()
    te_before = _params(pipe)
    with adapters.ClassMix(pipe, fuse=True) as mix:
        active = mix.set(weights)
        assert active == {"a": 0.6, "b": 0.5}
        te_now = _params(pipe)
        changed = [k for k in te_before if not torch.equal(te_before[k], te_now[k])]
        assert any(k.startswith("text_encoder.") for k in changed), "text-encoder LoRA not fused"
        assert any(k.startswith("unet.") for k in changed), "UNet LoRAs not fused"
        emb1, eps1 = outputs()
    torch.testing.assert_close(emb1, emb0, rtol=1e-5, atol=1e-5 * emb0.abs().max().item())
    torch.testing.assert_close(eps1, eps0, rtol=1e-5, atol=1e-5 * eps0.abs().max().item())
    after = _params(pipe)
    assert all(torch.equal(te_before[k], after[k]) for k in te_before)


def test_cached_text_embeddings_give_the_same_bytes(gen, fused, tmp_path) -> None:
    """Encoding once per class and batch length is the computation the pipeline does per
    batch (learned token and text-encoder LoRA included): tolerance zero."""
    prompts = _run(gen, tmp_path / "prompts", cache_text=False)
    assert _max_diff(fused, prompts) == 0


def test_sdpa_everywhere_and_channels_last_match(toy_models, gen, fused, tmp_path) -> None:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    pipe = gen.pipe
    assert {type(p) for p in pipe.unet.attn_processors.values()} == {AttnProcessor2_0}
    assert {type(p) for p in pipe.vae.attn_processors.values()} == {AttnProcessor2_0}

    fast = load_generation(
        model=str(toy_models["sd"]),
        classes=CLASSES,
        per_class=2,
        steps=4,
        lora_weights=gen.loras.lora_weights,
        prompt_template=TEMPLATE,
        channels_last=True,  # on by default on CUDA only; forced here
    )
    conv = fast.pipe.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    # Measured on the toy model: identical images (other conv kernels, same 8-bit values).
    assert _max_diff(_run(fast, tmp_path / "cl"), fused) <= 1

    # A plain (non-SDPA) processor is put back to SDPA; a custom one is kept.
    class Custom(AttnProcessor):
        pass

    procs = dict(fast.pipe.unet.attn_processors)
    names = sorted(procs)
    procs[names[0]], procs[names[1]] = AttnProcessor(), Custom()
    fast.pipe.unet.set_attn_processor(procs)
    tune_for_speed(fast.pipe, channels_last=False)
    now = fast.pipe.unet.attn_processors
    assert type(now[names[0]]) is AttnProcessor2_0 and type(now[names[1]]) is Custom


@pytest.mark.slow
def test_compiled_unet_matches_eager(toy_models, gen, fused, tmp_path) -> None:
    """torch.compile (inductor, which builds C++ on a CPU: about 1-2 minutes here) with fused
    class switches: images within one grey level of eager."""
    compiled = load_generation(
        model=str(toy_models["sd"]),
        classes=CLASSES,
        per_class=2,
        steps=4,
        lora_weights=gen.loras.lora_weights,
        prompt_template=TEMPLATE,
        compile_unet=True,
    )
    assert _max_diff(_run(compiled, tmp_path / "compiled"), fused) <= 1


def test_cli_fuse_and_compile_options(cli, toy_models, mixture, tmp_path) -> None:
    common = ["generate", "--model", toy_models["sd"], "--lora-weights", mixture]
    common += ["--per-class", "1", "--steps", "2", "--prompt-template", TEMPLATE]
    res = cli(*common, "--no-fuse-lora", "--out", tmp_path / "unfused")
    assert res.code == 0, res.err
    res = cli(*common, "--out", tmp_path / "fused")
    assert res.code == 0, res.err
    for c in CLASSES:
        a = np.asarray(Image.open(tmp_path / "unfused" / c / "000000.png")).astype(int)
        b = np.asarray(Image.open(tmp_path / "fused" / c / "000000.png")).astype(int)
        assert np.abs(a - b).max() <= 1
