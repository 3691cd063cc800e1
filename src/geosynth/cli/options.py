"""Options every dataset-reading subcommand shares, declared once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer._click as click

if TYPE_CHECKING:
    from geosynth.data import ImageDataset
    from geosynth.limits import Limit


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


def option_limit(param: Any, library: Mapping[str, str] | None = None) -> Limit | None:
    """What a numeric option (int or float) may be: :data:`geosynth.limits.LIMITS`'s entry for
    its parameter name, or for the library parameter it feeds (``library``: the command's
    ``LIBRARY_PARAMS``, library name -> flag), narrowed by the option's own ``min`` / ``max``;
    None for options that are not numbers. Unlisted numbers get "any finite number" (and fail
    tests/cli/test_numeric_options.py until listed)."""
    from geosynth.limits import FINITE, LIMITS, Limit

    desc = getattr(param, "type_descriptor", None)
    if desc is None or desc.annotation not in (int, float):
        return None
    names = [param.name] + [n for n, flag in (library or {}).items() if flag in param.opts]
    limit = next((LIMITS[n] for n in names if n in LIMITS), FINITE)
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None and (limit.low is None or low > limit.low):
        limit = Limit(low, limit.high, False, limit.high_open, limit.integer)
    if high is not None and (limit.high is None or high < limit.high):
        limit = Limit(limit.low, high, limit.low_open, False, limit.integer)
    return limit


def guard_numbers(command: Any, library: Mapping[str, str] | None = None) -> None:
    """Check every numeric option of ``command`` (a click/Typer command) while it is parsed,
    from the command line, ``--config`` or a default alike: NaN, infinities and values outside
    the option's meaning (:func:`option_limit`) are a usage error, one line and exit code 2,
    before the command runs. ``--help`` shows each range."""
    for param in getattr(command, "params", []):
        limit = option_limit(param, library)
        if limit is None:
            continue
        plain = param.process_value

        def process_value(
            ctx: click.Context, value: Any, plain: Any = plain, limit: Limit = limit, p: Any = param
        ) -> Any:
            given = value
            value = plain(ctx, value)
            for v in value if isinstance(value, list | tuple) else [value]:
                why = None if v is None else limit.problem(v)
                if why is not None:
                    raise click.exceptions.BadParameter(f"{given}: {why}", ctx=ctx, param=p)
            return value

        param.process_value = process_value
        if limit.low is not None or limit.high is not None:
            param._get_number_range_help_str = lambda limit=limit: limit.help_text()
