"""The fine-tuning optimiser: AdamW, or AdamW with 8-bit states (bitsandbytes) to save memory.

8-bit states take 2 bytes per trained parameter instead of 8: about 0.05 GB for SD 2.1-base's
rank-16 UNet and text-encoder LoRAs (little), but 5 GB for a fully trained UNet (docs/finetune.md,
"Memory"). bitsandbytes is an optional extra (``pip install 'geosynth-toolkit[optim8bit]'``) and
its 8-bit optimisers run on CUDA GPUs only.
"""

from __future__ import annotations

from typing import Any

import torch

from geosynth.errors import GeosynthError
from geosynth.extras import require

OPTIMIZERS = ("adamw", "adamw8bit")


def check_optimizer(name: str, device: torch.device) -> None:
    """Fail early, in one line, on an unknown optimiser or one this platform cannot run."""
    if name not in OPTIMIZERS:
        raise GeosynthError(f"optimizer={name!r}: expected one of {', '.join(OPTIMIZERS)}")
    if name == "adamw8bit":
        if device.type != "cuda":
            raise GeosynthError(
                f"optimizer='adamw8bit': bitsandbytes' 8-bit optimisers need a CUDA GPU, "
                f"not device '{device}' (use optimizer='adamw')"
            )
        require("bitsandbytes", "optimizer='adamw8bit'")


def make_optimizer(name: str, groups: Any, lr: float) -> torch.optim.Optimizer:
    """The optimiser over ``groups`` (parameter groups with their weight decay)."""
    if name == "adamw8bit":
        bnb = require("bitsandbytes.optim", "optimizer='adamw8bit'")
        return bnb.AdamW8bit(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
