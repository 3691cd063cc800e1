"""Generation jobs: per-image seeds, leak-aligned or Gaussian noise, LoRA mixtures per class,
resumable and shardable output.

Every image is a job ``(class, index)`` with its own seed derived from (global seed, class name,
index), so the same command gives the same images whatever the batch size, sharding or resume
history. Images are written one by one (atomically) into ``OUT/<class>/<index>.png`` and their
metadata rows appended to ``OUT/.parts/rows-<i>-of-<n>.jsonl``; a job counts as done when its
row and its image exist. When every job of every shard is done, one process writes
``metadata.jsonl``, the contact sheets and ``provenance.json`` and removes ``.parts``.

With a radiometry spec (from the LoRA card: the model learnt data in native units), each image is
also written back through the spec's inverse as ``OUT/<class>/<index>.tif`` in the data's units,
dtype and selected bands; that GeoTIFF is the row's ``file_name`` (so the output reads as a dataset
in native units, like the real one) and the 8-bit PNG its ``preview``. ``OUT/radiometry.json``
holds the spec.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from geosynth.artifacts import ChannelMeans, Provenance, atomic_path, write_provenance
from geosynth.data.folder import METADATA_NAME
from geosynth.data.names import prompt_name, safe_dirname
from geosynth.data.radiometry import Radiometry
from geosynth.data.raster import write_raster
from geosynth.diffusion import loras as lora_ops
from geosynth.diffusion.control import ControlSource
from geosynth.diffusion.noise import alpha_bar_at_start, gaussian_latents, leak_aligned_latents
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track
from geosynth.viz import image_grid

PARTS = ".parts"
RADIOMETRY_NAME = "radiometry.json"


def image_seed(seed: int, class_name: str, index: int) -> int:
    """A 63-bit seed for one image, stable across runs and machines."""
    h = hashlib.blake2b(f"{seed}|{class_name}|{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") >> 1


@dataclass
class GenerationSpec:
    """Everything that determines the images (and nothing that only affects speed)."""

    model: str
    classes: list[str]
    per_class: int
    prompt_template: str
    steps: int = 50
    guidance: float = 2.0
    scheduler: str | None = None
    seed: int = 0
    noise: str = "gaussian"
    leak_timestep: int | None = None
    resolution: int | None = None
    loras: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> path, weight, stack
    class_lora_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    channel_means: dict[str, list[float]] = field(default_factory=dict)
    controlnet: str | None = None
    control: str | None = None  # canny | image
    control_images: str | None = None
    radiometry: dict[str, Any] | None = None  # native-unit output through this spec's inverse

    def prompt(self, class_name: str) -> str:
        return self.prompt_template.format(prompt_name(class_name))

    def weights_for(self, class_name: str) -> dict[str, float]:
        """Adapter weights for a class: stacked LoRAs at their weight, the others at 0, then the
        class's own mixture (pLoRA weights or its per-class LoRA) on top."""
        w = {n: float(info["weight"]) if info["stack"] else 0.0 for n, info in self.loras.items()}
        w.update(self.class_lora_weights.get(class_name, {}))
        return w


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n); under ``accelerate launch`` the process rank and count by default."""
    if text is None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return int(os.environ.get("RANK", "0")), max(world, 1)
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise GeosynthError(f"--shard {text}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise GeosynthError(f"--shard {text}: need 0 <= i < n")
    return i, n


def all_jobs(spec: GenerationSpec) -> list[tuple[str, int]]:
    return [(c, i) for c in spec.classes for i in range(spec.per_class)]


def shard_jobs(spec: GenerationSpec, shard: tuple[int, int]) -> list[tuple[str, int]]:
    """Jobs of shard i of n: every n-th job, so shards are disjoint and cover all jobs."""
    i, n = shard
    return [job for k, job in enumerate(all_jobs(spec)) if k % n == i]


def _rel(class_name: str, index: int) -> str:
    return f"{safe_dirname(class_name)}/{index:06d}.png"


def read_done(out: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Rows of finished jobs (row written and image present), from every shard's parts file."""
    done: dict[tuple[str, int], dict[str, Any]] = {}
    for part in sorted((out / PARTS).glob("rows-*.jsonl")):
        for line in part.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            if (out / row["file_name"]).is_file():
                done[row["class_name"], int(row["index"])] = row
    return done


def prepare_output(out: Path, spec: GenerationSpec, resume: bool) -> bool:
    """Start a new output directory or check that ``--resume`` continues the same job; True when
    the output is already complete (nothing to fill)."""
    plan_path = out / PARTS / "plan.json"
    plan = json.loads(json.dumps(asdict(spec)))
    if out.exists() and any(out.iterdir()):
        if not resume:
            raise GeosynthError(
                f"--out {out}: exists; pass --resume to continue it or choose a new path"
            )
        if (out / METADATA_NAME).is_file() and not plan_path.exists():
            return True
        if not plan_path.is_file():
            raise GeosynthError(f"--out {out}: not a geosynth generate output")
        if json.loads(plan_path.read_text()) != plan:
            raise GeosynthError(
                f"--out {out}: was started with other settings (model, classes, noise, LoRAs, "
                "seed, ...); --resume needs the same command"
            )
        return False
    (out / PARTS).mkdir(parents=True, exist_ok=True)
    with atomic_path(plan_path) as tmp:
        tmp.write_text(json.dumps(plan, indent=2))
    return False


