"""``geosynth toy``: procedural toy data and tiny models for demos, tests and quick experiments."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from geosynth.artifacts import Provenance
from geosynth.cli.options import split_list
from geosynth.cli.output import message
from geosynth.errors import GeosynthError

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
    from geosynth.toy.data import make_toy_dataset, resolve_toy_classes, toy_hf_dataset

    listed = split_list(classes)
    names: list[str] | int | None = listed
    if listed and len(listed) == 1 and listed[0].isdigit():
        names = int(listed[0])
    if paired:
        from geosynth.toy.paired import make_toy_paired_dataset

        if fmt is not DataFormat.folder:
            raise GeosynthError("--paired writes an image folder: use --format folder")
        n = per_class * len(resolve_toy_classes(names))
        prov = Provenance.start("toy data", seeds={"seed": seed}, pairs=n, size=size)
        make_toy_paired_dataset(out, n=n, size=size, seed=seed, classes=names, provenance=prov)
        message(f"wrote {n} toy map/image pairs to {out}")
        return
    if fmt is DataFormat.folder:
        prov = Provenance.start("toy data", seeds={"seed": seed}, per_class=per_class, size=size)
        make_toy_dataset(
            out, per_class=per_class, size=size, seed=seed, classes=names, provenance=prov
        )
    else:
        from geosynth.artifacts import atomic_path, write_provenance
        from geosynth.data.writer import check_output_dir

        check_output_dir(out)
        ds = toy_hf_dataset(per_class=per_class, size=size, seed=seed, classes=names)
        prov = Provenance.start("toy data", seeds={"seed": seed}, per_class=per_class, size=size)
        with atomic_path(out) as tmp:
            ds.save_to_disk(str(tmp))
            write_provenance(tmp, prov)
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
    from geosynth.data.writer import check_output_dir
    from geosynth.toy.sar import make_toy_sar_dataset

    check_output_dir(out)
    make_toy_sar_dataset(out, per_class=per_class, size=size, seed=seed, looks=looks)
    message(f"wrote toy SAR dataset to {out}")


@app.command("model")
def toy_model(
    out: Annotated[Path, typer.Option("--out", help="Output directory.", show_default=False)],
    kind: Annotated[
        ModelKind,
        typer.Option(
            "--kind",
            help="sd: Stable-Diffusion-shaped pipeline; dinov2: feature "
            "extractor; clip: open_clip classifier backbone; timm: tiny timm backbone; all: each in OUT/<kind>/.",
        ),
    ] = ModelKind.all,
    size: Annotated[int, typer.Option("--size", min=16, help="Image size the models take.")] = 32,
    seed: Annotated[int, typer.Option("--seed", help="Initialisation seed.")] = 0,
    vae_steps: Annotated[
        int, typer.Option("--vae-steps", min=0, help="Autoencoder training steps on toy data.")
    ] = 200,
) -> None:
    """Build tiny models from configs, saved in the real models' layouts.

    The SD pipeline loads with StableDiffusionPipeline.from_pretrained(OUT/sd); pass it as
    --model to any step.

    \b
    Example:
      geosynth toy model --out toy-models --kind all
    """
    from geosynth.toy import models

    if size % 8:
        raise GeosynthError(f"--size {size}: must be a multiple of 8 (the models' patch size)")
    if kind is ModelKind.all:
        paths = models.make_toy_models(out, size=size, seed=seed, vae_steps=vae_steps)
        for name, path in paths.items():
            message(f"wrote toy {name} model to {path}")
        return
    if kind is ModelKind.sd:
        models.make_toy_sd_pipeline(out, size=size, seed=seed, vae_steps=vae_steps)
    elif kind is ModelKind.dinov2:
        models.make_toy_dinov2(out, size=size, seed=seed)
    elif kind is ModelKind.clip:
        models.make_toy_clip(out, seed=seed)
    else:
        models.make_toy_timm(out, seed=seed)
    message(f"wrote toy {kind.value} model to {out}")
