"""Sampling schedulers by short name, built from the pipeline's own scheduler config."""

from __future__ import annotations

from typing import Any

from geosynth.defaults import SCHEDULER_NAMES
from geosynth.errors import GeosynthError

#: name -> (diffusers class, config overrides)
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "pndm": ("PNDMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "dpm-solver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
}
assert tuple(SCHEDULERS) == SCHEDULER_NAMES, "geosynth.defaults.SCHEDULER_NAMES is out of date"


def make_scheduler(name: str | None, base_config: Any):
    """A scheduler of kind ``name`` (None: the pipeline's own) with the model's noise schedule."""
    import diffusers

    if name is None:
        return None
    if name not in SCHEDULERS:
        raise GeosynthError(f"scheduler={name!r}: expected one of {', '.join(SCHEDULERS)}")
    cls_name, overrides = SCHEDULERS[name]
    return getattr(diffusers, cls_name).from_config(base_config, **overrides)
