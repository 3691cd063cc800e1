"""Sampling (``geosynth generate``): the initial noise (:mod:`.noise`: Gaussian or leak-aligned),
schedulers by short name (:mod:`.schedulers`), ControlNet inputs (:mod:`.control`), resumable and
shardable generation jobs (:mod:`.generate`), images from semantic maps (:mod:`.mapgen`), and the
one-call builders that resolve a job from plain arguments (:mod:`.pipeline`:
:func:`load_generation`, :func:`load_map_generation`)."""

from geosynth.diffusion.loras import LoraSet, resolve_loras
from geosynth.diffusion.sampling.generate import GenerationSpec, run_generation
from geosynth.diffusion.sampling.mapgen import MapGeneration, load_map_generation
from geosynth.diffusion.sampling.noise import gaussian_latents, leak_aligned_latents
from geosynth.diffusion.sampling.pipeline import Generation, load_generation
from geosynth.diffusion.sampling.schedulers import make_scheduler

__all__ = [
    "Generation",
    "GenerationSpec",
    "LoraSet",
    "MapGeneration",
    "gaussian_latents",
    "leak_aligned_latents",
    "load_generation",
    "load_map_generation",
    "make_scheduler",
    "resolve_loras",
    "run_generation",
]
