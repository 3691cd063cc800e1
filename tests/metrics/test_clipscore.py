"""CLIP score against a direct open_clip computation on the same images and prompts."""

from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from geosynth.data import load_dataset
from geosynth.metrics.evaluation import EvalOptions, evaluate


def test_clip_score_equals_a_direct_open_clip_computation(
    toy_data: Path, toy_models: dict[str, Path], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))
    spec = f"local-dir:{toy_models['clip']}"
    opts = EvalOptions(sections=("clip",), clip_model=spec, prompt_template="an image of {}")
    clip = evaluate(str(toy_data), str(toy_data), opts).report["clip"]

    model, _, preprocess = open_clip.create_model_and_transforms(spec)
    tokenizer = open_clip.get_tokenizer(spec)
    ds = load_dataset(toy_data)
    with torch.no_grad():
        text = model.encode_text(tokenizer([f"an image of {p}" for p in ds.prompt_names]))
        image = model.encode_image(torch.stack([preprocess(ds.image(i)) for i in range(len(ds))]))
    text = text / text.norm(dim=-1, keepdim=True)
    image = image / image.norm(dim=-1, keepdim=True)
    sims = (image @ text.T).double().numpy()
    labels = np.asarray(ds.labels)
    own = sims[np.arange(len(labels)), labels]
    expected = 100 * np.clip(own, 0, None)
    assert clip["synthetic"]["clip_score"] == pytest.approx(expected.mean(), rel=1e-5)
    assert clip["synthetic"]["zero_shot_accuracy"] == pytest.approx(
        (sims.argmax(1) == labels).mean()
    )
    water = labels == ds.class_names.index("water")
    assert clip["per_class"]["water"]["real"]["clip_score"] == pytest.approx(
        expected[water].mean(), rel=1e-5
    )
    assert clip["prompts"]["water"] == "an image of water"
