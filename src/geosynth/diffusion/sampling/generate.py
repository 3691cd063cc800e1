"""Generation jobs: per-image seeds, leak-aligned or Gaussian noise, LoRA mixtures per class,
resumable and shardable output.

Every image is a job ``(class, index)`` with its own seed derived from (global seed, class name,
index), so the same command gives the same images whatever the sharding or resume history (and
byte for byte the same with the same batch size: batches are cut from the shard's full job
list, so a resumed run recomputes a partly finished batch whole). Images are written one by one
(atomically) into ``OUT/<class>/<index>.png`` and their metadata rows appended to
``OUT/.parts/rows-<i>-of-<n>.jsonl``; a job counts as done when its row and its image exist.
Shards of the same job may run at the same time without ``resume``: the first one writes
``.parts/plan.json``, the others join it (under a file lock) when their settings are the same.
When every job of every shard is done, one process (under the same lock) writes
``metadata.jsonl``, the dataset card ``README.md``, the contact sheets and ``provenance.json``
(which records the settings) and then removes ``.parts``; finalizing is idempotent, so a kill at
any point of it is repaired by the next ``resume``. See docs/reliability.md.

``OUT`` holds exactly the class folders, so torchvision's ``ImageFolder``, timm and
``datasets.load_dataset(OUT)`` (through the card: ``label`` is a ClassLabel) read the classes and
counts of the run. What is only for eyes lives beside it, in ``OUT.previews/``
(:func:`previews_dir`): a contact sheet per class, ``<class>.png``, and for native output the
8-bit previews ``<class>/<index>.png``.

With a radiometry spec (from the LoRA card: the model learnt data in native units), each image is
also written back through the spec's inverse as ``OUT/<class>/<index>.tif`` in the data's units,
dtype and selected bands; that GeoTIFF is the row's ``file_name`` (so the output reads as a dataset
in native units, like the real one) and the 8-bit PNG preview goes to ``OUT.previews/``.
``OUT/radiometry.json`` holds the spec.

The job's settings and seeds are in :mod:`.spec`, the output store (plan, lock, repair,
finalize) in :mod:`.store`; this module is the sampling loop.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from geosynth import faults
from geosynth.artifacts import (
    ChannelMeans,
    Provenance,
    atomic_path,
    output_path,
)
from geosynth.artifacts.jsontext import json_text
from geosynth.data.radiometry import Radiometry
from geosynth.data.raster import write_raster
from geosynth.diffusion import adapters
from geosynth.diffusion.sampling.control import ControlSource
from geosynth.diffusion.sampling.metadata import batch_tensor, row_for
from geosynth.diffusion.sampling.metadata import columns as metadata_columns
from geosynth.diffusion.sampling.noise import (
    alpha_bar_at_start,
    gaussian_latents,
    leak_aligned_latents,
)
from geosynth.diffusion.sampling.spec import (
    PARTS,
    GenerationSpec,
    all_jobs,
    image_seed,
    parse_shard,
    shard_jobs,
)
from geosynth.diffusion.sampling.store import (
    finalize,
    image_rel,
    prepare_output,
    previews_dir,
    read_done,
)
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track

#: Re-exported: the job's settings and output layout, as callers have imported them from here.
__all__ = [
    "GenerationSpec",
    "check_channel_means",
    "image_seed",
    "parse_shard",
    "previews_dir",
    "run_generation",
    "text_embeddings",
]


def _by_image(
    batches: list[list[tuple[str, int]]], track: Track
) -> Iterator[list[tuple[str, int]]]:
    """The batches, with progress counted in images (a batch's images are counted as it
    starts), so the bar says how many of the shard's images are left, not how many batches."""
    jobs = iter(track((job for b in batches for job in b), sum(map(len, batches)), "images"))
    for batch in batches:
        for _ in batch:
            next(jobs)
        yield batch
    for _ in jobs:  # closes the progress bar
        pass


