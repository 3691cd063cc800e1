"""Classifier heads: zero-shot = text embeddings, cosine logits, what each mode trains, and
checkpoints that load back."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F

from geosynth.artifacts import Provenance
from geosynth.classify import ModelSpec, build_classifier, load_classifier
from geosynth.classify.checkpoint import save_classifier
from geosynth.errors import GeosynthError

NAMES = ["water", "forest", "desert"]


def _clip_spec(clf_models: dict[str, Path], mode: str) -> ModelSpec:
    return ModelSpec(model=str(clf_models["clip"]), mode=mode)


def test_clip_head_is_text_embedding_and_logits_are_scaled_cosine(
    clf_models: dict[str, Path],
) -> None:
    clf = build_classifier(_clip_spec(clf_models, "head"), NAMES).eval()
    name = f"local-dir:{clf_models['clip']}"
    ref = open_clip.create_model(name).eval()
    tokens = open_clip.get_tokenizer(name)([f"a satellite photo of a {n}" for n in NAMES])
    pixels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        text = F.normalize(ref.encode_text(tokens), dim=-1)
        image = F.normalize(ref.encode_image(pixels), dim=-1)
        expected = ref.logit_scale.exp() * image @ text.t()
        torch.testing.assert_close(F.normalize(clf.head, dim=-1), text, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(clf(pixels), expected, atol=1e-4, rtol=1e-4)
        # LoRA starts as a no-op (B = 0): the same zero-shot logits.
        lora = build_classifier(_clip_spec(clf_models, "lora"), NAMES).eval()
        torch.testing.assert_close(lora(pixels), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("mode", "expect"),
    [("head", lambda n: n == "head"), ("lora", lambda n: "lora_" in n)],
)
def test_clip_trainable_parameters(clf_models: dict[str, Path], mode: str, expect) -> None:
    clf = build_classifier(_clip_spec(clf_models, mode), NAMES)
    trainable = [n for n, p in clf.named_parameters() if p.requires_grad]
    assert trainable and all(expect(n) for n in trainable)


def test_timm_modes(clf_models: dict[str, Path]) -> None:
    base = {"backbone": f"timm:local-dir:{clf_models['timm']}", "resolution": 32}
    head = build_classifier(ModelSpec(**base, mode="head"), NAMES)
    assert {n for n, p in head.named_parameters() if p.requires_grad} == {
        "net.classifier.weight",
        "net.classifier.bias",
    }
    lora = build_classifier(ModelSpec(**base, mode="lora"), NAMES)
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert "net.classifier.weight" in trainable
    assert any("conv_pw" in n and "lora_A" in n for n in trainable)  # 1x1 convs of the CNN
    full = build_classifier(ModelSpec(**base, mode="full"), NAMES)
    assert all(p.requires_grad for p in full.parameters())
    assert full(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    # Frozen BatchNorm keeps its pretrained statistics in train mode.
    lora.train()
    assert not lora.net.bn1.training and lora.net.classifier.training


def test_checkpoint_round_trip(clf_models: dict[str, Path], tmp_path: Path) -> None:
    spec = _clip_spec(clf_models, "lora")
    torch.manual_seed(0)
    clf = build_classifier(spec, NAMES)
    with torch.no_grad():
        for n, p in clf.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)  # make the adapter act, so loading it matters
    clf.eval()
    path = save_classifier(
        tmp_path / "m.safetensors", clf.trainable_state(), spec, NAMES, Provenance.start("t")
    )
    back = load_classifier(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(x), clf(x))
    assert back.class_names == NAMES


def test_bad_model_references(clf_models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(GeosynthError, match=r"^model='.*nope': not an open_clip model directory"):
        build_classifier(ModelSpec(model=str(tmp_path / "nope"), pretrained="none"), NAMES)
    with pytest.raises(
        GeosynthError, match=r"^pretrained='pypi': only available for timm:efficientnet_lite0"
    ):
        build_classifier(ModelSpec(backbone="timm:resnet18", pretrained="pypi"), NAMES)
    with pytest.raises(GeosynthError, match=r"^backbone='keras:x': expected clip or timm:NAME"):
        ModelSpec(backbone="keras:x")
