"""Options every dataset-reading subcommand shares, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from geosynth.data import ImageDataset


DatasetArg = Annotated[
    str,
    typer.Argument(
        metavar="DATASET",
        help="Image folder (root/<class>/*.png|jpg|tif), folder with metadata.jsonl, "
        "saved Hugging Face dataset, or hub dataset id.",
        show_default=False,
    ),
]
SplitOpt = Annotated[
    str | None,
    typer.Option("--split", help="Split: a sub-folder (train, val, ...) or a Hugging Face split."),
]
ClassesOpt = Annotated[
    str | None,
    typer.Option("--classes", help="Comma-separated subset of class names, e.g. Forest,SeaLake."),
]
ShotsOpt = Annotated[
    int | None,
    typer.Option("--shots", min=1, help="Keep K images per class (stratified, deterministic)."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for sampling and everything random.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
RadiometryOpt = Annotated[
    str | None,
    typer.Option(
        "--radiometry",
        help="How native values (SAR, 16-bit, multispectral) map to the model's 3 channels: a "
        "JSON file or object (docs/formats.md). Default: by detected kind, printed once.",
    ),
]
LabelMapOpt = Annotated[
    str | None,
    typer.Option(
        "--label-map",
        help="BigEarthNet patches: {label: class} as a JSON file or object; a patch's class is "
        "that of the first key among its labels (default: its first BigEarthNet-19 label).",
    ),
]

FeaturesOpt = Annotated[
    str,
    typer.Option(
        "--features",
        help="Feature model: dinov2-small|base|large|giant, a transformers hub id or directory, "
        "open_clip:NAME/PRETRAINED, open_clip:local-dir:DIR, timm:NAME or timm:local-dir:DIR.",
    ),
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda, cuda:1 (default: cuda when present).")
]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        help="auto: fp32 on the CPU (and any non-CUDA device), fp16 on every CUDA GPU; or fp32, "
        "fp16, bf16 (half precision on GPU only: the CPU computes in fp32).",
    ),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")]


def split_list(value: str | None) -> list[str] | None:
    """ "a,b , c" -> ["a", "b", "c"]; None stays None."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def dataset_from_options(
    dataset: str,
    split: str | None,
    classes: str | None,
    shots: int | None,
    seed: int,
    radiometry: str | None = None,
    label_map: str | None = None,
) -> ImageDataset:
    """Apply the shared dataset options in the order the docs state; data that is not 8-bit RGB
    gets ``radiometry`` (``--radiometry``'s value) or the default spec of its kind (announced on
    stderr); ``label_map`` (``--label-map``) picks BigEarthNet patches' classes."""
    from geosynth import load_dataset
    from geosynth.cli.output import message

    return load_dataset(
        dataset,
        split=split,
        classes=split_list(classes),
        shots=shots,
        seed=seed,
        radiometry=radiometry or "auto",
        log=message,
        label_map=label_map,
    )


ReportToOpt = Annotated[
    str | None,
    typer.Option(
        "--report-to",
        help="tensorboard or wandb: log the training curves (accelerate's trackers).",
    ),
]
LoggingDirOpt = Annotated[
    Path | None,
    typer.Option("--logging-dir", help="Where --report-to writes (default: OUT.logs)."),
]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile", help="torch.compile the UNet (faster on GPU after a warm-up; default off)"
    ),
]
