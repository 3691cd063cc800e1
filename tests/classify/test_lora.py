"""Split attention is the same computation; LoRA lands on query and value projections only."""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch
from torch import nn

from geosynth.classify.lora import SplitAttention, add_lora, qv_targets, split_attention


def test_split_attention_matches_packed(clf_models: dict[str, Path]) -> None:
    name = f"local-dir:{clf_models['clip']}"
    model = open_clip.create_model(name).eval()
    tokens = open_clip.get_tokenizer(name)(["a satellite photo of a forest", "water"])
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        image, text = model.encode_image(pixels), model.encode_text(tokens)
        replaced = split_attention(model)
        image2, text2 = model.encode_image(pixels), model.encode_text(tokens)
    assert replaced == 4  # 2 vision + 2 text blocks
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    # The text tower runs with a causal mask: equal outputs show the mask is honoured too.
    torch.testing.assert_close(image2, image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(text2, text, atol=1e-5, rtol=1e-5)


def test_lora_targets_query_and_value_only(clf_models: dict[str, Path]) -> None:
    model = open_clip.create_model(f"local-dir:{clf_models['clip']}")
    split_attention(model)
    targets = qv_targets(model)
    assert len(targets) == 8
    assert all(t.endswith(("q_proj", "v_proj")) for t in targets)
    assert any(t.startswith("visual.") for t in targets)
    assert any(t.startswith("transformer.") for t in targets)
    n = add_lora(model, targets, rank=4, alpha=8)
    # rank 4 on 64-wide projections: A (4 x 64) + B (64 x 4) per target.
    assert n == 8 * (4 * 64 + 64 * 4)
    adapted = {
        name.rsplit(".lora_", 1)[0] for name, _ in model.named_parameters() if "lora_" in name
    }
    assert adapted == set(targets)
    assert isinstance(
        dict(model.named_modules())["visual.transformer.resblocks.0.attn"], SplitAttention
    )
