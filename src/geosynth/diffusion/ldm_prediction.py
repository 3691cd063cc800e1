"""Epsilon or v-prediction for an SD 2.x single file that comes without its ``.yaml``.

SD 2.0/2.1 at 768 px (``v2-inference-v.yaml``) predict v, the 512 px base models epsilon; the
file itself does not say which. ComfyUI decides from the weights (``comfy/supported_models.py``,
``SD20.model_type``): for a UNet with 4 input channels (inpainting models are epsilon), the
population standard deviation of ``output_blocks.11.1.transformer_blocks.0.norm1.bias`` (the
first layer norm of the last output block's transformer) above 0.09 means v-prediction. Block
11 is the last output block of SD's 4 levels x 3; smaller UNets of the same layout (the tests'
toys) are read at their own last output block. A missing tensor means epsilon, as there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: ComfyUI's threshold on the norm bias's standard deviation (unbiased=False).
V_STD_THRESHOLD = 0.09
_NORM = "output_blocks.{}.1.transformer_blocks.0.norm1.bias"


def norm_bias_key(unet: dict[str, torch.Tensor]) -> str | None:
    """The key ComfyUI reads (``output_blocks.11.1...norm1.bias`` for SD 2.x) in an LDM UNet
    state dict with its prefix stripped: that of the last output block; None when that block
    has no transformer."""
    blocks = [int(k.split(".")[1]) for k in unet if k.startswith("output_blocks.")]
    if not blocks:
        return None
    key = _NORM.format(max(blocks))
    return key if key in unet else None


def detect_prediction(unet: dict[str, torch.Tensor]) -> tuple[str, str]:
    """(``epsilon`` or ``v_prediction``, the one-line reason) for an SD 2.x UNet state dict
    (prefix stripped), by ComfyUI's rule (see the module docstring)."""
    import torch

    conv_in = unet.get("input_blocks.0.0.weight")
    if conv_in is not None and conv_in.shape[1] != 4:
        return "epsilon", f"{conv_in.shape[1]} UNet input channels (an inpainting model)"
    key = norm_bias_key(unet)
    if key is None:
        return "epsilon", "no output-block norm bias to read"
    std = float(torch.std(unet[key].float(), unbiased=False))
    kind = "v_prediction" if std > V_STD_THRESHOLD else "epsilon"
    sign = ">" if std > V_STD_THRESHOLD else "<="
    return kind, f"std of {key} is {std:.3f} {sign} {V_STD_THRESHOLD}"


def pick_prediction(
    path: Path, params: dict[str, Any], unet: dict[str, torch.Tensor] | None
) -> str:
    """The prediction type of single file ``path``: its ``FILE.yaml`` when there is one
    (``model.params`` = ``params``; ``parameterization: v``, else LDM's default epsilon), else
    the weights' answer for an SD 2.x ``unet`` (state dict, prefix stripped; None for other
    families: epsilon), said in one line on the ``geosynth`` logger."""
    if path.with_suffix(".yaml").is_file():
        return "v_prediction" if params.get("parameterization") == "v" else "epsilon"
    if unet is None:
        return "epsilon"
    kind, why = detect_prediction(unet)
    logging.getLogger("geosynth").warning(
        "note: model=%r: SD 2.x single file without %s: %s from its weights (%s, ComfyUI's "
        "rule); a %s beside it with model.params.parameterization decides instead",
        str(path),
        path.with_suffix(".yaml").name,
        kind,
        why,
        path.with_suffix(".yaml").name,
    )
    return kind
