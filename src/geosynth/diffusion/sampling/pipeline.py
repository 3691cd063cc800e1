"""Generation from plain arguments: what ``geosynth generate`` does, as two library calls.

:func:`load_generation` resolves everything a generation job needs from names and paths (the
LoRA set from a stack, a per-class directory and/or a ``weights.json`` mixture; the default
classes and prompt template from the LoRA card or the channel-means file; the scheduler; the
precision policy; the ControlNet and its control images; the radiometry the outputs are written
back through), checks it all, loads the pipeline once and returns a :class:`Generation`, whose
:meth:`Generation.run` writes the images (resumable and shardable, see :mod:`.generate`)::

    from geosynth.diffusion.sampling import load_generation

    gen = load_generation(model="sd-dir", loras=["lora/"], noise="leak-aligned",
                          channel_means="means.safetensors", per_class=500)
    gen.run("synth/")

:func:`load_map_generation` does the same for a map-conditioned model (``finetune --condition``)
and a folder of semantic maps; :meth:`MapGeneration.run` writes the paired output
(see :mod:`.mapgen`).

Errors name these functions' parameters (``lora_weights='w.json': ...``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosynth.artifacts import ChannelMeans, Provenance, load_channel_means
from geosynth.data.radiometry import Radiometry, check_same_spec
from geosynth.defaults import PROMPT_TEMPLATE, SD_MODEL
from geosynth.diffusion import loras as lora_ops
from geosynth.diffusion.sampling.control import ControlSource
from geosynth.diffusion.types import Pipeline
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track

if TYPE_CHECKING:
    from geosynth.data.paired import PairedDataset
    from geosynth.diffusion.sampling.generate import GenerationSpec

#: A LoRA of a stack: ``"DIR"``, ``"DIR:weight"``, a path, or ``(path, weight)``.
LoraRef = str | os.PathLike[str] | tuple[str | os.PathLike[str], float]
PathLike = str | os.PathLike[str]


def _lora_text(ref: LoraRef) -> str:
    if isinstance(ref, tuple):
        return f"{ref[0]}:{float(ref[1])}"
    return str(ref)


@dataclass
class LoraSet:
    """The LoRAs of one generation job and how each class weights them.

    ``stack`` is applied to every class at its weights (the LoRAs given, preceded by those their
    cards say they were trained on top of); ``per_class`` LoRAs (a per-class directory, a
    mixture file) are off unless a class's entry of ``class_weights`` turns them on."""

    stack: list[lora_ops.Lora] = field(default_factory=list)
    per_class: list[lora_ops.Lora] = field(default_factory=list)
    class_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    #: the LoRAs the caller named (their cards give the defaults, not stage-1 LoRAs they pull in)
    named: list[lora_ops.Lora] = field(default_factory=list)
    #: classes a per-class directory or a mixture file defines (None: neither was given)
    classes: list[str] | None = None
    lora_dir: Path | None = None
    lora_weights: Path | None = None

    @property
    def all(self) -> list[lora_ops.Lora]:
        return self.stack + self.per_class

    @property
    def card(self) -> dict[str, Any]:
        """The first card among the named LoRAs (class names, prompt template)."""
        return next((x.card for x in self.named if x.card), {})

    @property
    def map_model(self) -> lora_ops.Lora | None:
        """The named map-conditioned model, if any."""
        return next((x for x in self.named if x.card.get("map_condition")), None)

    def check_classes(self, classes: Sequence[str]) -> None:
        """Every class needs its mixture / its per-class LoRA."""
        missing = [c for c in classes if c not in self.class_weights]
        if missing and self.lora_weights is not None:
            raise GeosynthError(
                f"lora_weights={str(self.lora_weights)!r}: no mixture for class '{missing[0]}'"
            )
        if missing and self.lora_dir is not None:
            raise GeosynthError(
                f"lora_dir={str(self.lora_dir)!r}: no LoRA for class '{missing[0]}'"
            )

    def spec_loras(self) -> dict[str, dict[str, Any]]:
        """The set as :class:`GenerationSpec` records it: name -> path, weight, stack."""
        return {
            x.name: {"path": str(x.path), "weight": x.weight, "stack": x in self.stack}
            for x in self.all
        }


