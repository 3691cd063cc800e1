"""``geosynth generate``: synthetic images per class, Gaussian or leak-aligned noise, LoRAs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from geosynth.artifacts import Provenance, load_channel_means
from geosynth.cli.options import JsonOpt, RadiometryOpt, split_list
from geosynth.cli.output import message, print_json, track
from geosynth.data import load_dataset
from geosynth.data.radiometry import Radiometry, check_same_spec
from geosynth.defaults import PROMPT_TEMPLATE, SD_MODEL
from geosynth.diffusion import loras as lora_ops
from geosynth.diffusion.channel_means import pipeline_mismatches
from geosynth.diffusion.loading import load_sd_pipeline
from geosynth.diffusion.sampling.control import ControlSource
from geosynth.diffusion.sampling.generate import (
    GenerationSpec,
    check_channel_means,
    parse_shard,
    run_generation,
)
from geosynth.diffusion.sampling.schedulers import SCHEDULERS, make_scheduler
from geosynth.distributed import local_device
from geosynth.errors import GeosynthError
from geosynth.runtime import load_with, pick_device, pick_dtype


def generate(
    out: Annotated[Path, typer.Option("--out", help="Output imagefolder.", show_default=False)],
    model: Annotated[
        str, typer.Option("--model", help="Base pipeline: hub id or directory.")
    ] = SD_MODEL,
    classes: Annotated[
        str | None,
        typer.Option(
            "--classes",
            help="Comma-separated class names "
            "(default: from the LoRA card or the channel-means file).",
        ),
    ] = None,
    per_class: Annotated[int, typer.Option("--per-class", min=1, help="Images per class.")] = 500,
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
        typer.Option("--scheduler", help=f"One of {', '.join(SCHEDULERS)} (default: the model's)."),
    ] = None,
    noise: Annotated[
        str, typer.Option("--noise", help="gaussian or leak-aligned (needs --channel-means).")
    ] = "gaussian",
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
        str, typer.Option("--precision", help="auto (fp16 on GPU), fp32, fp16, bf16.")
    ] = "auto",
    radiometry: RadiometryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate images per class with a (LoRA-adapted) diffusion model.

    When the LoRA was trained on native data (SAR, 16-bit, multispectral), its card holds the
    radiometry spec and each image is also written back in the data's units and dtype as
    OUT/<class>/<index>.tif (the selected bands), beside its 8-bit PNG preview.

    Leak-aligned noise starts sampling from sqrt(abar) x0_cls + sqrt(1 - abar) eps at the
    scheduler's first timestep, with x0_cls the class's latent channel means. Each image's seed
    derives from (seed, class, index): reruns reproduce images; --resume fills gaps; --shard i/n
    splits the work.

    With --maps and a map-conditioned model (finetune --condition), makes --per-map images per
    semantic map with classifier-free guidance over the map, each saved with its map.

    [bold]Example[/bold]: geosynth generate --lora lora/ --noise leak-aligned --channel-means means.safetensors --per-class 500 --out synth/
    [bold]Example[/bold]: geosynth generate --lora ldm/ --maps val/ --per-map 4 --guidance 2 --out synth-pairs/
    """
    if noise not in ("gaussian", "leak-aligned"):
        raise GeosynthError(f"--noise {noise}: expected gaussian or leak-aligned")
    if (noise == "leak-aligned") != (channel_means is not None):
        raise GeosynthError("--noise leak-aligned and --channel-means go together")
    taken: set[str] = set()
    given = [lora_ops.parse_lora(s, taken) for s in (lora or [])]
    extra: list[lora_ops.Lora] = []
    class_weights: dict[str, dict[str, float]] = {}
    if lora_dir is not None:
        if not lora_dir.is_dir():
            raise GeosynthError(f"--lora-dir {lora_dir}: no such directory")
        for sub in sorted(p for p in lora_dir.iterdir() if p.is_dir()):
            item = lora_ops.parse_lora(str(sub), taken)
            extra.append(item)
            class_weights[sub.name] = {item.name: 1.0}
    if lora_weights is not None:
        data = _read_json(lora_weights)
        by_name = {}
        for name, rel in dict(data.get("loras", {})).items():
            path = (lora_weights.parent / rel) if not Path(rel).is_absolute() else Path(rel)
            if not (path / lora_ops.LORA_FILE).is_file():
                raise GeosynthError(
                    f"--lora-weights {lora_weights}: LoRA '{name}' not found at {path}"
                )
            if name in taken:
                raise GeosynthError(
                    f"--lora-weights {lora_weights}: LoRA name '{name}' is already used by "
                    "another LoRA of this command"
                )
            taken.add(name)
            by_name[name] = lora_ops.Lora(path, 0.0, name)
        extra.extend(by_name.values())
        for c, w in lora_ops.read_lora_weights(lora_weights, by_name).items():
            class_weights.setdefault(c, {}).update(w)
    stack = lora_ops.expand_stacks(given, extra, taken)
    all_loras = stack + extra
    for item in all_loras:
        lora_ops.check_base(item, model)
    # Defaults (classes, template) come from the LoRAs the user named, not from stage-1 LoRAs
    # their cards pulled in.
    card = next((item.card for item in given + extra if item.card), {})
    map_model = next((x for x in given + extra if x.card.get("map_condition")), None)
    if map_model is not None and maps is None:
        raise GeosynthError(
            f"--lora {map_model.path}: a map-conditioned model; give the maps to follow with "
            "--maps DIR"
        )
    if maps is not None:
        if map_model is None:
            raise GeosynthError(
                "--maps needs a map-conditioned model: --lora DIR from finetune --condition"
            )
        return _generate_from_maps(
            map_model, all_loras, maps, map_legend, out, model, per_map, steps, guidance,
            scheduler, seed, resolution, batch_size, device, precision, prompt_template, as_json,
        )  # fmt: skip
    cm = load_channel_means(channel_means) if channel_means is not None else None
    rad = resolve_generation_radiometry(
        radiometry,
        [(f"--lora {item.path}", item.card) for item in given + extra if item.card],
        (f"--channel-means {channel_means}", cm.metadata) if cm is not None else None,
    )
    mixture_classes = None
    if lora_weights is not None:
        mixture_classes = list(data.get("class_names") or class_weights)
        unknown = [c for c in class_weights if c not in mixture_classes]
        if unknown:
            raise GeosynthError(
                f"--lora-weights {lora_weights}: weights for unknown class '{unknown[0]}' "
                f"(its class_names: {', '.join(mixture_classes)})"
            )
    names = (
        split_list(classes)
        or mixture_classes
        or (list(class_weights) if lora_dir is not None else None)
        or card.get("class_names")
        or (cm.class_names if cm else None)
    )
    if not names:
        raise GeosynthError(
            "--classes is needed: no LoRA card or channel-means file names the classes"
        )
    if lora_weights is not None:
        missing = [c for c in names if c not in class_weights]
        if missing:
            raise GeosynthError(
                f"--lora-weights {lora_weights}: no mixture for class '{missing[0]}'"
            )
    if lora_dir is not None:
        missing = [c for c in names if c not in class_weights]
        if missing:
            raise GeosynthError(f"--lora-dir {lora_dir}: no LoRA for class '{missing[0]}'")
    if (controlnet is None) != (control is None) or (control is None) != (control_images is None):
        raise GeosynthError("--controlnet, --control and --control-images go together")
    dev = local_device(pick_device(device))  # under torchrun / accelerate: this rank's GPU
    pipe = load_sd_pipeline(model, device=dev, dtype=pick_dtype(precision, dev))
    new_scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    if new_scheduler is not None:
        pipe.scheduler = new_scheduler
    lora_ops.apply_cards(pipe, all_loras)
    if cm is not None:
        check_channel_means(cm, names, pipe.unet.config.in_channels, str(channel_means))
        gen_size = resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
        problems = pipeline_mismatches(cm, pipe.vae, gen_size)
        if problems and not skip_channel_means_check:
            raise GeosynthError(
                f"--channel-means {channel_means}: {problems[0]}; recompute it with this "
                "pipeline (geosynth channel-means) or pass --skip-channel-means-check"
            )
        for p in problems:
            message(f"warning: --channel-means {channel_means}: {p} (check skipped)")
    control_source = None
    if controlnet is not None:
        pipe = with_controlnet(pipe, controlnet)
        size = resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
        control_source = ControlSource(load_dataset(control_images), control, size)
        control_source.check_classes(list(names))
    lora_ops.load_adapters(pipe, all_loras)
    spec = GenerationSpec(
        model=model,
        classes=list(names),
        per_class=per_class,
        prompt_template=prompt_template or card.get("prompt_template", PROMPT_TEMPLATE),
        steps=steps,
        guidance=guidance,
        scheduler=scheduler,
        seed=seed,
        noise=noise,
        leak_timestep=leak_timestep,
        resolution=resolution,
        loras={
            x.name: {"path": str(x.path), "weight": x.weight, "stack": x in stack}
            for x in all_loras
        },
        class_lora_weights=class_weights,
        channel_means={c: cm.for_class(c).tolist() for c in names} if cm else {},
        controlnet=controlnet,
        control=control,
        control_images=None if control_images is None else str(control_images),
        radiometry=None if rad is None else rad.to_dict(),
    )
    prov = Provenance.start("generate", seeds={"seed": seed}, model=model, noise=noise)
    result = run_generation(
        pipe,
        spec,
        out,
        provenance=prov,
        control=control_source,
        shard=parse_shard(shard),
        batch_size=batch_size,
        resume=resume,
        track=track,
        log=message,
    )
    result["out"] = str(out)
    if as_json:
        print_json(result)
    else:
        state = "complete" if result["complete"] else "this shard done; others pending"
        message(f"generated {result['generated']} images into {out} ({state})")