def finalize(out: Path, spec: GenerationSpec, provenance: Provenance) -> bool:
    """If every job is done, write metadata.jsonl, contact sheets and provenance (once)."""
    if not (out / PARTS).is_dir():
        return (out / METADATA_NAME).is_file()
    done = read_done(out)
    if len(done) < len(all_jobs(spec)):
        return False
    try:
        fd = os.open(out / PARTS / "finalizing", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
    except FileExistsError:
        return True  # another process finalizes
    rows = [done[job] for job in all_jobs(spec)]
    if spec.radiometry is not None:
        with atomic_path(out / RADIOMETRY_NAME) as tmp:
            tmp.write_text(json.dumps(spec.radiometry, indent=2) + "\n")
    with atomic_path(out / METADATA_NAME) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sheets = out / "contact-sheets"
    sheets.mkdir(exist_ok=True)
    for c in spec.classes:
        imgs = [
            Image.open(out / done[c, i].get("preview", done[c, i]["file_name"]))
            for i in range(min(spec.per_class, 64))
        ]
        grid = image_grid([imgs[r : r + 8] for r in range(0, len(imgs), 8)], cell=96)
        with atomic_path(sheets / f"{safe_dirname(c)}.png") as tmp:
            grid.save(tmp, format="PNG")
    write_provenance(out, provenance)
    shutil.rmtree(out / PARTS, ignore_errors=True)
    return True


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
) -> dict[str, Any]:
    """Generate this shard's missing images into ``out``; finalize if everything is done."""
    if prepare_output(out, spec, resume):
        return {"generated": 0, "complete": True}
    done = read_done(out)
    todo = [job for job in shard_jobs(spec, shard) if job not in done]
    if done:
        log(f"resuming: {len(done)} images already done, {len(todo)} to go in this shard")
    pipe.scheduler.set_timesteps(spec.steps)
    vae_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    size = spec.resolution or pipe.unet.config.sample_size * vae_factor
    if size % vae_factor:
        raise GeosynthError(f"--resolution {size}: must be a multiple of {vae_factor}")
    shape = (pipe.unet.config.in_channels, size // vae_factor, size // vae_factor)
    abar = alpha_bar_at_start(pipe.scheduler, spec.leak_timestep)
    batches: list[list[tuple[str, int]]] = []
    for c in spec.classes:
        jobs = [j for j in todo if j[0] == c]
        batches += [jobs[s : s + batch_size] for s in range(0, len(jobs), batch_size)]
    part = out / PARTS / f"rows-{shard[0]}-of-{shard[1]}.jsonl"
    rad = None if spec.radiometry is None else Radiometry.from_dict(spec.radiometry)
    current_class = None
    with part.open("a") as rows_file:
        for batch in track(batches, len(batches), "generating"):
            class_name = batch[0][0]
            if class_name != current_class and spec.loras:
                lora_ops.activate(pipe, spec.weights_for(class_name))
                current_class = class_name
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
            extra: dict[str, Any] = {}
            if control is not None:
                extra["image"] = [control.image(c, i) for c, i in batch]
            if rad is not None:  # floats in [0, 1], not yet rounded to 8 bits
                extra["output_type"] = "np"
            images = pipe(
                [spec.prompt(class_name)] * len(batch),
                **extra,
                latents=latents.to(param.device, param.dtype),
                num_inference_steps=spec.steps,
                guidance_scale=spec.guidance,
                height=size,
                width=size,
                generator=gens,
            ).images
            for (c, i), s, img in zip(batch, seeds, images, strict=True):
                rel = _rel(c, i)
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                native: dict[str, Any] = {}
                arr = None
                if rad is not None:
                    arr = np.asarray(img, dtype=np.float32)
                    # The preview is what diffusers' PIL output would have been.
                    img = Image.fromarray((arr * 255).round().astype(np.uint8), "RGB")
                with atomic_path(out / rel) as tmp:
                    img.save(tmp, format="PNG")
                if rad is not None and arr is not None:
                    # Written after the preview: a row counts as done when its file_name exists.
                    tif = rel[: -len(".png")] + ".tif"
                    write_raster(out / tif, rad.inverse(arr.transpose(2, 0, 1) * 2.0 - 1.0))
                    native = {"file_name": tif, "preview": rel}
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
                    "control": None
                    if control is None
                    else {
                        "controlnet": spec.controlnet,
                        "mode": spec.control,
                        "source": control.describe(c, i),
                    },
                }
                rows_file.write(json.dumps(row) + "\n")
                rows_file.flush()
    complete = finalize(out, spec, provenance)
    return {
        "generated": sum(len(b) for b in batches),
        "complete": complete,
        "shard": f"{shard[0]}/{shard[1]}",
    }


def check_channel_means(cm: ChannelMeans, classes: list[str], channels: int, path: str) -> None:
    """Channel means must name every requested class and match the UNet's latent channels."""
    missing = [c for c in classes if c not in cm.class_names]
    if missing:
        raise GeosynthError(
            f"--channel-means {path}: no class '{missing[0]}' "
            f"(file has: {', '.join(cm.class_names)})"
        )
    if cm.means.shape[1] != channels:
        raise GeosynthError(
            f"--channel-means {path}: {cm.means.shape[1]} channels, but the model's latents "
            f"have {channels}"
        )
