"""``finetune``: adapt a Stable Diffusion pipeline to a few-shot dataset and write a LoRA
directory (see docs/formats.md, "LoRA directories", and docs/finetune.md).

Work in progress lives in ``OUT.parts/`` (checkpoints, finished per-class results); ``OUT``
appears only when every requested LoRA is finished, so a killed run leaves no half-written
output and ``resume=True`` continues from the newest checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from geosynth import faults
from geosynth.artifacts import (
    Provenance,
    atomic_path,
    canonicalize_safetensors,
    check_replaceable,
    output_path,
    write_provenance,
)
from geosynth.artifacts.jsontext import json_text
from geosynth.data.dataset import ImageDataset
from geosynth.data.names import safe_dirname
from geosynth.defaults import SD_MODEL
from geosynth.diffusion.diffusionsat import EMBEDDING_FILE, save_metadata_embedding
from geosynth.diffusion.family import ModelFamily, detect_family
from geosynth.diffusion.identity import describe_cost
from geosynth.diffusion.latents import vae_scale_factor
from geosynth.diffusion.loading import load_sd_pipeline, native_resolution
from geosynth.diffusion.loras import CARD_FILE, check_base, parse_lora
from geosynth.diffusion.mapcond import ENCODER_DIR, save_encoder
from geosynth.diffusion.training import jointtrain as joint
from geosynth.diffusion.training.card import lora_card
from geosynth.diffusion.training.guard import Diverged, drop_if_nothing_kept
from geosynth.diffusion.training.losslog import write_loss
from geosynth.diffusion.training.maptrain import (
    map_card,
    map_training,
    map_unet_config,
    prepare_map_unet,
)
from geosynth.diffusion.training.metatrain import (
    check_base_fields,
    metadata_training,
    prepare_metadata_unet,
)
from geosynth.diffusion.training.objective import training_scheduler
from geosynth.diffusion.training.optim import check_optimizer
from geosynth.diffusion.training.recipe import Recipe
from geosynth.diffusion.training.resume import check_resume
from geosynth.diffusion.training.train_data import build_training_set, check_resolution
from geosynth.diffusion.training.trainable import (
    export_trained,
    fuse_init_loras,
    prepare_components,
)
from geosynth.diffusion.training.trainer import StepHook, TrainResult, train
from geosynth.diffusion.types import Pipeline
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track
from geosynth.runtime import check_report_to, logs_dir, model_ref, pick_device


def _state():
    """accelerate's process state (initialises torch.distributed under ``accelerate launch``)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def check_init_loras(recipe: Recipe, model: str) -> list[tuple[str, float]]:
    """Resolve ``init_loras`` specs to absolute (dir, weight) pairs made for ``model``."""
    taken: set[str] = set()
    resolved = []
    for spec, weight in recipe.init_loras:
        lora = parse_lora(f"{spec}:{weight}", taken, arg="init_loras")
        check_base(lora, model, arg="init_loras")
        resolved.append((str(lora.path.resolve()), float(weight)))
    if resolved and (recipe.unet == "full" or recipe.text_encoder == "full"):
        raise GeosynthError(
            "`init_loras` stacks a new LoRA on merged LoRAs; it cannot be combined with "
            "unet='full' or text_encoder='full'"
        )
    return resolved


def load_unet_config(path: str, pipe: Pipeline, family: ModelFamily) -> dict[str, Any]:
    """A UNet2DConditionModel config for ``init="scratch"`` that fits the frozen VAE and text
    encoder(s)."""
    p = Path(path)
    try:
        config = json.loads(p.read_text())
    except FileNotFoundError:
        raise GeosynthError(f"unet_config={str(p)!r}: no such file") from None
    except ValueError as exc:
        raise GeosynthError(f"unet_config={str(p)!r}: not JSON ({exc})") from None
    latent = pipe.vae.config.latent_channels
    hidden = family.cross_attention_width(pipe)
    if config.get("in_channels", 4) != latent or config.get("out_channels", 4) != latent:
        raise GeosynthError(
            f"unet_config={str(p)!r}: in_channels and out_channels must equal the VAE's "
            f"latent_channels ({latent})"
        )
    if config.get("cross_attention_dim", 1280) != hidden:
        raise GeosynthError(
            f"unet_config={str(p)!r}: cross_attention_dim must equal the width of the text "
            f"features ({hidden})"
        )
    return config


