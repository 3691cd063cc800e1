"""``geosynth replay``: run a recorded command again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth import replay_argv
from geosynth.errors import GeosynthError


def replay(
    record: Annotated[
        Path,
        typer.Argument(
            help="An output directory, its provenance.json, a *.provenance.json sidecar or a "
            "LoRA card (geosynth.json).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", help="Where the rerun writes (must not exist).", show_default=False),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the command line and stop.")
    ] = False,
) -> None:
    """Run a recorded command again, into a new output: same inputs, options and seeds.

    The command line comes from the record's provenance.json; --out replaces the recorded
    output, and --resume / --overwrite / --json are dropped. Options can also be taken from a
    record and changed: `geosynth finetune --config lora/ --lr 5e-5 --out lora-b/`.

    \b
    Example:
      geosynth replay lora/ --out lora-again/
    """
    from geosynth.cli.config import recorded_argv
    from geosynth.cli.main import main  # deferred: cli.main loads this module

    if out.exists():
        raise GeosynthError(f"out={str(out)!r}: already exists; choose a new path")
    # the recorded command line less --out and the flags that never change what a run writes
    args = replay_argv(recorded_argv(record), out)
    if dry_run:
        typer.echo(" ".join(["geosynth", *args]))
        return
    code = main(args)
    if code:
        raise typer.Exit(code)
