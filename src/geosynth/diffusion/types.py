"""Names for the diffusers objects geosynth passes around, for annotations only.

Under a type checker they are diffusers' own classes; at run time they are ``Any``, so importing
them costs nothing and needs no diffusers (which is imported inside the functions that load
models). A pipeline here is any Stable-Diffusion-shaped pipeline (``.vae``, ``.unet``,
``.text_encoder``, ``.tokenizer``, ``.scheduler``), including the toy ones geosynth builds.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffusers import AutoencoderKL as VAE
    from diffusers import SchedulerMixin as Scheduler
    from diffusers import StableDiffusionPipeline as Pipeline
    from diffusers import UNet2DConditionModel as UNet
else:
    VAE = Scheduler = Pipeline = UNet = Any

__all__ = ["VAE", "Pipeline", "Scheduler", "UNet"]