def resolve_loras(
    model: PathLike,
    loras: Sequence[LoraRef] = (),
    *,
    lora_dir: PathLike | None = None,
    lora_weights: PathLike | None = None,
) -> LoraSet:
    """The LoRA set of a job: the stack ``loras``, one LoRA per class from the sub-directories of
    ``lora_dir`` (named by class), and the per-class mixtures of a ``weights.json`` file
    (``lora_weights``, from ``cluster-plora``). Every LoRA must be trained for ``model``."""
    taken: set[str] = set()
    given = [lora_ops.parse_lora(_lora_text(s), taken, "loras") for s in loras]
    out = LoraSet(named=list(given))
    if lora_dir is not None:
        out.lora_dir = Path(lora_dir)
        if not out.lora_dir.is_dir():
            raise GeosynthError(f"lora_dir={str(lora_dir)!r}: no such directory")
        for sub in sorted(p for p in out.lora_dir.iterdir() if p.is_dir()):
            item = lora_ops.parse_lora(str(sub), taken, "lora_dir")
            out.per_class.append(item)
            out.class_weights[sub.name] = {item.name: 1.0}
        out.classes = list(out.class_weights)
    if lora_weights is not None:
        mix = lora_ops.LoraWeights.read(lora_weights)
        out.lora_weights = mix.path
        for name, path in mix.loras.items():
            if name in taken:
                raise GeosynthError(
                    f"lora_weights={str(mix.path)!r}: LoRA name '{name}' is already used by "
                    "another LoRA of this job"
                )
            taken.add(name)
            out.per_class.append(lora_ops.Lora(path, 0.0, name))
        for c, w in mix.weights.items():
            out.class_weights.setdefault(c, {}).update(w)
        out.classes = mix.classes  # the mixture's classes win over a per-class directory's
    out.named += out.per_class
    out.stack = lora_ops.expand_stacks(given, out.per_class, taken)
    for item in out.all:
        lora_ops.check_base(item, str(model))
    return out


def resolve_generation_radiometry(
    given: str | Radiometry | None,
    cards: list[tuple[str, dict]],
    means: tuple[str, dict[str, str]] | None,
) -> Radiometry | None:
    """The spec the outputs are written back through: the LoRA cards' (all the same), checked
    against the channel means' and ``given``'s; any disagreement is an error. ``cards`` and
    ``means`` pair each record with the words naming where it came from."""
    stated: list[tuple[str, dict | None]] = [(w, c.get("radiometry")) for w, c in cards]
    if means is not None:
        text = means[1].get("radiometry")
        stated.append((means[0], None if text is None else json.loads(text)))
    if isinstance(given, Radiometry):
        spec: Radiometry | None = given
    else:
        spec = Radiometry.parse(given) if given is not None else None
    if spec is None and stated:
        first = stated[0][1]
        spec = None if first is None else Radiometry.from_dict(first, where=stated[0][0])
    for where, d in stated:
        check_same_spec(d, spec, where)
    if spec is not None and spec.ranges is None:
        raise GeosynthError(
            "`radiometry`: generation needs fitted ranges (give ranges, or the spec a LoRA "
            "card or channel-means file records)"
        )
    return spec


