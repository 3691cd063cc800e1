"""``generate --maps``: images from semantic maps with a map-conditioned model (seed 004);
:func:`load_map_generation` resolves and loads such a job from plain arguments.

Each map gives ``per_map`` images, each with its own seed derived from (seed, map, index).
Classifier-free guidance runs over the map: the unconditional branch gets the blank map the
model saw under map dropout, the text prompt is the same in both branches:
``pred = pred(blank) + guidance * (pred(map) - pred(blank))``.

The output is a segmentation dataset (:mod:`.pairstore`): ``OUT/images/<landscape>/<map>_<k>.png``
and the class-index map it followed, resized to the image size, at the same path under
``OUT/masks/``, ``legend.json``, ``metadata.jsonl`` and provenance; ``finetune --condition``,
``train-seg`` and ``datasets.load_dataset`` read it back. The landscape of a map is its dominant
class. It resumes and shards like class generation (``resume``, ``shard``): a resumed run
writes the same bytes as an uninterrupted one with the same batch size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from geosynth import faults
from geosynth.artifacts import Provenance, output_path
from geosynth.artifacts.jsontext import json_text
from geosynth.data.names import fill_prompt, prompt_name
from geosynth.data.paired import (
    Legend,
    PairedDataset,
    dominant_class,
    read_map,
    resize_map,
)
from geosynth.diffusion import adapters
from geosynth.diffusion import loras as lora_ops
from geosynth.diffusion.loras import LoraRef, PathLike, resolve_loras
from geosynth.diffusion.mapcond import (
    MapConditionedUNet,
    encode_rendered,
    load_encoder,
    one_hot,
)
from geosynth.diffusion.sampling.pairstore import (
    PAIR_FILES,
    PairSpec,
    finalize_pairs,
    pair_job,
    temporaries,
    write_pair,
)
from geosynth.diffusion.sampling.pipeline import load_pipeline, tune_for_speed
from geosynth.diffusion.sampling.spec import PARTS, image_seed, parse_shard
from geosynth.diffusion.sampling.store import prepare_output, read_done
from geosynth.diffusion.types import Pipeline
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track


def check_maps(maps: PairedDataset, card: dict[str, Any]) -> Legend:
    """The model's legend; the maps' legend must name the same classes in the same order."""
    model_legend = Legend.from_dict(card["map_condition"]["legend"], "model card legend")
    assert maps.legend is not None
    if maps.legend.names != model_legend.names:
        raise GeosynthError(
            f"maps={str(maps.source)!r}: legend classes {maps.legend.names} differ from the "
            "model's "
            f"{model_legend.names}"
        )
    return model_legend


def maps_digest(maps: PairedDataset) -> str:
    """One digest of every map (its key and bytes): a resumed run must follow the same maps."""
    import hashlib

    from geosynth.artifacts import file_digest

    h = hashlib.blake2b(digest_size=16)
    for m in range(len(maps)):
        h.update(f"{maps.samples[m].key}|{file_digest(maps.map_path(m))}\n".encode())
    return h.hexdigest()


@torch.no_grad()
def generate_from_maps(
    pipe,
    model_dir: Path,
    card: dict[str, Any],
    maps: PairedDataset,
    out: Path,
    *,
    per_map: int,
    steps: int,
    guidance: float,
    seed: int,
    resolution: int | None,
    batch_size: int,
    provenance: Provenance,
    prompt_template: str | None = None,
    shard: tuple[int, int] = (0, 1),
    resume: bool = False,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Generate this shard's missing pairs (``per_map`` images for every map of ``maps``) into
    the segmentation dataset ``out`` (:mod:`.pairstore`); finalize when every shard is done."""
    legend = check_maps(maps, card)
    encoder = load_encoder(model_dir)
    param = next(pipe.unet.parameters())
    encoder.to(param.device, param.dtype)
    model = MapConditionedUNet(pipe.unet, encoder).eval()
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    size = resolution or int(card.get("resolution") or pipe.unet.config.sample_size * factor)
    if size % factor:
        raise GeosynthError(f"resolution={size}: must be a multiple of {factor}")
    latent_shape = (int(pipe.vae.config.latent_channels), size // factor, size // factor)
    template = prompt_template or card.get("prompt_template") or "{}"
    # a card from before "a"/"an" was chosen (no "prompts"): fill its template as it was trained
    articles = prompt_template is not None or "prompts" in card
    k = len(legend)
    use_vae = card["map_condition"].get("map_encoder") == "vae"
    keys = [s.key for s in maps.samples]
    spec = PairSpec(
        "maps", str(model_dir), legend.to_dict(), keys, per_map, steps, guidance, seed, size,
        template, type(pipe.scheduler).__name__, {"maps": maps_digest(maps)},
    )  # fmt: skip
    out = output_path(out)
    if prepare_output(out, spec, resume, shard, lambda: temporaries(out)):
        return {"generated": 0, "maps": len(maps), "per_map": per_map, "complete": True}
    done = read_done(out, pair_job, PAIR_FILES)
    mine = spec.shard_jobs(shard)
    todo = {job for job in mine if job not in done}
    if done:
        log(f"resuming: {len(done)} pairs already done, {len(todo)} to go in this shard")
    by_key = {key: m for m, key in enumerate(keys)}

    # Text features per landscape, computed once (the text encoder is fixed at sampling).
    def text_states(name: str) -> torch.Tensor:
        ids = pipe.tokenizer(
            [fill_prompt(template, prompt_name(name), articles=articles)],
            padding="max_length",
            max_length=pipe.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(param.device)
        return pipe.text_encoder(ids)[0][0]

    texts = {name: text_states(name) for name in legend.names}
    # Cut from the shard's whole job list (not from what is left): a resumed run computes each
    # pair in the same batch as an uninterrupted one, so it writes the same bytes.
    batches = [mine[s : s + batch_size] for s in range(0, len(mine), batch_size)]
    batches = [b for b in batches if any(job in todo for job in b)]
    resized: dict[int, torch.Tensor] = {}
    scheduler = pipe.scheduler
    part = out / PARTS / f"rows-{shard[0]}-of-{shard[1]}.jsonl"
    with part.open("a") as rows_file:
        for batch in track(batches, len(batches), "generating"):
            ms = [by_key[key] for key, _ in batch]
            for m in ms:
                if m not in resized:
                    resized[m] = resize_map(read_map(maps.map_path(m), legend), size)
            classes = torch.stack([resized[m] for m in ms])
            if use_vae:
                map_input = encode_rendered(pipe.vae, classes, legend.colors)
            else:
                map_input = one_hot(classes, k)
            map_input = map_input.to(param.device, param.dtype)
            landscapes = [dominant_class(resized[m], k) for m in ms]
            cond = torch.stack([texts[legend.names[c]] for c in landscapes]).to(param.dtype)
            seeds = [image_seed(seed, key, j) for key, j in batch]
            latents = torch.stack(
                [
                    torch.randn(latent_shape, generator=torch.Generator().manual_seed(s))
                    for s in seeds
                ]
            ).to(param.device, param.dtype)
            scheduler.set_timesteps(steps, device=param.device)
            latents = latents * scheduler.init_noise_sigma
            guided = guidance != 1.0
            for t in scheduler.timesteps:
                x = torch.cat([latents, latents]) if guided else latents
                x = scheduler.scale_model_input(x, t)
                m_in = torch.cat([map_input, torch.zeros_like(map_input)]) if guided else map_input
                c_in = torch.cat([cond, cond]) if guided else cond
                pred = model(x, t, c_in, map_input=m_in).sample
                if guided:
                    with_map, blank = pred.chunk(2)
                    pred = blank + guidance * (with_map - blank)
                latents = scheduler.step(pred, t, latents).prev_sample
            decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
            if not bool(torch.isfinite(decoded).all()):  # clamp would hide them as black pixels
                raise GeosynthError(
                    "the model produced NaN or infinite pixels (broken or diverged weights, or a "
                    "half-precision overflow: try precision='fp32'); nothing was written"
                )
            pixels = ((decoded.float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu()
            for (key, j), m, s, c, px in zip(batch, ms, seeds, landscapes, pixels, strict=True):
                if (key, j) not in todo:  # done before an interruption; recomputed for its batch
                    continue
                stem = f"{Path(key).with_suffix('').as_posix().replace('/', '__')}_{j:03d}"
                image = Image.fromarray(px.permute(1, 2, 0).numpy(), "RGB")
                files = write_pair(out, legend.names[c], stem, image, resized[m].numpy(), legend)
                row = {
                    **files,
                    "label": c,
                    "class_name": legend.names[c],
                    "job_source": key,
                    "index": j,
                    "source_map": str(maps.map_path(m)),
                    "prompt": fill_prompt(
                        template, prompt_name(legend.names[c]), articles=articles
                    ),
                    "seed": s,
                    "guidance": guidance,
                    "steps": steps,
                    "scheduler": type(scheduler).__name__,
                    "model": str(model_dir),
                }
                rows_file.write(json_text(row) + "\n")
                rows_file.flush()
                faults.stage("generate:row")
    pairs = len(read_done(out, pair_job, PAIR_FILES))
    complete = finalize_pairs(out, spec, legend, provenance)
    return {
        "generated": len(todo),
        "pairs": pairs,
        "maps": len(maps),
        "per_map": per_map,
        "complete": complete,
        "shard": f"{shard[0]}/{shard[1]}",
    }


@dataclass
class MapGeneration:
    """A loaded pipeline with a map-conditioned model and the maps to follow: :meth:`run`
    writes ``per_map`` images per map, each with its map (see :mod:`.mapgen`)."""

    pipe: Pipeline
    map_model: lora_ops.Lora
    maps: PairedDataset
    model: str
    per_map: int = 1
    steps: int = 50
    guidance: float = 2.0
    seed: int = 0
    resolution: int | None = None
    prompt_template: str | None = None
    maps_path: str = ""

    def run(
        self,
        out: PathLike,
        *,
        batch_size: int = 8,
        shard: str | tuple[int, int] | None = None,
        resume: bool = False,
        provenance: Provenance | None = None,
        track: Track = no_track,
        log: Callable[[str], None] = lambda _: None,
    ) -> dict[str, Any]:
        """Generate this shard's missing pairs into ``out`` (a new folder, this job's unfinished
        one with ``resume`` or its other shards; see :mod:`.pairstore`)."""
        out = output_path(out)
        prov = provenance or Provenance.start(
            "generate", seeds={"seed": self.seed}, model=self.model, maps=self.maps_path
        )
        result = generate_from_maps(
            self.pipe,
            self.map_model.path,
            self.map_model.card,
            self.maps,
            out,
            per_map=self.per_map,
            steps=self.steps,
            guidance=self.guidance,
            seed=self.seed,
            resolution=self.resolution,
            batch_size=batch_size,
            provenance=prov,
            prompt_template=self.prompt_template,
            shard=shard if isinstance(shard, tuple) else parse_shard(shard),
            resume=resume,
            track=track,
            log=log,
        )
        result["out"] = str(out)
        return result


#: Why each class-generation setting has no meaning with ``maps`` (see load_map_generation).
_NOT_WITH_MAPS = {
    "classes": "the map model's legend names the classes",
    "per_class": "it makes `per_map` images per map",
    "noise": "it samples from Gaussian noise",
    "channel_means": "it samples from Gaussian noise",
    "radiometry": "it writes 8-bit images with their maps",
    "controlnet": "the maps are the condition",
    "fuse_loras": "its LoRAs run as adapters",
}


def _refuse_with_maps(**given: Any) -> None:
    """A GeosynthError naming the first setting that was given (not None)."""
    for name, value in given.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            value = ",".join(map(str, value))
        elif isinstance(value, os.PathLike):
            value = str(value)
        raise GeosynthError(f"{name}={value!r}: not supported with `maps` ({_NOT_WITH_MAPS[name]})")


def load_map_generation(
    maps: PathLike,
    *,
    model: PathLike | None = None,
    loras: Sequence[LoraRef] = (),
    lora_dir: PathLike | None = None,
    lora_weights: PathLike | None = None,
    map_legend: PathLike | None = None,
    per_map: int = 1,
    steps: int = 50,
    guidance: float = 2.0,
    scheduler: str | None = None,
    seed: int = 0,
    resolution: int | None = None,
    device: str | None = None,
    precision: str = "auto",
    prompt_template: str | None = None,
    channels_last: bool | None = None,
    compile_unet: bool = False,
    classes: Sequence[str] | str | None = None,
    per_class: int | None = None,
    noise: str | None = None,
    channel_means: PathLike | None = None,
    radiometry: str | None = None,
    controlnet: PathLike | None = None,
    fuse_loras: bool | None = None,
) -> MapGeneration:
    """Resolve, check and load generation from semantic ``maps`` (a folder of map images or a
    paired dataset, with ``legend.json`` inside or at ``map_legend``): one of ``loras`` must be
    a map-conditioned model (``finetune --condition``) whose legend the maps share.
    ``channels_last`` and ``compile_unet``: see :func:`tune_for_speed`.

    The class-generation settings from ``classes`` on are not supported with ``maps``; any of
    them given is an error (rather than silently ignored), raised before anything loads."""
    from geosynth.data.paired import read_map_folder

    _refuse_with_maps(
        classes=classes,
        per_class=per_class,
        noise=noise,
        channel_means=channel_means,
        radiometry=radiometry,
        controlnet=controlnet,
        fuse_loras=fuse_loras,
    )

    lset = resolve_loras(model, loras, lora_dir=lora_dir, lora_weights=lora_weights)
    model = lset.model  # None: the base model the map model's card records
    map_model = lset.map_model
    if map_model is None:
        raise GeosynthError(
            "`maps` needs a map-conditioned model: a model directory fine-tuned with a map "
            "condition in `loras`"
        )
    legend = None if map_legend is None else Path(map_legend)
    map_set = read_map_folder(Path(maps), legend, arg="maps")
    check_maps(map_set, map_model.card)
    pipe = load_pipeline(model, lset, scheduler, device, precision)
    adapters.load_adapters(pipe, lset.all)
    tune_for_speed(pipe, channels_last=channels_last, compile_unet=compile_unet)
    return MapGeneration(
        pipe,
        map_model,
        map_set,
        str(model),
        per_map=per_map,
        steps=steps,
        guidance=guidance,
        seed=seed,
        resolution=resolution,
        prompt_template=prompt_template,
        maps_path=str(maps),
    )
