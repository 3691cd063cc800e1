"""``geosynth inspect``: what is in a safetensors artifact."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from geosynth import describe
from geosynth.cli.options import JsonOpt
from geosynth.cli.output import json_text, print_json, print_table


class Kind(StrEnum):
    any = "any"
    embeddings = "embeddings"
    channel_means = "channel-means"


def inspect_file(
    path: Annotated[Path, typer.Argument(help="A .safetensors file.", show_default=False)],
    kind: Annotated[
        Kind,
        typer.Option(
            "--kind",
            help="Also check that the file is a valid artifact of this kind "
            "(exit code 2 if not): embeddings or channel-means.",
        ),
    ] = Kind.any,
    as_json: JsonOpt = False,
) -> None:
    """Show the tensors (name, shape, dtype) and metadata of a safetensors file.

    \b
    Example:
      geosynth inspect means.safetensors --kind channel-means --json
    """
    info = describe(path, kind=None if kind is Kind.any else kind.value)
    tensors, metadata = info["tensors"], info["metadata"]
    if as_json:
        print_json(info)
        return
    print_table(
        f"{path}: tensors",
        ["name", "shape", "dtype"],
        [(k, "x".join(map(str, v["shape"])), v["dtype"]) for k, v in tensors.items()],
    )
    print_table(
        "metadata",
        ["key", "value"],
        [(k, json_text(v)) for k, v in metadata.items()],
    )
