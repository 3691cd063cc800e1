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

:func:`~geosynth.diffusion.sampling.mapgen.load_map_generation` does the same for a map-conditioned model (``finetune --condition``)
and a folder of semantic maps; :meth:`MapGeneration.run` writes the paired output
(see :mod:`.mapgen`).

Errors name these functions' parameters (``lora_weights='w.json': ...``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosynth.artifacts import ChannelMeans, Provenance, load_channel_means
from geosynth.data.dataset import ImageDataset
from geosynth.data.radiometry import Radiometry
from geosynth.data.radiometry_defaults import check_same_spec, radiometry_from
from geosynth.defaults import PROMPT_TEMPLATE
from geosynth.diffusion import adapters
from geosynth.diffusion.family import ModelFamily, check_family, detect_family, family_of
from geosynth.diffusion.identity import model_digest
from geosynth.diffusion.loras import LoraRef, LoraSet, PathLike, resolve_loras
from geosynth.diffusion.sampling.control import ControlSource
from geosynth.diffusion.sampling.metadata import model_fields, resolve_rows
from geosynth.diffusion.types import Pipeline
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track

if TYPE_CHECKING:
    from geosynth.diffusion.sampling.spec import GenerationSpec


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
        spec = radiometry_from(given)  # a spec, or any artifact that records one
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
    """The same components in the family's ControlNet pipeline (no reload of the base model)."""
    from diffusers import ControlNetModel

    from geosynth.runtime import load_with

    cn = load_with(
        lambda r: ControlNetModel.from_pretrained(r, dtype=pipe.unet.dtype), ref, "controlnet"
    )
    cls = family_of(pipe).pipeline_class(control=True)
    cpipe = cls.from_pipe(pipe, controlnet=cn.to(pipe.device))
    cpipe.set_progress_bar_config(disable=True)
    return cpipe


def load_pipeline(
    model: PathLike,
    loras: LoraSet,
    scheduler: str | None,
    device: str | None,
    precision: str,
    family: ModelFamily | None = None,
) -> Pipeline:
    """The base pipeline on ``device`` in ``precision``'s dtype, with the requested scheduler and
    what the LoRA cards ask for (components, tokens, scheduler settings); adapters not yet.
    ``family``: the model's, when already detected."""
    from geosynth.diffusion.loading import load_sd_pipeline
    from geosynth.diffusion.sampling.schedulers import make_scheduler
    from geosynth.distributed import local_device
    from geosynth.runtime import pick_device, pick_dtype

    dev = local_device(pick_device(device))  # under torchrun / accelerate: this rank's GPU
    pipe = load_sd_pipeline(model, device=dev, dtype=pick_dtype(precision, dev), family=family)
    new_scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    if new_scheduler is not None:
        pipe.scheduler = new_scheduler
    adapters.apply_cards(pipe, loras.all)
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
        from geosynth.diffusion.sampling.jointgen import run_joint_generation

        spec = self.spec
        prov = provenance or Provenance.start(
            "generate", seeds={"seed": spec.seed}, model=spec.model, noise=spec.noise
        )
        joint = self.loras.joint_model
        run = run_generation if joint is None else run_joint_generation
        extra = {} if joint is None else {"joint_card": joint.card["joint_masks"]}
        result = run(
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
            **extra,
        )
        result["out"] = str(out)
        return result


