"""The output of generated image/mask pairs (``generate --maps`` and joint generation): a
segmentation dataset in the layout ``data tile`` writes and :mod:`geosynth.data.segmentation`
reads, kept resumable and shardable by the class-generation store (:mod:`.store`: plan, lock,
rows per shard, repair).

Layout: ``OUT/images/<landscape>/<stem>.png`` and its class-index mask at the same path under
``OUT/masks/`` (the mask the image was conditioned on, or the one generated with it),
``legend.json`` (the model's classes and colours, with the mask's ignore value), ``metadata.jsonl``
(``file_name``, ``mask_file_name``, ``label``/``class_name`` = the landscape, how the pair was
made), a dataset card (``datasets.load_dataset(OUT)`` gives ``image`` and ``mask``) and
provenance recording the settings (what ``resume`` compares). The landscape of a pair is its
mask's dominant class. A job is one pair ``(source, index)``; it is done when its row is written
and both its files exist (the mask is written first, then the image, then the row).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from geosynth import faults
from geosynth.artifacts import Provenance, atomic_path, write_provenance
from geosynth.artifacts.jsontext import json_text
from geosynth.data.card import write_dataset_card
from geosynth.data.folder import METADATA_NAME
from geosynth.data.legend import LEGEND_NAME, Legend
from geosynth.data.masks import index_legend, index_mask
from geosynth.data.names import safe_dirname
from geosynth.diffusion.sampling.spec import PARTS
from geosynth.diffusion.sampling.store import output_lock, read_done

PAIR_FILES = ("file_name", "mask_file_name")


def pair_job(row: dict[str, Any]) -> tuple[str, int]:
    """The job a pair row records: (source, index); source is the map's key, or the class
    prompt of joint generation."""
    return str(row["job_source"]), int(row["index"])


@dataclass
class PairSpec:
    """Everything that determines a run's pairs (recorded in the output, compared on resume):
    ``sources`` (map keys, or class names for joint generation) times ``per_source``."""

    kind: str  # "maps" | "joint"
    model: str
    legend: dict[str, Any]
    sources: list[str]
    per_source: int
    steps: int
    guidance: float
    seed: int
    resolution: int
    prompt_template: str
    scheduler: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)  # e.g. the maps' digest

    def plan(self) -> dict[str, Any]:
        return json.loads(json_text(asdict(self)))

    def jobs(self) -> list[tuple[str, int]]:
        return [(s, j) for s in self.sources for j in range(self.per_source)]

    def shard_jobs(self, shard: tuple[int, int]) -> list[tuple[str, int]]:
        """Every n-th job, as class generation shards (disjoint, covering all jobs)."""
        i, n = shard
        return [job for k, job in enumerate(self.jobs()) if k % n == i]


def temporaries(out: Path) -> Iterator[Path]:
    """Files a killed writer may have left half-written under ``images/`` and ``masks/``."""
    for sub in ("images", "masks"):
        yield from (out / sub).rglob(".*.tmp-*")


def write_pair(
    out: Path,
    landscape: str,
    stem: str,
    image: Image.Image,
    classes: np.ndarray,
    legend: Legend,
) -> dict[str, str]:
    """Write one pair (mask first, then image, both atomically); their relative paths."""
    rel = f"{safe_dirname(landscape)}/{stem}.png"
    paths = {"mask_file_name": f"masks/{rel}", "file_name": f"images/{rel}"}
    for key in ("mask_file_name", "file_name"):
        (out / paths[key]).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / paths[key]) as tmp:
            if key == "file_name":
                image.save(tmp, format="PNG")
            else:
                index_mask(classes, legend).save(tmp, format="PNG")
        faults.stage(f"generate:pair:{key}")
    return paths


def finalize_pairs(out: Path, spec: PairSpec, legend: Legend, provenance: Provenance) -> bool:
    """If every pair is done, write metadata.jsonl, legend.json, the dataset card and provenance,
    then remove ``.parts`` (last, by one rename). Idempotent, safe to repeat after a kill, as
    :func:`.store.finalize` is."""
    parts = out / PARTS
    if not parts.is_dir():
        return (out / METADATA_NAME).is_file()
    jobs = spec.jobs()
    if len(read_done(out, pair_job, PAIR_FILES)) < len(jobs):
        return False
    try:
        lock = output_lock(out, create=False)
        lock.__enter__()
    except FileNotFoundError:  # another shard finalized meanwhile
        return (out / METADATA_NAME).is_file()
    with contextlib.ExitStack() as stack:
        stack.push(lock)
        if not (parts / "plan.json").is_file():
            return (out / METADATA_NAME).is_file()
        done = read_done(out, pair_job, PAIR_FILES)
        if len(done) < len(jobs):
            return False
        for leftover in (*out.glob(".*.tmp-*"), *temporaries(out)):
            leftover.unlink(missing_ok=True)
        rows = [done[job] for job in jobs]
        with atomic_path(out / METADATA_NAME) as tmp:
            tmp.write_text("".join(json_text(r) + "\n" for r in rows))
        with atomic_path(out / LEGEND_NAME) as tmp:
            index_legend(legend).write(tmp)
        notes = (
            "\nImage/mask pairs: `images/` and `masks/` (same paths; masks are class-index PNGs "
            f"read through `legend.json`: {legend.describe()}). `datasets.load_dataset(DIR)` "
            "gives each row's `image` and `mask`; `label` is the pair's landscape (its mask's "
            "dominant class).\n"
        )
        title = "geosynth generated image/mask pairs"
        write_dataset_card(out, legend.names, rows, title, images=("mask",), notes=notes)
        faults.stage("generate:finalize:metadata")
        provenance.extra["spec"] = spec.plan()
        write_provenance(out, provenance)
        gone = out / f"{PARTS}.old-{uuid.uuid4().hex[:8]}"
        os.replace(parts, gone)
        faults.stage("generate:finalize:parts")
    shutil.rmtree(gone, ignore_errors=True)
    return True
