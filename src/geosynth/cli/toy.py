"""``geosynth toy``: procedural toy data and tiny models for demos, tests and quick experiments."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from geosynth import toy_data as make_toy_data
from geosynth import toy_model as make_toy_model
from geosynth import toy_sar as make_toy_sar
from geosynth.cli.options import split_list
from geosynth.cli.output import message

app = typer.Typer(
    help="Toy data and tiny models that run the whole pipeline on 2 CPU cores.",
    no_args_is_help=True,
)


class DataFormat(StrEnum):
    folder = "folder"
    hf = "hf"


class ModelKind(StrEnum):
    all = "all"
    sd = "sd"
    sdxl = "sdxl"
    dinov2 = "dinov2"
    clip = "clip"
    timm = "timm"


@app.command("data")
def toy_data(
    out: Annotated[Path, typer.Option("--out", help="Output directory.", show_default=False)],
    per_class: Annotated[int, typer.Option("--per-class", min=1, help="Images per class.")] = 16,
    size: Annotated[int, typer.Option("--size", min=8, max=512, help="Image side in pixels.")] = 32,
    seed: Annotated[int, typer.Option("--seed", help="Seed; same seed, same pixels.")] = 0,
    classes: Annotated[
        str | None,
        typer.Option(
            "--classes",
            help="Comma-separated names (water, forest, desert, cropland, urban, snow) "
            "or a count. Default: the first five.",
        ),
    ] = None,
    fmt: Annotated[
        DataFormat,
        typer.Option("--format", help="folder: imagefolder + metadata.jsonl; hf: save_to_disk."),
    ] = DataFormat.folder,
    paired: Annotated[
        bool,
        typer.Option(
            "--paired",
            help="Land-cover maps with images rendered from them (per-class x classes pairs, "
            "labelled by dominant map class; maps/ + legend.json).",
        ),
    ] = False,
) -> None:
    """Write a procedural toy satellite dataset (classes differ in colour and texture).

    \b
    Example:
      geosynth toy data --out toy/train --per-class 16 --seed 0
    """
    listed = split_list(classes)
    names: list[str] | int | None = listed
    if listed and len(listed) == 1 and listed[0].isdigit():
        names = int(listed[0])
    pairs = make_toy_data(
        out,
        per_class=per_class,
        size=size,
        seed=seed,
        classes=names,
        fmt=fmt.value,
        paired=paired,
    )
    if pairs is not None:
        message(f"wrote {pairs} toy map/image pairs to {out}")
        return
    message(f"wrote toy dataset to {out}")


@app.command("sar")
def toy_sar(
    out: Annotated[Path, typer.Option("--out", help="Output directory.", show_default=False)],
    per_class: Annotated[int, typer.Option("--per-class", min=1, help="Chips per class.")] = 8,
    size: Annotated[int, typer.Option("--size", min=8, max=512, help="Chip side in pixels.")] = 32,
    seed: Annotated[int, typer.Option("--seed", help="Seed; same seed, same values.")] = 0,
    looks: Annotated[
        float, typer.Option("--looks", min=1.0, help="Speckle: gamma shape (number of looks).")
    ] = 4.0,
) -> None:
    """Write a procedural toy SAR dataset: float32 VV/VH linear power GeoTIFFs with gamma speckle.

    Classes (water, cropland, forest, urban) differ in mean backscatter per polarisation.

    \b
    Example:
      geosynth toy sar --out toy-sar/ --per-class 8
    """
    make_toy_sar(out, per_class=per_class, size=size, seed=seed, looks=looks)
    message(f"wrote toy SAR dataset to {out}")


@app.command("model")
def toy_model(
    out: Annotated[Path, typer.Option("--out", help="Output directory.", show_default=False)],
    kind: Annotated[
        ModelKind,
        typer.Option(
            "--kind",
            help="sd: Stable-Diffusion-2-shaped pipeline; sdxl: SDXL-shaped pipeline (two text "
            "encoders, size conditioning); dinov2: feature extractor; clip: open_clip "
            "classifier backbone; timm: tiny timm backbone; all: each in OUT/<kind>/.",
        ),
    ] = ModelKind.all,
    size: Annotated[int, typer.Option("--size", min=16, help="Image size the models take.")] = 32,
    seed: Annotated[int, typer.Option("--seed", help="Initialisation seed.")] = 0,
    vae_steps: Annotated[
        int, typer.Option("--vae-steps", min=0, help="Autoencoder training steps on toy data.")
    ] = 200,
) -> None:
    """Build tiny models from configs, saved in the real models' layouts.

    The SD pipeline loads with StableDiffusionPipeline.from_pretrained(OUT/sd), the SDXL one
    with StableDiffusionXLPipeline.from_pretrained(OUT/sdxl); pass either as --model to any
    step.

    \b
    Example:
      geosynth toy model --out toy-models --kind all
      geosynth toy model --out toy-sdxl --kind sdxl
    """
    paths = make_toy_model(out, kind=kind.value, size=size, seed=seed, vae_steps=vae_steps)
    for name, path in paths.items():
        message(f"wrote toy {name} model to {path}")
