"""The demo: every pipeline step that exists, run on toy data and tiny models, with a report.

Each step is a function that takes the :class:`DemoRun` and adds a markdown section and metrics
(:mod:`.generation_steps`, :mod:`.sdxl_steps`, :mod:`.measure_steps`); :data:`STEPS` lists them in order and
:func:`run_demo` runs them and writes the report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from geosynth import __version__
from geosynth.artifacts import atomic_path, check_replaceable, output_path, write_json
from geosynth.artifacts.jsontext import json_text
from geosynth.demo.generation_steps import (
    step_finetune,
    step_generate,
    step_plora,
    step_rarity,
    step_toy_data,
    step_toy_models,
)
from geosynth.demo.measure_steps import step_evaluate, step_maps, step_sar, step_train_clf
from geosynth.demo.record import BUILD_RECORD, build_record, is_current
from geosynth.demo.sdxl_steps import step_sdxl
from geosynth.demo.state import DemoRun
from geosynth.errors import GeosynthError

__all__ = ["BUILD_RECORD", "STEPS", "DemoRun", "is_current", "run_demo", "step_train_clf"]


STEPS: list[tuple[str, Callable[[DemoRun], None]]] = [
    ("toy data", step_toy_data),
    ("toy models", step_toy_models),
    ("rarity", step_rarity),
    ("finetune", step_finetune),
    ("generate", step_generate),
    ("sdxl", step_sdxl),
    ("sar", step_sar),
    ("plora", step_plora),
    ("evaluate", step_evaluate),
    ("train-clf", step_train_clf),
    ("maps", step_maps),
]


#: Written first into the demo's folder: a rerun may replace the sub-folders it made.
DEMO_MARK = ".geosynth-demo"


def check_demo_out(out: Path) -> None:
    """The output check of every writer for the demo's folder: a rerun replaces the sub-folders
    (``synth-gaussian/``, ``toy-sar/``, ...) of an earlier demo, so a folder with other content
    is refused before anything in it is touched."""
    check_replaceable(out, "directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / DEMO_MARK).is_file() and not (out / "report.md").is_file():
        raise GeosynthError(
            f"out={str(out)!r}: exists and is not an earlier demo's output (a rerun replaces "
            "the demo's own sub-folders); choose a new path"
        )


def run_demo(
    out: str | os.PathLike[str] = "demo-out",
    *,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Path:
    """Run every demo step into ``out`` and write ``report.md``, ``metrics.json`` and, last,
    ``build.json`` (what the run was built from: :mod:`geosynth.demo.record`)."""
    torch.manual_seed(seed)
    run = DemoRun(out=output_path(out), seed=seed, log=log)
    check_demo_out(run.out)
    run.out.mkdir(parents=True, exist_ok=True)
    (run.out / DEMO_MARK).write_text("a geosynth demo output: a rerun replaces its folders\n")
    # A run that stops half-way must not leave an earlier run's record beside its new files.
    (run.out / BUILD_RECORD).unlink(missing_ok=True)
    record = build_record(seed)  # taken now: the code and data this run is built from
    timings: dict[str, float] = {}
    for name, step in STEPS:
        log(f"demo: {name} ...")
        t0 = time.perf_counter()
        step(run)
        timings[name] = round(time.perf_counter() - t0, 2)
    run.metrics["seconds"] = timings
    report = (
        f"# geosynth demo (version {__version__})\n\n"
        "Every step that geosynth has, on procedural toy data and tiny models "
        f"(seed {seed}). Timings in seconds: {json_text(timings)}.\n\n" + "\n".join(run.sections)
    )
    with atomic_path(run.out / "report.md") as tmp:
        tmp.write_text(report)
    write_json(run.out / "metrics.json", run.metrics)
    write_json(run.out / BUILD_RECORD, record)
    return run.out / "report.md"
