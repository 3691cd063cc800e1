"""Toy data and tiny models: deterministic, class-separable, and loadable by the real libraries."""

from pathlib import Path

import numpy as np
import torch

from geosynth.data import load_dataset
from geosynth.data.stats import class_color_stats
from geosynth.toy import SD21_SCHEDULER_CONFIG, build_toy_tokenizer, toy_image


def test_toy_images_are_deterministic_and_vary() -> None:
    a = np.asarray(toy_image("forest", 3, 32, seed=1))
    assert np.array_equal(a, np.asarray(toy_image("forest", 3, 32, seed=1)))
    assert not np.array_equal(a, np.asarray(toy_image("forest", 4, 32, seed=1)))
    assert not np.array_equal(a, np.asarray(toy_image("forest", 3, 32, seed=2)))


def test_toy_classes_differ_in_mean_colour(toy_data: Path) -> None:
    stats = {
        r["class_name"]: np.array(r["mean_rgb"]) for r in class_color_stats(load_dataset(toy_data))
    }
    assert stats["water"][2] > stats["water"][0] + 0.2  # blue
    assert stats["forest"][1] > stats["forest"][0]  # green
    assert stats["desert"].mean() > 0.5 > stats["water"].mean()  # bright vs dark


def test_tokenizer_learns_prompt_words() -> None:
    tok = build_toy_tokenizer()
    pieces = tok.convert_ids_to_tokens(tok("a satellite photo of a forest").input_ids)
    assert pieces == [
        "<|startoftext|>",
        "a</w>",
        "satellite</w>",
        "photo</w>",
        "of</w>",
        "a</w>",
        "forest</w>",
        "<|endoftext|>",
    ]
    # Unknown words still tokenize (byte-level), so any class name works.
    assert len(tok("a zebra").input_ids) > 3


def test_toy_pipeline_loads_with_plain_diffusers(toy_models: dict[str, Path]) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(toy_models["sd"])
    for key, value in SD21_SCHEDULER_CONFIG.items():
        assert pipe.scheduler.config[key] == value, key
    pipe.scheduler.set_timesteps(50)
    assert int(pipe.scheduler.timesteps[0]) == 981  # SD 2.1-base's first step with 50 steps
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        "a satellite photo of a forest",
        num_inference_steps=3,
        height=32,
        width=32,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()


def test_toy_vae_latents_carry_colour(toy_models: dict[str, Path], toy_data: Path) -> None:
    """Per-class latent channel means differ between dark water and bright desert: the cue
    channel means and leak-aligned noise rely on."""
    from geosynth.diffusion import encode_latents, images_to_tensor, load_vae

    vae = load_vae(toy_models["sd"])
    ds = load_dataset(toy_data, classes=["water", "desert"])
    z = encode_latents(vae, images_to_tensor([ds.image(i) for i in range(len(ds))], 32))
    means = z.mean(dim=(2, 3))
    labels = torch.tensor(ds.labels)
    gap = (means[labels == 0].mean(0) - means[labels == 1].mean(0)).abs().max()
    spread = means.std(0).max()
    assert gap > spread * 0.5 and gap > 0.1


def test_toy_dinov2_and_clip_load(toy_models: dict[str, Path]) -> None:
    import open_clip
    from transformers import AutoImageProcessor, AutoModel

    model = AutoModel.from_pretrained(toy_models["dinov2"])
    proc = AutoImageProcessor.from_pretrained(toy_models["dinov2"])
    pixels = proc(images=[toy_image("water", 0)], return_tensors="pt")["pixel_values"]
    assert model(pixel_values=pixels).pooler_output.shape == (1, 32)

    ref = f"local-dir:{toy_models['clip']}"
    clip, _, preprocess = open_clip.create_model_and_transforms(ref)
    tokenizer = open_clip.get_tokenizer(ref)
    img = clip.encode_image(preprocess(toy_image("urban", 0)).unsqueeze(0))
    txt = clip.encode_text(tokenizer(["a satellite photo of a urban"]))
    assert img.shape == txt.shape == (1, 32)
