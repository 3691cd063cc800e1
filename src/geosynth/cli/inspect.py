"""``geosynth inspect``: what is in a safetensors artifact."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from geosynth.artifacts import load_channel_means, load_embeddings, load_tensors
from geosynth.cli.options import JsonOpt
from geosynth.cli.output import print_json, print_table


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
    if kind is Kind.embeddings:
        load_embeddings(path)
    elif kind is Kind.channel_means:
        load_channel_means(path)
    tf = load_tensors(path)
    tensors = {
        k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
        for k, v in sorted(tf.tensors.items())
    }
    metadata: dict[str, object] = {}
    for key, value in sorted(tf.metadata.items()):
        try:
            metadata[key] = json.loads(value)
        except ValueError:
            metadata[key] = value
    if as_json:
        print_json({"path": str(path), "tensors": tensors, "metadata": metadata})
        return
    print_table(
        f"{path}: tensors",
        ["name", "shape", "dtype"],
        [(k, "x".join(map(str, v["shape"])), v["dtype"]) for k, v in tensors.items()],
    )
    print_table(
        "metadata",
        ["key", "value"],
        [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in metadata.items()],
    )