def with_controlnet(pipe: Pipeline, ref: PathLike) -> Pipeline:
    """The same components in a ControlNet pipeline (no reload of the base model)."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    from geosynth.runtime import load_with

    cn = load_with(
        lambda r: ControlNetModel.from_pretrained(r, dtype=pipe.unet.dtype), ref, "controlnet"
    )
    cpipe = StableDiffusionControlNetPipeline.from_pipe(pipe, controlnet=cn.to(pipe.device))
    cpipe.set_progress_bar_config(disable=True)
    return cpipe


def _load_pipeline(
    model: PathLike,
    loras: LoraSet,
    scheduler: str | None,
    device: str | None,
    precision: str,
) -> Pipeline:
    """The base pipeline on ``device`` in ``precision``'s dtype, with the requested scheduler and
    what the LoRA cards ask for (components, tokens, scheduler settings); adapters not yet."""
    from geosynth.diffusion.loading import load_sd_pipeline
    from geosynth.diffusion.sampling.schedulers import make_scheduler
    from geosynth.distributed import local_device
    from geosynth.runtime import pick_device, pick_dtype

    dev = local_device(pick_device(device))  # under torchrun / accelerate: this rank's GPU
    pipe = load_sd_pipeline(model, device=dev, dtype=pick_dtype(precision, dev))
    new_scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    if new_scheduler is not None:
        pipe.scheduler = new_scheduler
    lora_ops.apply_cards(pipe, loras.all)
    return pipe


def tune_for_speed(
    pipe: Pipeline, *, channels_last: bool | None = None, compile_unet: bool = False
) -> Pipeline:
    """Speed settings that leave the model's function alone: PyTorch's fused attention (SDPA,
    diffusers' default on torch 2, put in place of any plain attention processor; custom
    processors are kept), the channels-last memory format for the UNet, VAE and ControlNet
    (``channels_last``; default: on CUDA, where cuDNN's convolutions prefer it; on a CPU it
    rarely helps) and ``torch.compile`` of the UNet (``compile_unet``: faster on GPU after a
    warm-up of a minute or more). Outputs agree with the plain model to float rounding (see
    docs/generation.md, "Throughput")."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    models = [pipe.unet, pipe.vae, getattr(pipe, "controlnet", None)]
    for model in models:
        if model is None or not hasattr(model, "attn_processors"):
            continue
        procs = model.attn_processors
        if any(type(p) is AttnProcessor for p in procs.values()):
            model.set_attn_processor(
                {k: AttnProcessor2_0() if type(p) is AttnProcessor else p for k, p in procs.items()}
            )
    if channels_last is None:
        channels_last = pipe.device.type == "cuda"
    if channels_last:
        for model in models:
            if model is not None:
                model.to(memory_format=torch.channels_last)
    if compile_unet:
        pipe.unet.compile()
    return pipe


@dataclass
class Generation:
    """A loaded pipeline (LoRA adapters in place), the job's settings and its control images:
    :meth:`run` generates the images."""

    pipe: Pipeline  # or its ControlNet variant
    spec: GenerationSpec
    control: ControlSource | None = None
    loras: LoraSet = field(default_factory=LoraSet)

    def run(
        self,
        out: PathLike,
        *,
        shard: tuple[int, int] = (0, 1),
        batch_size: int = 8,
        resume: bool = False,
        provenance: Provenance | None = None,
        track: Track = no_track,
        log: Callable[[str], None] = lambda _: None,
        fuse_loras: bool | None = True,
    ) -> dict[str, Any]:
        """Generate this shard's missing images into ``out`` (see :func:`run_generation`;
        ``fuse_loras`` merges each class's LoRA mixture into the weights while it generates;
        None: the default, on);
        returns counts, whether the output is complete, and ``out``."""
        from geosynth.diffusion.sampling.generate import run_generation

        spec = self.spec
        prov = provenance or Provenance.start(
            "generate", seeds={"seed": spec.seed}, model=spec.model, noise=spec.noise
        )
        result = run_generation(
            self.pipe,
            spec,
            Path(out),
            provenance=prov,
            control=self.control,
            shard=shard,
            batch_size=batch_size,
            resume=resume,
            track=track,
            log=log,
            fuse_loras=True if fuse_loras is None else fuse_loras,
        )
        result["out"] = str(out)
        return result


