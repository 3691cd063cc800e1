"""What ``resume=True`` continues, checked before anything is loaded: the newest checkpoint of
each run in ``OUT.parts`` (one run, or one per class) must have been written with the settings
given now; the settings that differ are named, and each run says the step it continues from."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geosynth.artifacts import json_text, settings_diff
from geosynth.errors import GeosynthError


def recipe_record(recipe_dict: dict[str, Any]) -> dict[str, Any]:
    """The recipe as a checkpoint's ``state.json`` holds it (JSON types: tuples as lists)."""
    return json.loads(json_text(recipe_dict))


def newest_checkpoints(work: Path) -> list[Path]:
    """The newest ``step-*`` checkpoint of each run under ``work`` (``OUT.parts``)."""
    runs: dict[Path, Path] = {}
    for state in sorted(work.rglob("step-*/state.json")):
        step = state.parent
        runs[step.parent] = max(runs.get(step.parent, step), step)
    return [runs[r] for r in sorted(runs)]


def check_resume(work: Path, recipe_dict: dict[str, Any], log: Callable[[str], None]) -> None:
    """Refuse to resume checkpoints written with other settings (naming them); else say where
    each run continues."""
    found = newest_checkpoints(work) if work.is_dir() else []
    if not found:
        log(f"resume: no checkpoint in {work}; training starts at step 0")
        return
    new = recipe_record(recipe_dict)
    for ckpt in found:
        try:
            state = json.loads((ckpt / "state.json").read_text())
            old, step = dict(state["recipe"]), int(state["step"])
        except (OSError, ValueError, KeyError, TypeError):
            raise GeosynthError(
                f"resume=True: {ckpt / 'state.json'} is not a readable checkpoint state; pass "
                "overwrite=True to start over"
            ) from None
        if old != new:
            raise GeosynthError(
                f"resume=True: {ckpt} was written with other settings ({settings_diff(old, new)}); "
                "resume with those, or pass overwrite=True to start over"
            )
        run = ckpt.parent.parent  # OUT.parts, or OUT.parts/checkpoints/<class>
        who = "" if run == work else f"{run.name}: "
        log(f"{who}resuming from step {step} ({ckpt})")