def _train_one(
    ds: ImageDataset,
    recipe: Recipe,
    model: str,
    family: ModelFamily,
    init_loras: list[tuple[str, float]],
    work: Path,
    result_dir: Path,
    *,
    resume: bool,
    track: Track,
    on_step: StepHook | None,
    log: Callable[[str], None],
    device: str | None = None,
    report_to: str | None = None,
    logging_dir: Path | None = None,
    speed: dict[str, Any] | None = None,
    parts: Path | None = None,
) -> dict[str, Any]:
    """Train one LoRA (or full components) on ``ds``; write it into ``result_dir`` atomically.
    ``speed``: the throughput switches of :func:`.trainer.train`; ``parts``: the run's
    ``OUT.parts`` (default ``work``), removed when training diverges before keeping anything."""
    started = Provenance.start("finetune").started  # the record's start: before the training
    torch.manual_seed(recipe.seed)
    pipe = load_sd_pipeline(model, device="cpu", family=family)
    if recipe.init == "scratch":
        from diffusers import UNet2DConditionModel

        assert recipe.unet_config is not None  # Recipe.check: scratch needs a UNet config
        config = load_unet_config(recipe.unet_config, pipe, family)
        if recipe.maps is not None:
            config = map_unet_config(config, recipe.maps, ds, pipe)
        config = joint.scratch_config(config, recipe, ds, pipe)
        pipe.unet = UNet2DConditionModel.from_config(config)
    fuse_init_loras(pipe, init_loras)
    encoder = prepare_map_unet(pipe, recipe.maps, ds) if recipe.maps is not None else None
    joint.prepare_unet(pipe, recipe, ds)
    factor = vae_scale_factor(pipe.vae)
    resolution = recipe.resolution or native_resolution(model, factor)
    check_resolution(resolution, factor, len(pipe.unet.config.block_out_channels))
    info = prepare_components(pipe, recipe)
    if recipe.metadata is not None:
        prepare_metadata_unet(pipe.unet, recipe.metadata)
    pipe.vae.to(pick_device(device))
    data = build_training_set(
        ds,
        pipe.vae,
        resolution=resolution,
        template=recipe.template,
        flip=recipe.flip,
        keep_pixels=recipe.trains_vae or not (speed or {}).get("cache_latents", True),
        track=track,
        warn=log,
    )
    meta_card = None
    if recipe.metadata is not None:
        data, meta_card = metadata_training(
            data, ds, recipe.metadata, recipe.metadata_dropout, resolution, log
        )
    scheduler, overrides = training_scheduler(
        pipe.scheduler.config,
        prediction_type=recipe.prediction_type,
        zero_terminal_snr=recipe.zero_terminal_snr,
    )
    trainee = pipe
    if encoder is not None:
        data, trainee = map_training(pipe, encoder, data, ds, recipe, resolution, track)
    data = joint.training_set(data, pipe, recipe, ds, resolution, track)
    work.mkdir(parents=True, exist_ok=True)
    try:
        res: TrainResult = train(
            trainee,
            data,
            recipe,
            scheduler,
            work,
            resume=resume,
            track=track,
            on_step=on_step,
            device=device,
            report_to=report_to,
            logging_dir=logging_dir,
            family=family,
            **(speed or {}),
        )
    except Diverged:
        if _state().is_main_process:
            drop_if_nothing_kept(parts or work)
        raise
    main_process = _state().is_main_process
    digest_cost: dict[str, Any] = {}  # what identifying the base model cost: not training time
    card = lora_card(
        ds, data, recipe, res, model=model, family=family, resolution=resolution,
        init_loras=init_loras, overrides=overrides, digest_cost=digest_cost,
    )  # fmt: skip
    if encoder is not None:
        card["map_condition"] = map_card(encoder, ds)
    if meta_card is not None:
        # where the embedding is: unet/ when the UNet is saved whole, else its own file
        meta_card["file"] = "unet" if recipe.unet == "full" else EMBEDDING_FILE
        card["metadata"] = meta_card
    if recipe.joint_masks:
        card["joint_masks"] = joint.card(pipe, ds)
    if not main_process:  # under data parallelism only rank 0 writes
        return card
    if note := describe_cost(digest_cost):
        log(note)
    # Where a run resumed is history, not content: it goes to the provenance, so a resumed
    # run's card is byte-identical to an uninterrupted one's.
    prov = Provenance.start(
        "finetune", seeds={"seed": recipe.seed}, model=model, resumed_from_step=res.resumed_from
    )
    prov.extra["model_digest"] = digest_cost  # seconds spent hashing the base weights, if any
    prov.started = started
    prov.inputs[f"dataset:{ds.source}"] = ds.fingerprint()
    with atomic_path(result_dir) as tmp:
        tmp.mkdir(parents=True)
        card["files"] = export_trained(pipe, recipe, info, tmp)
        if encoder is not None:
            save_encoder(encoder, tmp)
            card["files"].append(ENCODER_DIR)
        if meta_card is not None and recipe.unet != "full":
            card["files"].append(save_metadata_embedding(pipe.unet, tmp))
        for f in sorted(tmp.rglob("*.safetensors")):  # diffusers writes metadata unordered
            canonicalize_safetensors(f)
        on_disk = {k: v for k, v in card.items() if k != "resumed_from_step"}
        (tmp / CARD_FILE).write_text(json_text(on_disk, indent=2, default=str) + "\n")
        write_loss(res.history, tmp)
        write_provenance(tmp, prov)
    faults.stage("finetune:result")
    return card


