"""Sampling (``geosynth generate``): the initial noise (:mod:`.noise`: Gaussian or leak-aligned),
schedulers by short name (:mod:`.schedulers`), ControlNet inputs (:mod:`.control`), resumable and
shardable generation jobs (:mod:`.generate`) and images from semantic maps (:mod:`.mapgen`)."""

from geosynth.diffusion.sampling.generate import GenerationSpec, run_generation
from geosynth.diffusion.sampling.noise import gaussian_latents, leak_aligned_latents
from geosynth.diffusion.sampling.schedulers import make_scheduler

__all__ = [
    "GenerationSpec",
    "gaussian_latents",
    "leak_aligned_latents",
    "make_scheduler",
    "run_generation",
]