def run_generation(
    pipe,
    spec: GenerationSpec,
    out: Path,
    *,
    provenance: Provenance,
    control: ControlSource | None = None,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 8,
    resume: bool = False,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
    fuse_loras: bool = True,
    cache_text: bool = True,
) -> dict[str, Any]:
    """Generate this shard's missing images into ``out``; finalize if everything is done.

    ``fuse_loras`` merges each class's LoRA mixture into the weights while the class generates
    (:class:`~geosynth.diffusion.loras.ClassMix`; the base weights are restored exactly
    afterwards); ``cache_text`` encodes each class's prompt (and the empty prompt for guidance)
    once instead of at every batch. Both only change speed: cached embeddings are the same
    numbers, fused weights differ from running the adapters by float rounding (see
    docs/generation.md, "Throughput"), so as with ``batch_size``, byte-identical reruns and
    resumes need the same ``fuse_loras``.

    Every setting is checked before anything is written, so a refused call leaves no trace."""
    out = output_path(out)  # the checks and the writes see the folder the OS writes to
    spec.check()
    vae_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    size = spec.resolution or pipe.unet.config.sample_size * vae_factor
    multiple = math.lcm(vae_factor, 8)  # diffusers' pipelines also want multiples of 8
    if size % multiple:
        raise GeosynthError(f"resolution={size}: must be a multiple of {multiple}")
    if spec.noise == "leak-aligned":
        missing = [c for c in spec.classes if c not in spec.channel_means]
        if missing:
            raise GeosynthError(f"`channel_means`: no class '{missing[0]}'")
    if prepare_output(out, spec, resume, shard):
        whole = len(all_jobs(spec))
        return {
            "generated": 0,
            "images": whole,
            "complete": True,
            "previews": str(previews_dir(out)),
        }
    done = read_done(out)
    mine = shard_jobs(spec, shard)
    todo = {job for job in mine if job not in done}
    if done:
        log(f"resuming: {len(done)} images already done, {len(todo)} to go in this shard")
    pipe.scheduler.set_timesteps(spec.steps)
    shape = (pipe.unet.config.in_channels, size // vae_factor, size // vae_factor)
    abar = alpha_bar_at_start(pipe.scheduler, spec.leak_timestep)
    # Batches are cut from the shard's whole job list (not from what is left), so a resumed
    # run computes every image in the same batch as an uninterrupted one: same bytes.
    batches: list[list[tuple[str, int]]] = []
    for c in spec.classes:
        jobs = [j for j in mine if j[0] == c]
        batches += [jobs[s : s + batch_size] for s in range(0, len(jobs), batch_size)]
    batches = [b for b in batches if any(job in todo for job in b)]
    part = out / PARTS / f"rows-{shard[0]}-of-{shard[1]}.jsonl"
    rad = None if spec.radiometry is None else Radiometry.from_dict(spec.radiometry)
    previews = previews_dir(out)
    current_class = None
    texts: dict[int, dict[str, torch.Tensor]] = {}  # this class's embeddings by batch length
    with part.open("a") as rows_file, adapters.ClassMix(pipe, fuse=fuse_loras) as mix:
        for batch in _by_image(batches, track):
            class_name = batch[0][0]
            if class_name != current_class:
                if spec.loras:
                    mix.set(spec.weights_for(class_name))
                current_class = class_name
                texts = {}
            seeds = [image_seed(spec.seed, c, i) for c, i in batch]
            gens = [torch.Generator().manual_seed(s) for s in seeds]
            if spec.noise == "leak-aligned":
                means = torch.tensor(spec.channel_means[class_name])
                latents = leak_aligned_latents(
                    means, shape, gens, pipe.scheduler, leak_timestep=spec.leak_timestep
                )
            else:
                latents = gaussian_latents(shape, gens)
            param = next(pipe.unet.parameters())
            # floats in [0, 1], checked, then rounded to 8 bits as diffusers' PIL output is
            extra: dict[str, Any] = {"output_type": "np"}
            if control is not None:
                extra["image"] = [control.image(c, i) for c, i in batch]
            if cache_text:
                if len(batch) not in texts:
                    texts[len(batch)] = text_embeddings(
                        pipe, spec.prompt(class_name), len(batch), spec.guidance
                    )
                extra.update(texts[len(batch)])
            else:
                extra["prompt"] = [spec.prompt(class_name)] * len(batch)
            with _metadata_context(pipe, spec, batch, size):
                images = pipe(
                    **extra,
                    latents=latents.to(param.device, param.dtype),
                    num_inference_steps=spec.steps,
                    guidance_scale=spec.guidance,
                    height=size,
                    width=size,
                    generator=gens,
                ).images
            for (c, i), s, pixels in zip(batch, seeds, images, strict=True):
                if (c, i) not in todo:  # done before an interruption; recomputed for its batch
                    continue
                arr = finite_pixels(pixels, c, i)
                rel = image_rel(c, i)
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                native: dict[str, Any] = {}
                png = out / rel
                # The PNG (or a native image's preview) is what diffusers' PIL output would be.
                img = Image.fromarray((arr * 255).round().astype(np.uint8), "RGB")
                if rad is not None:
                    png = previews / rel
                    png.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(png) as tmp:
                    img.save(tmp, format="PNG")
                if rad is not None:
                    # Written after the preview: a row counts as done when its file_name exists.
                    tif = rel[: -len(".png")] + ".tif"
                    write_raster(out / tif, rad.inverse(arr.transpose(2, 0, 1) * 2.0 - 1.0))
                    native = {"file_name": tif}
                faults.stage("generate:image")
                row = {
                    "file_name": rel,
                    **native,
                    "label": spec.classes.index(c),
                    "class_name": c,
                    "index": i,
                    "prompt": spec.prompt(c),
                    "seed": s,
                    "noise": spec.noise,
                    "sqrt_alpha_bar": round(abar**0.5, 7) if spec.noise == "leak-aligned" else None,
                    "leak_timestep": spec.leak_timestep,
                    "loras": {
                        n: {"path": spec.loras[n]["path"], "weight": w}
                        for n, w in spec.weights_for(c).items()
                        if w
                    },
                    "scheduler": type(pipe.scheduler).__name__,
                    "steps": spec.steps,
                    "guidance": spec.guidance,
                    "model": spec.model,
                    **(
                        {}
                        if spec.metadata_rows is None
                        else metadata_columns(row_for(spec.metadata_rows, c, i), size)
                    ),
                    "control": None
                    if control is None
                    else {
                        "controlnet": spec.controlnet,
                        "mode": spec.control,
                        "source": control.describe(c, i),
                    },
                }
                rows_file.write(json_text(row) + "\n")
                rows_file.flush()
                faults.stage("generate:row")
    images = len(read_done(out))  # every shard's, before finalize removes the parts
    complete = finalize(out, spec, provenance)
    return {
        "generated": len(todo),  # new images, this call
        "images": images,  # images in the folder now
        "complete": complete,
        "shard": f"{shard[0]}/{shard[1]}",
        "previews": str(previews_dir(out)),
    }


def _metadata_context(pipe, spec: GenerationSpec, batch: list[tuple[str, int]], size: int):
    """The UNet conditioned on the batch's metadata (guidance: zeros for the unconditional
    half, the branch diffusers runs first), or nothing to do without metadata."""
    if spec.metadata_rows is None or spec.metadata_fields is None:
        return contextlib.nullcontext()
    from geosynth.diffusion.metadata_embedding import metadata_conditioning

    md = batch_tensor(spec.metadata_rows, batch, spec.metadata_fields, size)
    cfg = spec.guidance > 1 and pipe.unet.config.time_cond_proj_dim is None
    return metadata_conditioning(pipe.unet, md, guidance=cfg)


def finite_pixels(pixels: Any, class_name: str, index: int) -> np.ndarray:
    """One generated image (H x W x 3 floats in [0, 1]), refused when the model produced NaN or
    infinite values: written out they would be black PNGs or NaN GeoTIFFs, with exit code 0."""
    arr = np.asarray(pixels, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise GeosynthError(
            f"class '{class_name}' image {index}: the model produced NaN or infinite pixels (broken "
            "or diverged weights, or a half-precision overflow: try precision='fp32'); nothing "
            "was written for it"
        )
    return arr


def text_embeddings(pipe, prompt: str, n: int, guidance: float) -> dict[str, torch.Tensor]:
    """The prompt embeddings (``prompt_embeds``, for SDXL also ``pooled_prompt_embeds``, and the
    negative ones under guidance) for a batch of ``n`` copies of ``prompt``, computed exactly as
    the pipeline call computes them from the prompt (same batch shape, same kernels: the same
    numbers), so they can be encoded once per class and batch length instead of once per batch.
    Learned tokens are expanded and text-encoder LoRAs apply as active (or fused) when this is
    called."""
    from geosynth.diffusion.family import family_of

    cfg = guidance > 1 and pipe.unet.config.time_cond_proj_dim is None
    return family_of(pipe).pipeline_embeddings(pipe, [prompt] * n, cfg)


def check_channel_means(
    cm: ChannelMeans, classes: list[str], channels: int | None, where: str
) -> None:
    """Channel means must name every requested class and match the UNet's latent channels
    (``channels``; None: not known yet); ``where`` names them in errors
    (``channel_means='m.safetensors'``)."""
    missing = [c for c in classes if c not in cm.class_names]
    if missing:
        raise GeosynthError(
            f"{where}: no class '{missing[0]}' (file has: {', '.join(cm.class_names)})"
        )
    if channels is not None and cm.means.shape[1] != channels:
        raise GeosynthError(
            f"{where}: {cm.means.shape[1]} channels, but the model's latents have {channels}"
        )
