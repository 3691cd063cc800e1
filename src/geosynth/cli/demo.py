"""``geosynth demo``: the pipeline on the embedded toy data, end to end, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth.cli.output import message


def demo(
    out: Annotated[Path, typer.Option("--out", help="Directory for outputs and report.md.")] = Path(
        "demo-out"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed for every step.")] = 0,
) -> None:
    """Run every existing step on toy data and tiny models, with a report.

    Takes a few minutes on 2 CPU cores; writes OUT/report.md with image grids and metrics.

    \b
    Example:
      geosynth demo --out demo-out
    """
    from geosynth import run_demo

    report = run_demo(out, seed=seed, log=message)
    message(f"report: {report}")
