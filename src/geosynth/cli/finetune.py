"""``geosynth finetune``: LoRA / full / hybrid fine-tuning of Stable Diffusion on few-shot data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from geosynth import finetune as run_finetune
from geosynth.cli.options import (
    ClassesOpt,
    CompileOpt,
    DatasetArg,
    JsonOpt,
    LoggingDirOpt,
    MetadataTableOpt,
    RadiometryOpt,
    ReportToOpt,
    SeedOpt,
    ShotsOpt,
    SplitOpt,
    dataset_from_options,
)
from geosynth.cli.output import LiveProgress, is_main_process, message, print_json, print_table
from geosynth.defaults import PROMPT_TEMPLATE, SD_MODEL

if TYPE_CHECKING:
    from geosynth.diffusion.training.trainer import StepInfo

#: Library parameters that this command's options feed under other names (cli/errors.py).
LIBRARY_PARAMS = {
    "rank": "--lora-rank",
    "alpha": "--lora-alpha",
    "mixed_precision": "--precision",
    "per_class": "--class-loras",
    "unet": "--train-unet",
    "text_encoder": "--train-text-encoder",
    "vae_decoder": "--train-vae-decoder",
    "vae_encoder": "--train-vae-encoder",
    "init_loras": "--init-lora",
    "text": "--map-text",
    "tokens": "--map-tokens",
    "dropout": "--map-dropout",
    "compile_unet": "--compile",
}

Mode = Annotated[str, typer.Option(help="lora, full or frozen.")]


def finetune(
    dataset: DatasetArg,
    out: Annotated[Path, typer.Option("--out", help="Output LoRA directory.", show_default=False)],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Base pipeline: hub id, directory or single-file .safetensors (SD 1.x, 2.x, SDXL).",
        ),
    ] = SD_MODEL,
    split: SplitOpt = None,
    classes: ClassesOpt = None,
    shots: ShotsOpt = None,
    seed: SeedOpt = 0,
    class_loras: Annotated[
        bool, typer.Option("--class-loras", help="One LoRA per class, in OUT/<class>/.")
    ] = False,
    train_unet: Annotated[
        str | None,
        typer.Option(
            "--train-unet", help="lora, full or frozen (default: lora; full with --condition)."
        ),
    ] = None,
    train_text_encoder: Annotated[
        str | None,
        typer.Option(
            "--train-text-encoder",
            help="lora, full or frozen (default: lora; frozen with --condition).",
        ),
    ] = None,
    train_vae_decoder: Annotated[
        str, typer.Option("--train-vae-decoder", help="frozen, full or lora (merged when saved).")
    ] = "frozen",
    train_vae_encoder: Annotated[
        str,
        typer.Option(
            "--train-vae-encoder",
            help="frozen, full or lora (merged when saved); recompute channel-means with "
            "`channel-means --lora OUT` afterwards.",
        ),
    ] = "frozen",
    learn_token: Annotated[
        str | None,
        typer.Option(
            "--learn-token", help="Train a new token embedding, e.g. '<sar>' (textual inversion)."
        ),
    ] = None,
    token_init: Annotated[
        str, typer.Option("--token-init", help="Word whose embedding starts the new token.")
    ] = "satellite",
    lora_rank: Annotated[int, typer.Option("--lora-rank", help="LoRA rank.")] = 16,
    lora_alpha: Annotated[
        float, typer.Option("--lora-alpha", help="LoRA alpha (scale = alpha / rank).")
    ] = 16.0,
    lora_dropout: Annotated[float, typer.Option("--lora-dropout")] = 0.0,
    lora_targets: Annotated[
        str,
        typer.Option(
            "--lora-targets",
            help="UNet LoRA targets: attention (DataDream), cross-attention-qkv (2LoRA), "
            "attention-ff, or comma-separated module names (to_q,attn2.to_k,ff.net.2).",
        ),
    ] = "attention",
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = 1e-4,
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = 1e-2,
    optimizer: Annotated[
        str,
        typer.Option(
            "--optimizer",
            help="adamw, or adamw8bit: 8-bit AdamW states (bitsandbytes, CUDA GPUs; "
            "pip install 'geosynth-toolkit[optim8bit]').",
        ),
    ] = "adamw",
    lr_schedule: Annotated[
        str, typer.Option("--lr-schedule", help="diffusers schedule name.")
    ] = "cosine",
    warmup_ratio: Annotated[
        float, typer.Option("--warmup-ratio", help="Share of steps spent warming up.")
    ] = 0.05,
    epochs: Annotated[int, typer.Option("--epochs")] = 200,
    max_steps: Annotated[
        int | None,
        typer.Option("--max-steps", help="Stop after N optimiser steps (overrides --epochs)."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Per-process batch size.")] = 8,
    grad_accum: Annotated[int, typer.Option("--grad-accum")] = 1,
    resolution: Annotated[
        int | None,
        typer.Option("--resolution", help="Training size (default: the model's native size)."),
    ] = None,
    flip: Annotated[bool, typer.Option("--flip/--no-flip", help="Random horizontal flips.")] = True,
    offset_noise: Annotated[
        float,
        typer.Option(
            "--offset-noise",
            help="Channel-wise offset: noise = eps0 + s * eps_c, s from --offset-noise-convention.",
        ),
    ] = 0.0,
    offset_noise_convention: Annotated[
        str,
        typer.Option(
            "--offset-noise-convention",
            help="std: s = value (diffusers noise_offset, Guttenberg); variance: s = sqrt(value) "
            "(seed 000 Eq. 3 read literally).",
        ),
    ] = "std",
    prediction_type: Annotated[
        str | None,
        typer.Option(
            "--prediction-type", help="epsilon or v_prediction (default: the base model's)."
        ),
    ] = None,
    snr_gamma: Annotated[
        float | None, typer.Option("--snr-gamma", help="Min-SNR loss weighting gamma (e.g. 5).")
    ] = None,
    zero_terminal_snr: Annotated[
        bool,
        typer.Option(
            "--zero-terminal-snr", help="Rescale betas to zero terminal SNR (needs v_prediction)."
        ),
    ] = False,
    prompt_template: Annotated[str, typer.Option("--prompt-template")] = PROMPT_TEMPLATE,
    init: Annotated[
        str, typer.Option("--init", help="pretrained, or scratch (a new UNet from --unet-config).")
    ] = "pretrained",
    unet_config: Annotated[
        Path | None,
        typer.Option("--unet-config", help="UNet2DConditionModel config JSON for --init scratch."),
    ] = None,
    init_lora: Annotated[
        list[str] | None,
        typer.Option(
            "--init-lora",
            help="DIR[:weight], repeatable: LoRAs merged into the base first (2LoRA).",
        ),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="auto: fp32 on the CPU (and any non-CUDA device), fp16 mixed precision on every "
            "CUDA GPU; or fp16, bf16 (native on compute capability 8.0+: A100, H100, RTX 30/40) "
            "or fp32.",
        ),
    ] = "auto",
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="cpu, cuda or cuda:N (default: this process's GPU under accelerate, else CPU).",
        ),
    ] = None,
    report_to: ReportToOpt = None,
    logging_dir: LoggingDirOpt = None,
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing")] = False,
    compile: CompileOpt = False,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", min=1, help="Checkpoint every N steps.")
    ] = 500,
    condition: Annotated[
        str | None,
        typer.Option(
            "--condition",
            help="Condition on semantic maps (seed 004): concat, cross-attention or both.",
        ),
    ] = None,
    maps: Annotated[
        Path | None,
        typer.Option(
            "--maps", help="Map folder mirroring DATASET (default: its metadata 'map_file' column)."
        ),
    ] = None,
    map_legend: Annotated[
        Path | None,
        typer.Option("--map-legend", help="legend.json (default: in the map folder or DATASET)."),
    ] = None,
    map_encoder: Annotated[
        str,
        typer.Option("--map-encoder", help="Map input: downsample (one-hot), vae or learned."),
    ] = "downsample",
    map_text: Annotated[
        str,
        typer.Option("--map-text", help="Map tokens beside the text tokens, or instead of them."),
    ] = "beside",
    map_tokens: Annotated[
        int, typer.Option("--map-tokens", min=1, help="Map token grid side (tokens = side^2).")
    ] = 8,
    map_dropout: Annotated[
        float,
        typer.Option("--map-dropout", help="Probability of a blank map per sample (for CFG)."),
    ] = 0.1,
    metadata: Annotated[
        str | None,
        typer.Option(
            "--metadata",
            help="Condition on the samples' metadata (DiffusionSat): fields of lon, lat, gsd, "
            "cloud_cover, date (year, month, day) or year, month, day, e.g. lon,lat,gsd.",
        ),
    ] = None,
    metadata_dropout: Annotated[
        float,
        typer.Option(
            "--metadata-dropout",
            help="Probability of each metadata field being dropped to 0 (unknown) per image.",
        ),
    ] = 0.1,
    metadata_table: MetadataTableOpt = None,
    joint_masks: Annotated[
        bool,
        typer.Option(
            "--joint-masks",
            help="Learn to generate each image with its mask (SatSynth): the mask as "
            "ceil(log2 K) analog-bit channels beside the latents; DATASET must be image/mask pairs.",
        ),
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from OUT.parts/ after an interruption.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing OUT.")
    ] = False,
    radiometry: RadiometryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune Stable Diffusion on a (few-shot) dataset: the DataDream LoRA recipe by default.

    LoRA rank 16 / alpha 16 on the UNet attention and text-encoder projections (both of SDXL's
    encoders), AdamW 1e-4 with a cosine schedule, 200 epochs of batch 8 at the model's native
    size (512 px for SD 2.1-base, 1024 for SDXL), prompts "a satellite photo of a {class}". Writes OUT/pytorch_lora_weights.safetensors (diffusers format), full
    components when trained in full, OUT/geosynth.json (card), loss.csv and loss.png. Runs under
    `accelerate launch` for data parallelism.

    \b
    Examples:
      geosynth finetune eurosat/ --split train --shots 16 --offset-noise 0.05 --out lora/
      geosynth finetune sar/ --init-lora ors-lora/:1.0 --lora-rank 4 --out sar-lora/
      geosynth finetune sar/ --train-unet full --learn-token '<sar>' --out hybrid/
      geosynth finetune sar/ --model stabilityai/stable-diffusion-xl-base-1.0 --out sdxl-lora/
      geosynth finetune pairs/ --init scratch --unet-config unet.json --condition both --out ldm/
      geosynth finetune eurosat-ms/ --split train --metadata lon,lat,gsd --out md-lora/
      geosynth finetune dubai-chips/ --map-legend legend.json --joint-masks --out joint/
    """
    recipe = dict(
        unet=train_unet,
        text_encoder=train_text_encoder,
        vae_decoder=train_vae_decoder,
        vae_encoder=train_vae_encoder,
        learn_token=learn_token,
        token_init=token_init,
        rank=lora_rank,
        alpha=lora_alpha,
        lora_dropout=lora_dropout,
        lora_targets=lora_targets,
        lr=lr,
        weight_decay=weight_decay,
        optimizer=optimizer,
        warmup_ratio=warmup_ratio,
        lr_schedule=lr_schedule,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        resolution=resolution,
        flip=flip,
        offset_noise=offset_noise,
        offset_noise_convention=offset_noise_convention,
        prediction_type=prediction_type,
        snr_gamma=snr_gamma,
        zero_terminal_snr=zero_terminal_snr,
        prompt_template=prompt_template,
        init=init,
        unet_config=str(unet_config) if unet_config else None,
        init_loras=init_lora or [],
        seed=seed,
        mixed_precision=precision,
        gradient_checkpointing=gradient_checkpointing,
        checkpoint_every=checkpoint_every,
        maps=None
        if condition is None
        else dict(
            condition=condition,
            map_encoder=map_encoder,
            text=map_text,
            tokens=map_tokens,
            dropout=map_dropout,
        ),
        metadata=metadata,
        metadata_dropout=metadata_dropout,
        joint_masks=joint_masks,
    )
    ds = dataset_from_options(
        dataset, split, classes, shots, seed, radiometry, metadata_table=metadata_table
    )
    live = LiveProgress()

    def on_step(info: StepInfo) -> None:
        live.status(f"loss {info.loss:.4f}  lr {info.lr:.2e}  {info.images_per_s:.1f} img/s")

    summary = run_finetune(
        ds,
        out,
        recipe,
        model=model,
        maps=maps,
        map_legend=map_legend,
        per_class=class_loras,
        resume=resume,
        overwrite=overwrite,
        track=live.track,
        on_step=on_step,
        log=message,
        device=device,
        report_to=report_to,
        logging_dir=logging_dir,
        compile_unet=compile,
    )
    if not is_main_process():
        return  # one report, from rank 0
    if as_json:
        print_json(summary)
        return
    rows = [
        (
            name,
            card["data"]["images"],
            card["steps"],
            f"{card['final_loss']:.4f}",
            ", ".join(card["files"]),
        )
        for name, card in summary["cards"].items()
    ]
    print_table(f"finetune -> {out}", ["LoRA", "images", "steps", "final loss", "files"], rows)