def load_generation(
    *,
    model: PathLike | None = None,
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
    metadata: str | Mapping[str, Any] | None = None,
    metadata_from: PathLike | ImageDataset | None = None,
    metadata_shuffle: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> Generation:
    """Resolve, check and load everything a class-conditioned generation job needs.

    ``model``: the base pipeline; None takes the base model the LoRA card records (said in one
    line to ``log``), else :data:`~geosynth.defaults.SD_MODEL`.

    Classes default to those of the mixture file or per-class directory, else the LoRA card's,
    else the channel-means file's; the prompt template to the LoRA card's, else
    :data:`~geosynth.defaults.PROMPT_TEMPLATE`. ``noise="leak-aligned"`` needs ``channel_means``
    (a file from ``channel-means`` or a :class:`~geosynth.artifacts.ChannelMeans`), checked
    against the pipeline's VAE and size unless ``skip_channel_means_check`` (then ``log`` warns).
    ``controlnet``, ``control`` (canny or image) and ``control_images`` go together.
    ``precision`` is ``auto`` (fp16 on CUDA GPUs, fp32 elsewhere), fp32, fp16 or bf16. ``channels_last``
    (default: on CUDA) and ``compile_unet`` are speed settings (:func:`tune_for_speed`).

    A model with DiffusionSat's metadata embedding (``finetune --metadata``, a DiffusionSat
    checkpoint) takes ``metadata``: ``FIELD=VALUE`` text, a mapping or a table file, or
    ``metadata_from``: a real dataset, one image per sample asking for its metadata
    (``metadata_shuffle``: permuted within each class, the control); see :mod:`.metadata`."""
    from geosynth.data import load_dataset
    from geosynth.diffusion.channel_means import pipeline_mismatches
    from geosynth.diffusion.sampling.generate import GenerationSpec, check_channel_means
    from geosynth.runtime import model_ref

    per_class_given = per_class is not None
    per_class = 500 if per_class is None else per_class  # None: the default (a CLI can tell)
    noise = noise or "gaussian"
    if noise not in ("gaussian", "leak-aligned"):
        raise GeosynthError(f"noise={noise!r}: expected gaussian or leak-aligned")
    if (noise == "leak-aligned") != (channel_means is not None):
        raise GeosynthError("noise='leak-aligned' and `channel_means` go together")
    lset = resolve_loras(model, loras, lora_dir=lora_dir, lora_weights=lora_weights)
    model = lset.model
    if lset.model_from is not None:
        log(f"model: {model} (the base model {lset.model_from.path}'s card records)")
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
    # every setting and input is checked before the pipeline loads (that takes seconds)
    family = detect_family(model)
    if cm is not None and cm_where is not None:
        check_family(cm.metadata.get("family"), family, cm_where, model)
        check_channel_means(cm, names, None, cm_where)
    fields = model_fields(model, [x.card for x in lset.all if x.card])
    rows = resolve_rows(
        metadata=metadata,
        metadata_from=metadata_from,
        shuffle=metadata_shuffle,
        fields=fields,
        classes=names,
        seed=seed,
    )
    if metadata_from is not None and per_class_given:
        raise GeosynthError(
            "`per_class` and `metadata_from`: metadata_from makes one image per real sample"
        )
    spec = GenerationSpec(
        metadata_fields=None if rows is None or fields is None else list(fields),
        metadata_rows=rows,
        class_counts={c: len(r) for c, r in rows.items()} if metadata_from and rows else {},
        model=str(model),
        model_digest=model_digest(model),
        family=family.name,
        classes=names,
        per_class=per_class,
        prompt_template=prompt_template or card.get("prompt_template", PROMPT_TEMPLATE),
        # a LoRA card from before "a"/"an" was chosen ("prompts" not recorded) was trained on
        # its template filled literally: fill it so (an explicit template gets articles)
        articles=prompt_template is not None or "prompt_template" not in card or "prompts" in card,
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
    spec.check()
    control_data = None
    if controlnet is not None:
        model_ref(controlnet, "controlnet")
        control_data = load_dataset(Path(str(control_images)))
    pipe = load_pipeline(model, lset, scheduler, device, precision, family)
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
        assert control_data is not None
        control_source = ControlSource(control_data, control, size)
        control_source.check_classes(names)
    adapters.load_adapters(pipe, lset.all)
    tune_for_speed(pipe, channels_last=channels_last, compile_unet=compile_unet)
    return Generation(pipe, spec, control_source, lset)
