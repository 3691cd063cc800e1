"""Fine-tuning (``geosynth finetune``): the recipe and its checks (:mod:`.recipe`), what trains and
how it is saved (:mod:`.trainable`), the denoising objective with offset noise, v-prediction and
min-SNR weights (:mod:`.objective`), the few-shot latents prepared once (:mod:`.train_data`,
:mod:`.maptrain` for map-conditioned models), the accelerate loop (:mod:`.trainer`) and the
whole job writing a LoRA directory (:mod:`.finetune`)."""

# bound as run_finetune: the name `finetune` stays the module (monkeypatch targets, docs)
from geosynth.diffusion.training.finetune import finetune as run_finetune
from geosynth.diffusion.training.objective import training_noise
from geosynth.diffusion.training.recipe import Recipe

__all__ = ["Recipe", "run_finetune", "training_noise"]
