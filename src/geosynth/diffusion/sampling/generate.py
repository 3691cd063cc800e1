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
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from geosynth import faults
from geosynth.artifacts import (
    DIR_PROVENANCE_NAME,
    ChannelMeans,
    Provenance,
    atomic_path,
    check_replaceable,
    clean_temporaries,
    output_path,
    write_provenance,
)
from geosynth.data.card import CARD_NAME, write_dataset_card
from geosynth.data.folder import METADATA_NAME
from geosynth.data.names import prompt_name, safe_dirname
from geosynth.data.radiometry import Radiometry
from geosynth.data.raster import write_raster
from geosynth.diffusion import loras as lora_ops
from geosynth.diffusion.sampling.control import ControlSource
from geosynth.diffusion.sampling.noise import (
    alpha_bar_at_start,
    gaussian_latents,
    leak_aligned_latents,
)
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track
from geosynth.viz import image_grid

PARTS = ".parts"
PREVIEWS_SUFFIX = ".previews"
RADIOMETRY_NAME = "radiometry.json"
#: Names the output layout uses at its top level; no class folder may take one of them.
RESERVED = {PARTS, METADATA_NAME, DIR_PROVENANCE_NAME, RADIOMETRY_NAME, CARD_NAME}
MAX_SEED = 2**63 - 1
#: Column types of the dataset card that one run's values cannot tell (null under Gaussian
#: noise); the nested ones (LoRA mixture, control source) stay in metadata.jsonl only.
CARD_TYPES = {"sqrt_alpha_bar": "float64", "leak_timestep": "int64", "loras": None, "control": None}


