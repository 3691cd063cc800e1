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
        "JSON spec (file or object, docs/formats.md) or an artifact that records one (a LoRA "
        "folder, a channel-means file, a generated dataset). Default: the one a generated "
        "dataset records, else by detected kind, printed once.",
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
MetadataTableOpt = Annotated[
    str | None,
    typer.Option(
        "--metadata-table",
        help="Sidecar metadata: a CSV or JSON-lines file with a file_name column (the sample's "
        "path in DATASET) and lon, lat, gsd, cloud_cover, date or any other columns "
        "(docs/formats.md#metadata).",
    ),
]
MapLegendOpt = Annotated[
    Path | None,
    typer.Option(
        "--map-legend",
        help="Legend of the masks / maps: legend.json (classes, colours, ignore; docs/formats.md) "
        "or a dataset palette such as classes.json (default: found beside the data).",
    ),
]
IgnoreOpt = Annotated[
    str | None,
    typer.Option(
        "--ignore",
        help="Mask pixels that are unlabelled, added to the legend: comma-separated values "
        "(255), colours (#000000) or class names.",
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
    str, typer.Option("--precision", help="auto (fp16 on GPU), fp32, fp16, bf16.")
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
    metadata_table: str | None = None,
    map_legend: Path | None = None,
    ignore: str | None = None,
) -> ImageDataset:
    """Apply the shared dataset options in the order the docs state; data that is not 8-bit RGB
    gets ``radiometry`` (``--radiometry``'s value) or the default spec of its kind (announced on
    stderr); ``label_map`` (``--label-map``) picks BigEarthNet patches' classes;
    ``metadata_table`` (``--metadata-table``) adds a sidecar table's fields; ``map_legend``
    and ``ignore`` read a segmentation dataset's masks."""
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
        metadata_table=metadata_table,
        map_legend=map_legend,
        ignore=split_list(ignore),
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
