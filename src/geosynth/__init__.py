"""geosynth: synthetic satellite, aerial and SAR training data with diffusion models.

The front door: one library call per pipeline step, the same call the command of that name makes
(docs/library.md shows one run of each)::

    from geosynth import load_dataset, finetune, channel_means, generate, rarity
    from geosynth import train_clf, train_seg, build_plora, evaluate, filter

The names load on first use (module ``__getattr__`` over :data:`EXPORTS`), so ``import geosynth``
and ``geosynth --help`` stay fast; the sub-packages (``geosynth.data``, ``geosynth.features``,
``geosynth.metrics``, ``geosynth.diffusion``, ``geosynth.classify``, ``geosynth.segment``,
``geosynth.plora``, ``geosynth.artifacts``) hold the pieces the steps are made of.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from geosynth.errors import GeosynthError

#: The front door: name -> "module:attribute", imported on first access. One line per step; a new
#: step adds its line here (and to docs/library.md).
EXPORTS: dict[str, str] = {
    "load_dataset": "geosynth.data.load:load_dataset",
    "tile_scenes": "geosynth.data.tile:tile_scenes",
    "dataset_info": "geosynth.data.steps:dataset_info",
    "export_subset": "geosynth.data.steps:export_subset",
    "finetune": "geosynth.diffusion.training.finetune:finetune",
    "channel_means": "geosynth.diffusion.channel_means:channel_means",
    "generate": "geosynth.diffusion.sampling.step:generate",
    "rarity": "geosynth.metrics.rarity:rarity",
    "train_clf": "geosynth.classify.run:train_and_test",
    "train_seg": "geosynth.segment.run:train_and_test",
    "build_plora": "geosynth.plora.build:build_plora",
    "evaluate": "geosynth.metrics.evaluation:evaluate",
    "filter": "geosynth.curation.run:filter_dataset",
    "correlate_reports": "geosynth.metrics.correlate:correlate_reports",
    "run_demo": "geosynth.demo:run_demo",
    "export_lora": "geosynth.diffusion.kohya:export_lora",
    "import_lora": "geosynth.diffusion.kohya:import_lora",
    "embed": "geosynth.features.embed_step:embed",
    "describe": "geosynth.artifacts.inspection:describe",
    "replay_argv": "geosynth.artifacts.provenance:replay_argv",
    "toy_data": "geosynth.toy.steps:toy_data",
    "toy_sar": "geosynth.toy.steps:toy_sar",
    "toy_model": "geosynth.toy.steps:toy_model",
}

__all__ = [  # the names of EXPORTS, spelled out for static tools (a test keeps them equal)
    "EXPORTS",
    "GeosynthError",
    "__version__",
    "build_plora",
    "channel_means",
    "correlate_reports",
    "dataset_info",
    "describe",
    "embed",
    "evaluate",
    "export_lora",
    "export_subset",
    "filter",
    "finetune",
    "generate",
    "import_lora",
    "load_dataset",
    "rarity",
    "replay_argv",
    "run_demo",
    "tile_scenes",
    "toy_data",
    "toy_model",
    "toy_sar",
    "train_clf",
    "train_seg",
]

if TYPE_CHECKING:
    from geosynth.artifacts.inspection import describe
    from geosynth.artifacts.provenance import replay_argv
    from geosynth.classify.run import train_and_test as train_clf
    from geosynth.curation.run import filter_dataset as filter
    from geosynth.data.load import load_dataset
    from geosynth.data.steps import dataset_info, export_subset
    from geosynth.data.tile import tile_scenes
    from geosynth.demo import run_demo
    from geosynth.diffusion.channel_means import channel_means
    from geosynth.diffusion.kohya import export_lora, import_lora
    from geosynth.diffusion.sampling.step import generate
    from geosynth.diffusion.training.finetune import finetune
    from geosynth.features.embed_step import embed
    from geosynth.metrics.correlate import correlate_reports
    from geosynth.metrics.evaluation import evaluate
    from geosynth.metrics.rarity import rarity
    from geosynth.plora.build import build_plora
    from geosynth.segment.run import train_and_test as train_seg
    from geosynth.toy.steps import toy_data, toy_model, toy_sar


def __getattr__(name: str) -> Any:
    target = EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'geosynth' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(EXPORTS))
