"""Augmentations and batch mixing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from geosynth.classify.augment import eval_transform, mix_batch, one_hot, train_transform


def test_train_transform_is_seeded_and_shaped() -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), np.uint8))
    tfm = train_transform(32, (0.5,) * 3, (0.5,) * 3)
    torch.manual_seed(1)
    a = tfm(img)
    torch.manual_seed(1)
    b = tfm(img)
    assert a.shape == (3, 32, 32)
    assert torch.equal(a, b)
    c = eval_transform(32, (0.5,) * 3, (0.5,) * 3)(img)
    assert c.shape == (3, 32, 32)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mix_batch_soft_targets(kind: str) -> None:
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 8, 8).clone()
    y = one_hot(torch.tensor([0, 1, 2, 3]), 4)
    kw = {"mixup": 1.0, "cutmix": 0.0} if kind == "mixup" else {"mixup": 0.0, "cutmix": 1.0}
    mixed, t = mix_batch(x, y, rng=np.random.default_rng(3), **kw)
    assert torch.allclose(t.sum(-1), torch.ones(4))
    # Each image is a blend of itself and one partner; the target weights say how much of
    # each, which for these constant images is exactly the mean pixel value.
    values = torch.arange(4, dtype=torch.float32)
    assert torch.allclose(mixed.mean(dim=(1, 2, 3)), t @ values, atol=1e-5)


def test_mix_batch_off_is_identity() -> None:
    x, y = torch.randn(3, 3, 4, 4), one_hot(torch.tensor([0, 1, 2]), 3)
    mixed, t = mix_batch(x, y, mixup=0.0, cutmix=0.0, rng=np.random.default_rng(0))
    assert mixed is x and t is y
