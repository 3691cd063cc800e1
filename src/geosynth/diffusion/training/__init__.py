"""Fine-tuning (``geosynth finetune``): the recipe and its checks (:mod:`.recipe`), what trains and
how it is saved (:mod:`.trainable`), the denoising objective with offset noise, v-prediction and
min-SNR weights (:mod:`.objective`), the few-shot latents prepared once (:mod:`.train_data`,
:mod:`.maptrain` for map-conditioned models), the accelerate loop (:mod:`.trainer`) and the
whole job writing a LoRA directory (:mod:`.finetune`)."""

from geosynth.diffusion.training.finetune import finetune
from geosynth.diffusion.training.objective import training_noise
from geosynth.diffusion.training.recipe import Recipe

__all__ = ["Recipe", "finetune", "training_noise"]
