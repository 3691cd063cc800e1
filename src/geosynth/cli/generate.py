"""``geosynth generate``: synthetic images per class, Gaussian or leak-aligned noise, LoRAs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth import generate as run_generate
from geosynth.cli.errors import in_flags
from geosynth.cli.options import CompileOpt, JsonOpt, RadiometryOpt, split_list
from geosynth.cli.output import message, print_json, track
from geosynth.defaults import SCHEDULER_NAMES, SD_MODEL

#: library parameter -> this command's option, where the names differ (the error mapper)
LIBRARY_PARAMS = {"loras": "--lora", "fuse_loras": "--fuse-lora"}


def generate(
    out: Annotated[Path, typer.Option("--out", help="Output imagefolder.", show_default=False)],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Base pipeline: hub id, directory or single-file .safetensors (SD 1.x, 2.x, SDXL). "
            f"Default: the base model the --lora card records, else {SD_MODEL}.",
        ),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(
            "--classes",
            help="Comma-separated class names "
            "(default: from the LoRA card or the channel-means file).",
        ),
    ] = None,
    per_class: Annotated[
        int | None, typer.Option("--per-class", min=1, help="Images per class (default: 500).")
    ] = None,
    prompt_template: Annotated[
        str | None,
        typer.Option(
            "--prompt-template", help="Default: the LoRA card's, else 'a satellite photo of a {}'."
        ),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1)] = 50,
    guidance: Annotated[float, typer.Option("--guidance")] = 2.0,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler", help=f"One of {', '.join(SCHEDULER_NAMES)} (default: the model's)."
        ),
    ] = None,
    noise: Annotated[
        str | None,
        typer.Option("--noise", help="gaussian (default) or leak-aligned (needs --channel-means)."),
    ] = None,
    channel_means: Annotated[
        Path | None, typer.Option("--channel-means", help="From `geosynth channel-means`.")
    ] = None,
    skip_channel_means_check: Annotated[
        bool,
        typer.Option(
            "--skip-channel-means-check",
            help="Use --channel-means even if it was computed with another VAE encoder, scaling "
            "factor or resolution (only warns; classes and latent channels are still checked).",
        ),
    ] = False,
    leak_timestep: Annotated[
        int | None,
        typer.Option(
            "--leak-timestep",
            help="Use abar of this fixed T (the paper's T=999 variant) instead of the first scheduled step.",
        ),
    ] = None,
    lora: Annotated[
        list[str] | None,
        typer.Option(
            "--lora", help="DIR[:weight], repeatable: a LoRA stack applied to every class."
        ),
    ] = None,
    lora_weights: Annotated[
        Path | None,
        typer.Option(
            "--lora-weights",
            help="weights.json with per-class mixtures over several LoRAs (cluster-plora).",
        ),
    ] = None,
    lora_dir: Annotated[
        Path | None, typer.Option("--lora-dir", help="One LoRA sub-directory per class.")
    ] = None,
    controlnet: Annotated[
        str | None, typer.Option("--controlnet", help="ControlNet (hub id or directory).")
    ] = None,
    control: Annotated[
        str | None,
        typer.Option(
            "--control",
            help="canny: edges of --control-images; image: control images as given (semantic maps).",
        ),
    ] = None,
    control_images: Annotated[
        Path | None,
        typer.Option(
            "--control-images",
            help="Dataset of reference/control images, one class folder per class.",
        ),
    ] = None,
    maps: Annotated[
        Path | None,
        typer.Option(
            "--maps",
            help="Semantic maps to generate from (a folder of map images, or a paired dataset) "
            "with a map-conditioned model (finetune --condition).",
        ),
    ] = None,
    map_legend: Annotated[
        Path | None,
        typer.Option("--map-legend", help="legend.json of --maps (default: inside --maps)."),
    ] = None,
    per_map: Annotated[int, typer.Option("--per-map", min=1, help="Images per map.")] = 1,
    metadata: Annotated[
        str | None,
        typer.Option(
            "--metadata",
            help="Metadata to ask a metadata-conditioned model for (finetune --metadata, "
            "DiffusionSat): lat=25.2,lon=55.3,gsd=0.5,date=2023-06-01 for every image, or a "
            ".csv/.jsonl table of rows (optional class_name column), image i taking row i.",
        ),
    ] = None,
    metadata_from: Annotated[
        str | None,
        typer.Option(
            "--metadata-from",
            help="A real dataset: one image per real sample of each class, asking for its "
            "metadata (recorded as metadata_from, for evaluate's retrieval rank).",
        ),
    ] = None,
    metadata_shuffle: Annotated[
        bool,
        typer.Option(
            "--metadata-shuffle",
            help="With --metadata-from: each image asks for another real sample's metadata of "
            "its class (a seeded permutation), the control of the retrieval rank.",
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    resolution: Annotated[
        int | None, typer.Option("--resolution", help="Default: the model's native size.")
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard", help="i/n: this process's share (default under accelerate: rank/world size)."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Fill the gaps of an interrupted run.")
    ] = False,
    device: Annotated[str | None, typer.Option("--device")] = None,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="auto: fp32 on the CPU (and any non-CUDA device), fp16 on every CUDA GPU; or "
            "fp32, fp16, bf16 (half precision on GPU only: the CPU computes in fp32).",
        ),
    ] = "auto",
    radiometry: RadiometryOpt = None,
    fuse_lora: Annotated[
        bool | None,
        typer.Option(
            "--fuse-lora/--no-fuse-lora",
            help="Merge each class's LoRA mixture into the weights while it generates (faster; "
            "pixels within one grey level of running the adapters; default: on).",
        ),
    ] = None,
    compile_unet: CompileOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate images per class with a (LoRA-adapted) diffusion model.

    When the LoRA was trained on native data (SAR, 16-bit, multispectral), its card holds the
    radiometry spec and each image is also written back in the data's units and dtype as
    OUT/<class>/<index>.tif (the selected bands); its 8-bit PNG preview goes to OUT.previews/.

    OUT holds only the class folders, metadata.jsonl, a dataset card (README.md) and
    provenance.json, so torchvision ImageFolder, timm and datasets.load_dataset(OUT) read it as
    is; a contact sheet per class is written beside it, as OUT.previews/<class>.png.

    Leak-aligned noise starts sampling from sqrt(abar) x0_cls + sqrt(1 - abar) eps at the
    scheduler's first timestep, with x0_cls the class's latent channel means. Each image's seed
    derives from (seed, class, index): reruns reproduce images; --resume fills gaps; --shard i/n
    splits the work.

    With --maps and a map-conditioned model (finetune --condition), makes --per-map images per
    semantic map with classifier-free guidance over the map, written as a segmentation dataset
    (OUT/images/, OUT/masks/ with the map each image followed, legend.json); it resumes and
    shards like class generation. With a joint model (finetune --joint-masks), every image is
    generated with its mask into the same layout.

    \b
    Examples:
      geosynth generate --lora lora/ --noise leak-aligned --channel-means means.safetensors --per-class 500 --out synth/
      geosynth generate --lora ldm/ --maps val/ --per-map 4 --guidance 2 --out synth-pairs/
      geosynth generate --lora md-lora/ --metadata lat=48.1,lon=11.6,gsd=10 --per-class 50 --out synth-md/
      geosynth generate --lora md-lora/ --metadata-from eurosat-ms/val --out synth-paired/
    """
    result = run_generate(
        out,
        maps=maps,
        shard=shard,
        batch_size=batch_size,
        resume=resume,
        fuse_loras=fuse_lora,
        track=track,
        log=message,
        warn=_log,
        model=model,
        classes=split_list(classes),
        per_class=per_class,
        prompt_template=prompt_template,
        steps=steps,
        guidance=guidance,
        scheduler=scheduler,
        noise=noise,
        channel_means=channel_means,
        skip_channel_means_check=skip_channel_means_check,
        leak_timestep=leak_timestep,
        loras=lora or [],
        lora_dir=lora_dir,
        lora_weights=lora_weights,
        controlnet=controlnet,
        control=control,
        control_images=control_images,
        map_legend=map_legend,
        per_map=per_map,
        seed=seed,
        resolution=resolution,
        device=device,
        precision=precision,
        radiometry=radiometry,
        compile_unet=compile_unet,
        metadata=metadata,
        metadata_from=metadata_from,
        metadata_shuffle=metadata_shuffle,
    )
    if as_json:
        print_json(result)
    elif maps is not None:
        state = "complete" if result["complete"] else "this shard done; others pending"
        message(
            f"generated {result['generated']} new image/mask pairs from {result['maps']} maps, "
            f"{result['pairs']} in {out} ({state})"
        )
    elif result.get("joint"):
        state = "complete" if result["complete"] else "this shard done; others pending"
        message(
            f"generated {result['generated']} new image/mask pairs, {result['pairs']} in {out} "
            f"({state}); {result['invalid_pixels']} mask pixels had a bit code that names no "
            f"class ({100 * result['invalid_fraction']:.2f} %), written as ignore"
        )
    else:
        state = "complete" if result["complete"] else "this shard done; others pending"
        message(
            f"generated {result['generated']} new images, {result['images']} in {out} ({state})"
        )
        if result["complete"]:
            message(f"contact sheets: {result['previews']}")


def _log(text: str) -> None:
    """A library message (a warning) in this command's flags, as its errors are shown."""
    message(in_flags(text, generate, LIBRARY_PARAMS))