def load_generation(
    *,
    model: PathLike = SD_MODEL,
    classes: Sequence[str] | None = None,
    per_class: int | None = None,
    prompt_template: str | None = None,
    steps: int = 50,
    guidance: float = 2.0,
    scheduler: str | None = None,
    noise: str | None = None,
    channel_means: PathLike | ChannelMeans | None = None,
    skip_channel_means_check: bool = False,
    leak_timestep: int | None = None,
    loras: Sequence[LoraRef] = (),
    lora_dir: PathLike | None = None,
    lora_weights: PathLike | None = None,
    controlnet: PathLike | None = None,
    control: str | None = None,
    control_images: PathLike | None = None,
    seed: int = 0,
    resolution: int | None = None,
    device: str | None = None,
    precision: str = "auto",
    radiometry: str | Radiometry | None = None,
    channels_last: bool | None = None,
    compile_unet: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> Generation:
    """Resolve, check and load everything a class-conditioned generation job needs.

    Classes default to those of the mixture file or per-class directory, else the LoRA card's,
    else the channel-means file's; the prompt template to the LoRA card's, else
    :data:`~geosynth.defaults.PROMPT_TEMPLATE`. ``noise="leak-aligned"`` needs ``channel_means``
    (a file from ``channel-means`` or a :class:`~geosynth.artifacts.ChannelMeans`), checked
    against the pipeline's VAE and size unless ``skip_channel_means_check`` (then ``log`` warns).
    ``controlnet``, ``control`` (canny or image) and ``control_images`` go together.
    ``precision`` is ``auto`` (fp16 on GPU, fp32 on CPU), fp32, fp16 or bf16. ``channels_last``
    (default: on CUDA) and ``compile_unet`` are speed settings (:func:`tune_for_speed`)."""
    from geosynth.data import load_dataset
    from geosynth.diffusion.channel_means import pipeline_mismatches
    from geosynth.diffusion.sampling.generate import GenerationSpec, check_channel_means

    per_class = 500 if per_class is None else per_class  # None: the default (a CLI can tell)
    noise = noise or "gaussian"
    if noise not in ("gaussian", "leak-aligned"):
        raise GeosynthError(f"noise={noise!r}: expected gaussian or leak-aligned")
    if (noise == "leak-aligned") != (channel_means is not None):
        raise GeosynthError("noise='leak-aligned' and `channel_means` go together")
    lset = resolve_loras(model, loras, lora_dir=lora_dir, lora_weights=lora_weights)
    map_model = lset.map_model
    if map_model is not None:
        raise GeosynthError(
            f"loras={str(map_model.path)!r}: a map-conditioned model; give the maps to follow "
            "with `maps`"
        )
    cm_where = None
    if isinstance(channel_means, ChannelMeans):
        cm: ChannelMeans | None = channel_means
        cm_where = "channel_means"
    elif channel_means is not None:
        cm = load_channel_means(channel_means)
        cm_where = f"channel_means={str(channel_means)!r}"
    else:
        cm = None
    rad = resolve_generation_radiometry(
        radiometry,
        [(f"loras={str(x.path)!r} (its card)", x.card) for x in lset.named if x.card],
        (cm_where, cm.metadata) if cm is not None and cm_where is not None else None,
    )
    card = lset.card
    names = (
        list(classes or [])
        or lset.classes
        or card.get("class_names")
        or (cm.class_names if cm else None)
    )
    if not names:
        raise GeosynthError(
            "`classes` is needed: no LoRA card or channel-means file names the classes"
        )
    names = list(names)
    lset.check_classes(names)
    if (controlnet is None) != (control is None) or (control is None) != (control_images is None):
        raise GeosynthError("`controlnet`, `control` and `control_images` go together")
    pipe = _load_pipeline(model, lset, scheduler, device, precision)
    size = resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
    if cm is not None:
        assert cm_where is not None
        check_channel_means(cm, names, pipe.unet.config.in_channels, cm_where)
        problems = pipeline_mismatches(cm, pipe.vae, size)
        if problems and not skip_channel_means_check:
            raise GeosynthError(
                f"{cm_where}: {problems[0]}; recompute the channel means with this pipeline "
                "or pass skip_channel_means_check=True"
            )
        for p in problems:
            log(f"warning: {cm_where}: {p} (check skipped)")
    control_source = None
    if controlnet is not None:
        assert control is not None and control_images is not None
        pipe = with_controlnet(pipe, controlnet)
        control_source = ControlSource(load_dataset(Path(control_images)), control, size)
        control_source.check_classes(names)
    lora_ops.load_adapters(pipe, lset.all)
    tune_for_speed(pipe, channels_last=channels_last, compile_unet=compile_unet)
    spec = GenerationSpec(
        model=str(model),
        classes=names,
        per_class=per_class,
        prompt_template=prompt_template or card.get("prompt_template", PROMPT_TEMPLATE),
        steps=steps,
        guidance=guidance,
        scheduler=scheduler,
        seed=seed,
        noise=noise,
        leak_timestep=leak_timestep,
        resolution=resolution,
        loras=lset.spec_loras(),
        class_lora_weights=lset.class_weights,
        channel_means={c: cm.for_class(c).tolist() for c in names} if cm else {},
        controlnet=None if controlnet is None else str(controlnet),
        control=control,
        control_images=None if control_images is None else str(control_images),
        radiometry=None if rad is None else rad.to_dict(),
    )
    return Generation(pipe, spec, control_source, lset)


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
        provenance: Provenance | None = None,
        track: Track = no_track,
    ) -> dict[str, Any]:
        """Generate into the new folder ``out`` (it appears whole when every image is done)."""
        from geosynth.artifacts import output_path
        from geosynth.data.writer import check_output_dir
        from geosynth.diffusion.sampling.mapgen import generate_from_maps

        out = output_path(out)
        check_output_dir(out)
        if out.exists() and any(out.iterdir()):
            raise GeosynthError(f"out={str(out)!r}: exists; choose a new path")
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
            track=track,
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
    "resume": "it writes a new folder in one run",
    "shard": "it writes a new folder in one run",
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
    model: PathLike = SD_MODEL,
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
    resume: bool = False,
    shard: str | None = None,
    fuse_loras: bool | None = None,
) -> MapGeneration:
    """Resolve, check and load generation from semantic ``maps`` (a folder of map images or a
    paired dataset, with ``legend.json`` inside or at ``map_legend``): one of ``loras`` must be
    a map-conditioned model (``finetune --condition``) whose legend the maps share.
    ``channels_last`` and ``compile_unet``: see :func:`tune_for_speed`.

    The class-generation settings from ``classes`` on are not supported with ``maps``; any of
    them given is an error (rather than silently ignored), raised before anything loads."""
    from geosynth.data.paired import read_map_folder
    from geosynth.diffusion.sampling.mapgen import check_maps

    _refuse_with_maps(
        classes=classes,
        per_class=per_class,
        noise=noise,
        channel_means=channel_means,
        radiometry=radiometry,
        controlnet=controlnet,
        resume=resume or None,
        shard=shard,
        fuse_loras=fuse_loras,
    )

    lset = resolve_loras(model, loras, lora_dir=lora_dir, lora_weights=lora_weights)
    map_model = lset.map_model
    if map_model is None:
        raise GeosynthError(
            "`maps` needs a map-conditioned model: a model directory fine-tuned with a map "
            "condition in `loras`"
        )
    legend = None if map_legend is None else Path(map_legend)
    map_set = read_map_folder(Path(maps), legend, arg="maps")
    check_maps(map_set, map_model.card)
    pipe = _load_pipeline(model, lset, scheduler, device, precision)
    lora_ops.load_adapters(pipe, lset.all)
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