def previews_dir(out: Path) -> Path:
    """``OUT.previews``, beside ``out``: contact sheets and 8-bit previews. They live outside the
    dataset because any extra folder in it is a class to torchvision's ImageFolder and timm,
    and a PNG beside each GeoTIFF would be counted as a second image."""
    out = Path(out)
    if out.name in ("", ".", ".."):
        out = Path(os.path.abspath(out))
    return out.with_name(out.name + PREVIEWS_SUFFIX)


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

    def check(self) -> None:
        """Refuse settings that would fail or corrupt the output later, before anything is
        written: class folders that collide or clash with the layout, a prompt template that
        does not format, out-of-range numbers."""
        if not self.classes:
            raise GeosynthError("`classes`: give at least one class name")
        seen: dict[str, str] = {}
        for c in self.classes:
            d = safe_dirname(c)
            if d in RESERVED or d.startswith("."):
                raise GeosynthError(
                    f"class name '{c}': its folder '{d}' is reserved by the output layout "
                    f"(names starting with '.' and {', '.join(sorted(RESERVED))}); rename the class"
                )
            other = seen.get(d.casefold())
            if other is not None:
                what = "the same" if other == c else f"the same folder as '{other}'"
                raise GeosynthError(
                    f"class name '{c}': gives {what} ('{d}'; folders are compared ignoring case "
                    "for case-insensitive file systems); class names must map to distinct folders"
                )
            seen[d.casefold()] = c
        try:
            probe = self.prompt_template.format("CLASS")
        except (IndexError, KeyError, ValueError) as exc:
            raise GeosynthError(
                f"prompt_template={self.prompt_template!r}: does not format ({exc!r}); expected "
                "text with one {} where the class name goes, e.g. 'a satellite photo of a {}'"
            ) from None
        if "CLASS" not in probe:
            raise GeosynthError(
                f"prompt_template={self.prompt_template!r}: has no {{}} for the class name"
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise GeosynthError(f"seed={self.seed}: expected an integer in [0, 2**63 - 1]")
        if self.per_class < 1:
            raise GeosynthError(f"per_class={self.per_class}: must be at least 1")
        if self.steps < 1:
            raise GeosynthError(f"steps={self.steps}: must be at least 1")
        if self.resolution is not None and self.resolution < 1:
            raise GeosynthError(f"resolution={self.resolution}: expected a positive size")

    def plan(self) -> dict[str, Any]:
        """The settings as JSON data (what ``plan.json`` and the provenance record)."""
        return json.loads(json.dumps(asdict(self)))

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
        raise GeosynthError(f"shard={text!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise GeosynthError(f"shard={text!r}: need 0 <= i < n")
    return i, n


def all_jobs(spec: GenerationSpec) -> list[tuple[str, int]]:
    return [(c, i) for c in spec.classes for i in range(spec.per_class)]


def shard_jobs(spec: GenerationSpec, shard: tuple[int, int]) -> list[tuple[str, int]]:
    """Jobs of shard i of n: every n-th job, so shards are disjoint and cover all jobs."""
    i, n = shard
    return [job for k, job in enumerate(all_jobs(spec)) if k % n == i]


def _rel(class_name: str, index: int) -> str:
    return f"{safe_dirname(class_name)}/{index:06d}.png"


def _sheet_source(out: Path, row: dict[str, Any]) -> Path:
    """The 8-bit picture of a row for its class's contact sheet: the image itself, or for
    native output (a GeoTIFF) its preview in ``OUT.previews``."""
    rel = str(row["file_name"])
    if rel.endswith(".png"):
        return out / rel
    return previews_dir(out) / (rel.rsplit(".", 1)[0] + ".png")


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


@contextlib.contextmanager
def output_lock(out: Path, create: bool = True) -> Iterator[None]:
    """An exclusive lock on ``OUT/.parts/lock`` (shards starting or finalizing at once). With
    ``create=False`` a missing ``.parts`` raises FileNotFoundError instead of being made."""
    if create:
        (out / PARTS).mkdir(parents=True, exist_ok=True)
    with open(out / PARTS / "lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def settings_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """'seed 0 -> 1, noise gaussian -> leak-aligned': the settings that differ."""

    def short(v: Any) -> str:
        text = json.dumps(v)
        return text if len(text) <= 40 else text[:37] + "..."

    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(f"{k} {short(old.get(k))} -> {short(new.get(k))}" for k in keys)


def _recorded_plan(out: Path) -> dict[str, Any] | None:
    try:
        prov = json.loads((out / DIR_PROVENANCE_NAME).read_text())
    except (OSError, ValueError):
        return None
    return prov.get("extra", {}).get("spec")


def _is_finished(out: Path) -> bool:
    return (out / METADATA_NAME).is_file() and not (out / PARTS).exists()


def _repair_rows(part: Path) -> None:
    """Drop a row cut short by a kill (and anything unreadable) from a shard's rows file, so
    that appending continues on a clean line."""
    if not part.is_file():
        return
    text = part.read_text()
    lines = text.splitlines()
    good = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            continue
        good.append(line)
    if len(good) != len(lines) or (text and not text.endswith("\n")):
        with atomic_path(part) as tmp:
            tmp.write_text("".join(line + "\n" for line in good))


def prepare_output(
    out: Path, spec: GenerationSpec, resume: bool, shard: tuple[int, int] = (0, 1)
) -> bool:
    """Start a new output directory, join the same job's other shards, or check that ``resume``
    continues the same job; True when the output is already complete (nothing to fill).

    Nothing is written before every check has passed, so a refused call leaves no trace.
    """
    check_replaceable(out, "directory")
    plan = spec.plan()
    parts = out / PARTS
    plan_path = parts / "plan.json"
    if _is_finished(out):
        if not resume:
            raise GeosynthError(
                f"out={str(out)!r}: a finished generation output is there; choose a new path "
                "(or pass resume=True to check that it was made with these settings)"
            )
        recorded = _recorded_plan(out)
        if recorded is None:
            raise GeosynthError(
                f"out={str(out)!r}: {DIR_PROVENANCE_NAME} records no settings, so `resume` cannot "
                "tell whether it was made with these; choose a new path"
            )
        if recorded != plan:
            raise GeosynthError(
                f"out={str(out)!r}: finished with other settings "
                f"({settings_diff(recorded, plan)}); `resume` needs the same settings, or choose "
                "a new path"
            )
        clean_temporaries(out)  # a finalize killed while removing .parts
        return True
    # Another shard may have made .parts and not yet written the plan: it holds the lock.
    if out.is_dir() and any(q.name != PARTS for q in out.iterdir()) and not plan_path.is_file():
        raise GeosynthError(
            f"out={str(out)!r}: exists and is not a generation output in progress; "
            "choose a new path"
        )
    previews = previews_dir(out)
    check_replaceable(previews, "directory")
    if not plan_path.is_file() and previews.is_dir() and any(previews.iterdir()):
        raise GeosynthError(
            f"out={str(out)!r}: its previews folder {previews} already holds files from "
            "another run; choose a new path or remove that folder"
        )
    with output_lock(out):
        if plan_path.is_file():
            old = json.loads(plan_path.read_text())
            if old != plan:
                raise GeosynthError(
                    f"out={str(out)!r}: was started with other settings "
                    f"({settings_diff(old, plan)}); `resume` and other shards need the same "
                    "settings"
                )
            mine = parts / f"rows-{shard[0]}-of-{shard[1]}.jsonl"
            if not resume and (shard[1] == 1 or mine.exists()):
                raise GeosynthError(
                    f"out={str(out)!r}: an interrupted run of this job is there; pass "
                    "resume=True to continue it or choose a new path"
                )
            if resume:
                _repair_rows(mine)
                for c, i in shard_jobs(spec, shard):
                    for where in (out, previews):
                        for tmp in (where / safe_dirname(c)).glob(f".{i:06d}.png.tmp-*"):
                            tmp.unlink(missing_ok=True)
        else:
            with atomic_path(plan_path) as tmp:
                tmp.write_text(json.dumps(plan, indent=2))
            faults.stage("generate:plan")
    return False


def finalize(out: Path, spec: GenerationSpec, provenance: Provenance) -> bool:
    """If every job is done, write metadata.jsonl, the dataset card, contact sheets (in
    ``OUT.previews``) and provenance, then remove ``.parts``. Idempotent and safe to repeat after a kill at any point: every file is written
    atomically with content that depends only on the jobs, and ``.parts`` (the proof that the
    output is unfinished) goes last, by one rename."""
    parts = out / PARTS
    if not parts.is_dir():
        return (out / METADATA_NAME).is_file()
    if len(read_done(out)) < len(all_jobs(spec)):
        return False
    try:
        lock = output_lock(out, create=False)
        lock.__enter__()
    except FileNotFoundError:  # another shard finalized meanwhile
        return (out / METADATA_NAME).is_file()
    with contextlib.ExitStack() as stack:
        stack.push(lock)
        if not (parts / "plan.json").is_file():  # another shard finalized while we waited
            return (out / METADATA_NAME).is_file()
        done = read_done(out)
        if len(done) < len(all_jobs(spec)):
            return False
        previews = previews_dir(out)
        for leftover in (*out.glob(".*.tmp-*"), *previews.glob(".*.tmp-*")):
            leftover.unlink(missing_ok=True)  # a finalize killed while writing
        rows = [done[job] for job in all_jobs(spec)]
        if spec.radiometry is not None:
            with atomic_path(out / RADIOMETRY_NAME) as tmp:
                tmp.write_text(json.dumps(spec.radiometry, indent=2) + "\n")
        with atomic_path(out / METADATA_NAME) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        write_dataset_card(out, spec.classes, rows, "geosynth generated dataset", CARD_TYPES)
        faults.stage("generate:finalize:metadata")
        previews.mkdir(exist_ok=True)
        for c in spec.classes:
            imgs = [
                Image.open(_sheet_source(out, done[c, i])) for i in range(min(spec.per_class, 64))
            ]
            grid = image_grid([imgs[r : r + 8] for r in range(0, len(imgs), 8)], cell=96)
            with atomic_path(previews / f"{safe_dirname(c)}.png") as tmp:
                grid.save(tmp, format="PNG")
        faults.stage("generate:finalize:sheets")
        provenance.extra["spec"] = spec.plan()
        write_provenance(out, provenance)
        faults.stage("generate:finalize:provenance")
        gone = out / f"{PARTS}.old-{uuid.uuid4().hex[:8]}"
        os.replace(parts, gone)
        faults.stage("generate:finalize:parts")
    shutil.rmtree(gone, ignore_errors=True)
    return True


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
        return {"generated": 0, "complete": True, "previews": str(previews_dir(out))}
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
    with part.open("a") as rows_file, lora_ops.ClassMix(pipe, fuse=fuse_loras) as mix:
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
            extra: dict[str, Any] = {}
            if control is not None:
                extra["image"] = [control.image(c, i) for c, i in batch]
            if rad is not None:  # floats in [0, 1], not yet rounded to 8 bits
                extra["output_type"] = "np"
            if cache_text:
                if len(batch) not in texts:
                    texts[len(batch)] = text_embeddings(
                        pipe, spec.prompt(class_name), len(batch), spec.guidance
                    )
                extra.update(texts[len(batch)])
            else:
                extra["prompt"] = [spec.prompt(class_name)] * len(batch)
            images = pipe(
                **extra,
                latents=latents.to(param.device, param.dtype),
                num_inference_steps=spec.steps,
                guidance_scale=spec.guidance,
                height=size,
                width=size,
                generator=gens,
            ).images
            for (c, i), s, img in zip(batch, seeds, images, strict=True):
                if (c, i) not in todo:  # done before an interruption; recomputed for its batch
                    continue
                rel = _rel(c, i)
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                native: dict[str, Any] = {}
                arr = None
                png = out / rel
                if rad is not None:
                    arr = np.asarray(img, dtype=np.float32)
                    # The preview is what diffusers' PIL output would have been.
                    img = Image.fromarray((arr * 255).round().astype(np.uint8), "RGB")
                    png = previews / rel
                    png.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(png) as tmp:
                    img.save(tmp, format="PNG")
                if rad is not None and arr is not None:
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
                faults.stage("generate:row")
    complete = finalize(out, spec, provenance)
    return {
        "generated": len(todo),
        "complete": complete,
        "shard": f"{shard[0]}/{shard[1]}",
        "previews": str(previews_dir(out)),
    }


def text_embeddings(pipe, prompt: str, n: int, guidance: float) -> dict[str, torch.Tensor]:
    """``prompt_embeds`` (and ``negative_prompt_embeds`` under guidance) for a batch of ``n``
    copies of ``prompt``, computed exactly as the pipeline call computes them from the prompt
    (same batch shape, same kernels: the same numbers), so they can be encoded once per class
    and batch length instead of once per batch. Learned tokens are expanded and text-encoder
    LoRAs apply as active (or fused) when this is called."""
    cfg = guidance > 1 and pipe.unet.config.time_cond_proj_dim is None
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt([prompt] * n, pipe._execution_device, 1, cfg)
    out = {"prompt_embeds": cond}
    if uncond is not None:
        out["negative_prompt_embeds"] = uncond
    return out


def check_channel_means(cm: ChannelMeans, classes: list[str], channels: int, where: str) -> None:
    """Channel means must name every requested class and match the UNet's latent channels;
    ``where`` names them in errors (``channel_means='m.safetensors'``)."""
    missing = [c for c in classes if c not in cm.class_names]
    if missing:
        raise GeosynthError(
            f"{where}: no class '{missing[0]}' (file has: {', '.join(cm.class_names)})"
        )
    if cm.means.shape[1] != channels:
        raise GeosynthError(
            f"{where}: {cm.means.shape[1]} channels, but the model's latents have {channels}"
        )
