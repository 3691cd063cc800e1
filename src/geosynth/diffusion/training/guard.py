"""Stop a training run at the first non-finite number, before the weights take it.

A NaN or infinite loss (or gradient norm, without fp16 loss scaling, which skips such steps by
itself) would turn every weight into NaN at the optimiser step, and the run would go on to write
a LoRA of NaNs with exit code 0. :func:`check_step` raises :class:`Diverged` instead, naming the
step; the checkpoints already written (all from finite steps) stay where they are (a run that
diverged before its first checkpoint leaves nothing: :func:`drop_if_nothing_kept`).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

from geosynth.errors import GeosynthError


class Diverged(GeosynthError):
    """A non-finite loss or gradient at ``step``; ``checkpoint`` is the last one kept (or None)."""

    def __init__(self, message: str, step: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint


def check_step(
    loss: float,
    grad_norm: float | None,
    step: int,
    total: int,
    latest: Callable[[], Path | None],
) -> None:
    """Raise :class:`Diverged` when ``loss`` (or ``grad_norm``, when given) is not finite;
    ``latest`` finds the newest checkpoint (looked up only then)."""
    if math.isfinite(loss) and (grad_norm is None or math.isfinite(grad_norm)):
        return
    checkpoint = latest()
    what = f"the loss is {loss}" if not math.isfinite(loss) else f"the gradient norm is {grad_norm}"
    kept = (
        f"the last good checkpoint is kept ({checkpoint})"
        if checkpoint is not None
        else "no checkpoint was written before it, so nothing is kept"
    )
    raise Diverged(
        f"training diverged at step {step} of {total}: {what}; stopped before the weights took "
        f"it, {kept}; lower `lr` or `offset_noise`, or train in fp32 (`mixed_precision`)",
        step,
        checkpoint,
    )


def drop_if_nothing_kept(parts: Path) -> None:
    """Remove a run's ``OUT.parts`` when it holds no checkpoint and no finished result: a run
    that diverged before its first checkpoint leaves nothing behind, so the corrected command
    runs without ``resume`` or ``overwrite``."""
    if parts.is_dir() and not any(parts.rglob("step-*")) and not (parts / "result").exists():
        shutil.rmtree(parts, ignore_errors=True)