def resolve_generation_radiometry(
    given: str | None,
    cards: list[tuple[str, dict]],
    means: tuple[str, dict[str, str]] | None,
) -> Radiometry | None:
    """The spec the outputs are written back through: the LoRA cards' (all the same), checked
    against the channel means' and ``--radiometry``'s; any disagreement is an error."""
    stated: list[tuple[str, dict | None]] = [(w, c.get("radiometry")) for w, c in cards]
    if means is not None:
        text = means[1].get("radiometry")
        stated.append((means[0], None if text is None else json.loads(text)))
    spec = Radiometry.parse(given) if given is not None else None
    if spec is None and stated:
        first = stated[0][1]
        spec = None if first is None else Radiometry.from_dict(first, where=stated[0][0])
    for where, d in stated:
        check_same_spec(d, spec, where)
    if spec is not None and spec.ranges is None:
        raise GeosynthError(
            "--radiometry: generation needs fitted ranges (give ranges, or the spec a LoRA "
            "card or channel-means file records)"
        )
    return spec


def with_controlnet(pipe, ref: str):
    """The same components in a ControlNet pipeline (no reload of the base model)."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    cn = load_with(
        lambda r: ControlNetModel.from_pretrained(r, dtype=pipe.unet.dtype), ref, "--controlnet"
    )
    cpipe = StableDiffusionControlNetPipeline.from_pipe(pipe, controlnet=cn.to(pipe.device))
    cpipe.set_progress_bar_config(disable=True)
    return cpipe


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise GeosynthError(f"--lora-weights {path}: no such file")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise GeosynthError(f"--lora-weights {path}: not JSON ({exc})") from None


def _generate_from_maps(
    map_model: lora_ops.Lora,
    all_loras: list[lora_ops.Lora],
    maps: Path,
    map_legend: Path | None,
    out: Path,
    model: str,
    per_map: int,
    steps: int,
    guidance: float,
    scheduler: str | None,
    seed: int,
    resolution: int | None,
    batch_size: int,
    device: str | None,
    precision: str,
    prompt_template: str | None,
    as_json: bool,
) -> None:
    """``generate --maps``: images that follow semantic maps (see geosynth.diffusion.sampling.mapgen)."""
    from geosynth.data.paired import read_map_folder
    from geosynth.data.writer import check_output_dir
    from geosynth.diffusion.sampling.mapgen import check_maps, generate_from_maps

    check_output_dir(out)
    if out.exists() and any(out.iterdir()):
        raise GeosynthError(f"--out {out}: exists; choose a new path")
    map_set = read_map_folder(maps, map_legend, arg="--maps")
    check_maps(map_set, map_model.card)
    dev = pick_device(device)
    pipe = load_sd_pipeline(model, device=dev, dtype=pick_dtype(precision, dev))
    new_scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    if new_scheduler is not None:
        pipe.scheduler = new_scheduler
    lora_ops.apply_cards(pipe, all_loras)
    lora_ops.load_adapters(pipe, all_loras)
    prov = Provenance.start("generate", seeds={"seed": seed}, model=model, maps=str(maps))
    result = generate_from_maps(
        pipe,
        map_model.path,
        map_model.card,
        map_set,
        out,
        per_map=per_map,
        steps=steps,
        guidance=guidance,
        seed=seed,
        resolution=resolution,
        batch_size=batch_size,
        provenance=prov,
        prompt_template=prompt_template,
        track=track,
    )
    result["out"] = str(out)
    if as_json:
        print_json(result)
    else:
        message(
            f"generated {result['generated']} images from {result['maps']} maps into {out} "
            "(each with its map)"
        )