def _finished_summary(out: Path, per_class: bool) -> dict[str, Any]:
    """The summary of an output that was already complete (a resume with nothing left to do)."""
    if per_class:
        cards = {
            d.name: json.loads((d / CARD_FILE).read_text())
            for d in sorted(out.iterdir())
            if (d / CARD_FILE).is_file()
        }
    else:
        cards = {"all": json.loads((out / CARD_FILE).read_text())}
    return {"per_class": per_class, "cards": cards, "out": str(out)}


def finetune(
    ds: ImageDataset,
    out: str | os.PathLike[str],
    recipe: Recipe | Mapping[str, Any] | None = None,
    *,
    model: str = SD_MODEL,
    maps: str | os.PathLike[str] | None = None,
    map_legend: str | os.PathLike[str] | None = None,
    per_class: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    track: Track = no_track,
    on_step: StepHook | None = None,
    log: Callable[[str], None] = print,
    device: str | None = None,
    report_to: str | None = None,
    logging_dir: str | os.PathLike[str] | None = None,
    compile_unet: bool = False,
    cache_text: bool = True,
    cache_latents: bool = True,
    channels_last: bool | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` on ``ds`` (one LoRA, or one per class into ``OUT/<class>/``) and
    return a summary with the card(s). ``device``: see :func:`.trainer.train` (None: this
    process's GPU, else the CPU). ``report_to`` (``tensorboard`` / ``wandb``) logs each step
    into ``logging_dir`` (default ``OUT.logs`` beside OUT: logs are not part of the output, so
    a rerun's LoRA directory stays byte-identical); per-class runs log to one sub-folder per
    class. ``compile_unet``, ``cache_text``, ``cache_latents`` and ``channels_last`` change
    speed, not what is learnt (see :func:`.trainer.train`); they are not part of the recipe, so
    a run resumes with any of them.

    ``recipe``: a :class:`Recipe` or its fields as a dict (default: DataDream's). With a map
    condition (``recipe.maps``), ``ds`` is paired with its semantic maps: ``maps`` (a folder
    mirroring it; default: its metadata's ``map_file`` column) and ``map_legend``."""
    if not isinstance(recipe, Recipe):
        recipe = Recipe(**(recipe or {}))
    if maps is not None and recipe.maps is None and not recipe.joint_masks:
        raise GeosynthError(
            "`maps` is only used with `condition` concat|cross-attention|both or `joint_masks`"
        )
    run = Provenance.start("finetune", seeds={"seed": recipe.seed})  # started now
    recipe.check()
    model_ref(model)  # missing paths first, before anything loads
    if recipe.unet_config and not Path(recipe.unet_config).is_file():
        raise GeosynthError(f"unet_config={recipe.unet_config!r}: no such file")
    if recipe.maps is not None or recipe.joint_masks:
        from geosynth.data.paired import attach_maps

        ds = attach_maps(
            ds,
            None if maps is None else Path(maps),
            None if map_legend is None else Path(map_legend),
            arg="maps",
        )
    check_report_to(report_to)
    check_optimizer(recipe.optimizer, pick_device(device))
    if per_class and recipe.learn_token:
        raise GeosynthError(
            "`learn_token` with per_class=True would give every class's LoRA the same token; "
            "train per-class LoRAs without it, or one finetune per class with its own token"
        )
    out = output_path(out)
    work = parts_dir(out)
    check_replaceable(out, "directory")
    check_replaceable(work, "directory")
    if out.exists() and not overwrite:
        if resume and work.is_dir() and (out / "provenance.json").is_file():
            # Killed after OUT was in place, before OUT.parts was removed: only cleanup is left.
            shutil.rmtree(work, ignore_errors=True)
            return _finished_summary(out, per_class)
        raise GeosynthError(
            f"out={str(out)!r}: already exists; choose a new path or pass overwrite=True"
        )
    if work.exists() and not resume and not overwrite:
        raise GeosynthError(
            f"{work}: an interrupted finetune's work is there; pass resume=True to continue it "
            "or overwrite=True to discard it and start over"
        )
    ds.check_nonempty()
    family = detect_family(model)
    if recipe.maps is not None and not family.map_conditioning:
        raise GeosynthError(
            f"condition={recipe.maps.condition!r}: map conditioning runs on SD 1.x / 2.x UNets, "
            f"not on model={model!r} ({family.label})"
        )
    if recipe.metadata is not None:
        check_base_fields(model, recipe.metadata)
    joint.check(recipe, family, model, cache_latents)
    init_loras = check_init_loras(recipe, model)
    if resume:
        check_resume(work, recipe.to_dict(), log)
    state = _state()
    if work.exists() and not resume and state.is_main_process:
        shutil.rmtree(work)  # overwrite=True: the user asked to start over
    if resume and state.is_main_process:
        for leftover in out.parent.glob(f".{out.name}.tmp-*"):  # a kill during the final move
            shutil.rmtree(leftover, ignore_errors=True)
    state.wait_for_everyone()
    staged = work / "result"
    speed = {
        "compile_unet": compile_unet,
        "cache_text": cache_text,
        "cache_latents": cache_latents,
        "channels_last": channels_last,
    }
    logs = logs_dir(out, logging_dir)
    if per_class:
        cards = {}
        for name in ds.class_names:
            sub = ds.select_classes([name])
            dest = staged / safe_dirname(name)
            if (dest / CARD_FILE).is_file():
                log(f"{name}: already finished")
                cards[name] = json.loads((dest / CARD_FILE).read_text())
                continue
            log(f"{name}: {len(sub)} images")
            cards[name] = _train_one(
                sub,
                recipe,
                model,
                family,
                init_loras,
                work / "checkpoints" / safe_dirname(name),
                dest,
                resume=resume,
                track=track,
                on_step=on_step,
                log=log,
                device=device,
                report_to=report_to,
                logging_dir=logs / safe_dirname(name),
                speed=speed,
                parts=work,
            )
        if state.is_main_process:
            write_provenance(staged, run)
        summary = {"per_class": True, "cards": cards}
    elif (staged / CARD_FILE).is_file():  # finished before an interruption; only the move is left
        summary = {
            "per_class": False,
            "cards": {"all": json.loads((staged / CARD_FILE).read_text())},
        }
    else:
        card = _train_one(
            ds,
            recipe,
            model,
            family,
            init_loras,
            work,
            staged,
            resume=resume,
            track=track,
            on_step=on_step,
            log=log,
            device=device,
            report_to=report_to,
            logging_dir=logs,
            speed=speed,
        )
        summary = {"per_class": False, "cards": {"all": card}}
    faults.stage("finetune:staged")
    if state.is_main_process:
        with atomic_path(out) as tmp:
            os.replace(staged, tmp)
        faults.stage("finetune:output")
        shutil.rmtree(work, ignore_errors=True)
    state.wait_for_everyone()
    summary["out"] = str(out)
    return summary
