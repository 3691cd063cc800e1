"""``generate`` with a joint model (``finetune --joint-masks``, SatSynth): every image is
generated with its mask, from the class prompts of class generation (``classes``,
``per_class``, the prompt template, text guidance), into the segmentation dataset layout of
:mod:`.pairstore` (resumable and shardable: one job per (class, index), the seeds of class
generation).

The pipeline denoises image latents and mask bits together (its UNet has both as channels) and
returns the final latents; the image channels are decoded by the VAE exactly as the pipeline
decodes, the mask bits by :func:`geosynth.diffusion.joint.decode_bits` (codes that name no class
become ignore and are counted: ``invalid_pixels``, per row and in all), then repeated from the
latent grid to image size. The pair's landscape folder is its mask's dominant class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from geosynth import faults
from geosynth.artifacts import Provenance, output_path
from geosynth.artifacts.jsontext import json_text
from geosynth.data.legend import Legend
from geosynth.data.pairdata import dominant_class
from geosynth.diffusion import adapters
from geosynth.diffusion.joint import decode_bits, to_image_grid
from geosynth.diffusion.sampling.control import ControlSource
from geosynth.diffusion.sampling.generate import finite_pixels, text_embeddings
from geosynth.diffusion.sampling.noise import gaussian_latents
from geosynth.diffusion.sampling.pairstore import (
    PAIR_FILES,
    PairSpec,
    finalize_pairs,
    pair_job,
    temporaries,
    write_pair,
)
from geosynth.diffusion.sampling.spec import PARTS, GenerationSpec, image_seed
from geosynth.diffusion.sampling.store import prepare_output, read_done
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track


def _refuse(spec: GenerationSpec, control: ControlSource | None) -> None:
    """Settings joint generation does not support, by name, before anything is written."""
    if spec.noise != "gaussian":
        raise GeosynthError(
            f"noise={spec.noise!r}: a joint image+mask model samples from Gaussian noise "
            "(its channel means would cover the image latents only)"
        )
    if control is not None or spec.controlnet is not None:
        raise GeosynthError(f"controlnet={spec.controlnet!r}: not supported with a joint model")
    if spec.radiometry is not None:
        raise GeosynthError(
            "radiometry: a joint image+mask model writes 8-bit images with their masks"
        )


@torch.no_grad()
def run_joint_generation(
    pipe,
    spec: GenerationSpec,
    out: Path,
    *,
    joint_card: dict[str, Any],
    provenance: Provenance,
    control: ControlSource | None = None,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 8,
    resume: bool = False,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
    fuse_loras: bool = True,
) -> dict[str, Any]:
    """Generate this shard's missing image/mask pairs into ``out``; finalize when all are done."""
    out = output_path(out)
    spec.check()
    _refuse(spec, control)
    legend = Legend.from_dict(joint_card["legend"], "model card legend")
    k, bits = len(legend), int(joint_card["bits"])
    latent = int(joint_card["latent_channels"])
    channels = int(pipe.unet.config.in_channels)
    if channels != latent + bits:
        raise GeosynthError(
            f"the model's UNet takes {channels} channels; its card says {latent} latent + {bits} "
            "mask bits"
        )
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    size = spec.resolution or pipe.unet.config.sample_size * factor
    if size % math.lcm(factor, 8):
        raise GeosynthError(f"resolution={size}: must be a multiple of {math.lcm(factor, 8)}")
    plan = PairSpec(
        "joint", spec.model, legend.to_dict(), list(spec.classes), spec.per_class, spec.steps,
        spec.guidance, spec.seed, size, spec.prompt_template, spec.scheduler,
        {"generation": spec.plan()},
    )  # fmt: skip
    if prepare_output(out, plan, resume, shard, lambda: temporaries(out)):
        return _result(out, 0, shard, True, size)
    done = read_done(out, pair_job, PAIR_FILES)
    mine = plan.shard_jobs(shard)
    todo = {job for job in mine if job not in done}
    if done:
        log(f"resuming: {len(done)} pairs already done, {len(todo)} to go in this shard")
    shape = (channels, size // factor, size // factor)
    batches = []  # cut per class from the shard's whole job list: resumed runs match
    for c in spec.classes:
        jobs = [j for j in mine if j[0] == c]
        batches += [jobs[s : s + batch_size] for s in range(0, len(jobs), batch_size)]
    batches = [b for b in batches if any(job in todo for job in b)]
    part = out / PARTS / f"rows-{shard[0]}-of-{shard[1]}.jsonl"
    param = next(pipe.unet.parameters())
    with part.open("a") as rows_file, adapters.ClassMix(pipe, fuse=fuse_loras) as mix:
        for batch in track(batches, len(batches), "pairs"):
            name = batch[0][0]
            if spec.loras:
                mix.set(spec.weights_for(name))
            seeds = [image_seed(spec.seed, c, i) for c, i in batch]
            gens = [torch.Generator().manual_seed(s) for s in seeds]
            latents = gaussian_latents(shape, gens)
            result = pipe(
                **text_embeddings(pipe, spec.prompt(name), len(batch), spec.guidance),
                latents=latents.to(param.device, param.dtype),
                num_inference_steps=spec.steps,
                guidance_scale=spec.guidance,
                height=size,
                width=size,
                generator=gens,
                output_type="latent",
            ).images
            z = result[:, :latent] / pipe.vae.config.scaling_factor
            decoded = pipe.vae.decode(z.to(pipe.vae.dtype)).sample
            # [0, 1] as diffusers' image processor gives it, then 8 bits as its PIL output
            pixels = (decoded.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
            masks, _ = decode_bits(result[:, latent:].float(), k)
            for (c, i), s, px, grid in zip(batch, seeds, pixels, masks, strict=True):
                if (c, i) not in todo:
                    continue
                arr = finite_pixels(px, c, i)
                invalid = int((grid < 0).sum()) * factor * factor
                classes = to_image_grid(grid, factor)
                landscape = dominant_class(classes, k)
                image = Image.fromarray((arr * 255).round().astype(np.uint8), "RGB")
                stem = f"{c}_{i:06d}".replace("/", "_")
                files = write_pair(out, legend.names[landscape], stem, image, classes, legend)
                row = {
                    **files,
                    "label": landscape,
                    "class_name": legend.names[landscape],
                    "job_source": c,
                    "index": i,
                    "prompt": spec.prompt(c),
                    "seed": s,
                    "invalid_pixels": invalid,
                    "guidance": spec.guidance,
                    "steps": spec.steps,
                    "scheduler": type(pipe.scheduler).__name__,
                    "model": spec.model,
                }
                rows_file.write(json_text(row) + "\n")
                rows_file.flush()
                faults.stage("generate:row")
    complete = finalize_pairs(out, plan, legend, provenance)
    return _result(out, len(todo), shard, complete, size)


def _result(
    out: Path, generated: int, shard: tuple[int, int], complete: bool, size: int
) -> dict[str, Any]:
    """What was done, with the invalid mask codes counted over every pair in the folder."""
    if complete:
        import json

        from geosynth.data.folder import METADATA_NAME

        rows = [json.loads(x) for x in (out / METADATA_NAME).read_text().splitlines() if x]
    else:
        rows = list(read_done(out, pair_job, PAIR_FILES).values())
    pixels = len(rows) * size * size
    invalid = sum(int(r["invalid_pixels"]) for r in rows)
    return {
        "generated": generated,
        "images": len(rows),
        "pairs": len(rows),
        "complete": complete,
        "shard": f"{shard[0]}/{shard[1]}",
        "invalid_pixels": invalid,
        "invalid_fraction": round(invalid / pixels, 6) if pixels else 0.0,
        "joint": True,
        "previews": None,
    }
