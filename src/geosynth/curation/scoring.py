"""The per-image scores of ``geosynth filter`` (copy distance to the training shots, a
classifier's confidence), computed part by part into ``OUT.parts/`` so that a killed run resumes
at its first unfinished part, and spread over data-loader workers and torch.distributed ranks.

A part is a run of rows that is a whole number of classifier batches and of copy-search blocks
(:func:`geosynth.metrics.memorisation.nearest_training` compares 64 images at a time), starting
where one would start in a single pass over the set. Every part is computed the same way in
one process, after a resume, or on any rank, so the scores, and the filter's output, are the
same bytes whichever way they were computed. ``workers`` data-loader processes decode the
images and compute their copy descriptors and classifier inputs (per-image work, the same
whichever process does it); the models run in the rank's own process. Under torchrun each rank
scores its contiguous block of parts (:func:`geosynth.distributed.row_range`), rank 0 reads them
all back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from geosynth import faults
from geosynth.artifacts import Provenance, json_text, load_tensors, save_tensors, write_json
from geosynth.curation.criteria import ClassifierModel
from geosynth.data import ImageDataset
from geosynth.distributed import (
    is_main_process,
    rank_and_size,
    row_range,
    wait_for_all,
)
from geosynth.errors import GeosynthError
from geosynth.metrics import memorisation as mem

#: rows of one copy-search block (nearest_training's ``block``): parts are whole blocks
COPY_BLOCK = 64
#: rows per resumable part before rounding up to whole batches and blocks
PART_ROWS = 1024


def parts_dir(out: Path) -> Path:
    """Where an unfinished filter run keeps its scores: ``OUT.parts`` next to ``OUT``."""
    return out.parent / f"{out.name}.parts"


def part_ranges(n: int, batch_size: int, part_rows: int = PART_ROWS) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of the parts of an ``n``-image set."""
    unit = math.lcm(batch_size, COPY_BLOCK)
    rows = max(1, -(-part_rows // unit)) * unit
    return [(s, min(s + rows, n)) for s in range(0, n, rows)]


class _Items(torch.utils.data.Dataset):
    """One row's per-image work, done in a data-loader worker: its copy descriptor and its
    classifier input. Errors travel back as text (a worker's exception arrives as a traceback)."""

    def __init__(
        self,
        ds: ImageDataset,
        describe: Callable[[Any], torch.Tensor] | None,
        prepare: Callable[[Any], torch.Tensor] | None,
    ) -> None:
        self.ds, self.describe, self.prepare = ds, describe, prepare

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, torch.Tensor | None, str]:
        try:
            image = self.ds.image(i)
            desc = self.describe(image) if self.describe is not None else None
            pixels = self.prepare(image) if self.prepare is not None else None
            return desc, pixels, ""
        except GeosynthError as exc:
            return None, None, str(exc)


def _collate(batch: list[tuple[Any, Any, str]]) -> tuple[Any, Any]:
    for _, _, err in batch:
        if err:
            raise GeosynthError(err)
    desc = [b[0] for b in batch]
    pixels = [b[1] for b in batch]
    return (
        torch.stack(desc) if desc[0] is not None else None,
        torch.stack(pixels) if pixels[0] is not None else None,
    )


def _loader(items: _Items, batches: list[list[int]], workers: int) -> Any:
    return torch.utils.data.DataLoader(
        items, batch_sampler=batches, num_workers=workers, collate_fn=_collate
    )


def train_descriptors(
    tds: ImageDataset, *, workers: int = 0, track: Callable[..., Any] | None = None
) -> torch.Tensor:
    """Every training image's copy-detection variants (M x VARIANTS x D), in order."""
    if len(tds) == 0:
        return mem.describe_all(tds.image, 0, variants=True)
    batches = [list(range(s, min(s + 16, len(tds)))) for s in range(0, len(tds), 16)]
    loader: Any = _loader(_Items(tds, mem.describe_variants, None), batches, workers)
    if track is not None:
        loader = track(loader, len(batches), "train")
    return torch.cat([desc for desc, _ in loader])


@dataclass
class Scores:
    """Per-image scores of the whole synthetic set (None where a criterion was not asked)."""

    copy: mem.Matches | None
    confidence: torch.Tensor | None
    predicted: list[str] | None


def open_parts(parts: Path, plan: dict[str, Any], resume: bool, group: Any) -> None:
    """Create ``parts`` with the run's plan, or check on resume that it was made for the same
    run (before any scoring). Every rank calls this (``group``: a
    :func:`~geosynth.distributed.patient_group`, None in one process) and looks before rank 0
    writes, so all of them decide alike."""
    plan = json.loads(json_text(plan, default=str))
    existed = parts.is_dir() and any(parts.iterdir())
    wait_for_all(group)
    if existed:
        if not resume:
            raise GeosynthError(
                f"{parts}: an interrupted filter run's scores are there; pass resume=True to "
                "continue it, or remove the folder to start over"
            )
        old = parts / "plan.json"
        if not old.is_file() or json.loads(old.read_text()) != plan:
            raise GeosynthError(
                f"resume=True: {parts} was left by a filter run with other inputs or settings; "
                "re-run with the same arguments or remove the folder"
            )
        return
    if is_main_process():
        parts.mkdir(parents=True, exist_ok=True)
        write_json(parts / "plan.json", plan)
    wait_for_all(group)


def _part_name(start: int, stop: int) -> str:
    return f"rows-{start:010d}-{stop:010d}.safetensors"


def score_parts(
    ds: ImageDataset,
    parts: Path,
    ranges: list[tuple[int, int]],
    *,
    train: torch.Tensor | None,
    classifier: ClassifierModel | None,
    batch_size: int,
    workers: int = 0,
    group: Any = None,
    track: Callable[..., Any] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> Scores | None:
    """Score every row of ``ds`` (copy matches against the ``train`` descriptors, classifier
    confidence), part by part (``ranges``, from :func:`part_ranges`) into ``parts`` (opened by
    :func:`open_parts`; see the module docstring). Under torch.distributed every rank calls
    this with the same ``group``; rank 0 gets the scores, the others None."""
    space = mem.spacing(train) if train is not None else None  # the shots' own spacing, once
    distributed = group is not None
    rank, size = rank_and_size() if distributed else (0, 1)
    first, last = row_range(len(ranges), rank, size)
    mine = [r for r in ranges[first:last] if not (parts / _part_name(*r)).exists()]
    if len(mine) < last - first:
        who = f"rank {rank} of {size}: " if size > 1 else ""
        log(f"{who}resuming: {last - first - len(mine)} of {last - first} parts already scored")
    items = _Items(
        ds,
        mem.describe if train is not None else None,
        classifier.prepare if classifier is not None else None,
    )
    batches = [
        list(range(b, min(b + batch_size, stop)))
        for start, stop in mine
        for b in range(start, stop, batch_size)
    ]
    loader: Any = _loader(items, batches, workers)
    if track is not None:
        loader = track(loader, len(batches), "scoring")
    labels = torch.tensor(list(ds.labels), dtype=torch.long)
    prov = Provenance.start("filter")
    todo, done, acc = iter(mine), 0, _Acc()
    current = next(todo, None)
    for (desc, pixels), rows in zip(loader, batches, strict=True):
        if classifier is not None:
            conf, pred = classifier.forward(pixels, labels[rows])
            acc.add(conf=conf, pred=pred)
        if desc is not None:
            acc.add(desc=desc)
        done += len(rows)
        if current is not None and done == current[1] - current[0]:
            save_tensors(parts / _part_name(*current), acc.part(train, space), provenance=prov)
            faults.stage("filter:part")
            current, done, acc = next(todo, None), 0, _Acc()
    wait_for_all(group)
    if distributed and not is_main_process():
        return None
    return _read_parts(parts, ranges, train is not None, classifier)


class _Acc:
    """The tensors of the part being scored."""

    def __init__(self) -> None:
        self.lists: dict[str, list[torch.Tensor]] = {}

    def add(self, **tensors: torch.Tensor) -> None:
        for key, t in tensors.items():
            self.lists.setdefault(key, []).append(t)

    def part(
        self, train: torch.Tensor | None, space: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if "desc" in self.lists:
            assert train is not None
            desc = torch.cat(self.lists["desc"])
            match = mem.nearest_training(desc, train, block=COPY_BLOCK, space=space)
            out.update(copy_distance=match.distance, copy_ratio=match.ratio)
            out["copy_index"] = match.index
            out["copy_transform"] = torch.tensor([mem.TRANSFORMS.index(t) for t in match.transform])
        if "conf" in self.lists:
            out.update(confidence=torch.cat(self.lists["conf"]))
            out.update(predicted=torch.cat(self.lists["pred"]))
        if not out:  # neither criterion: an empty marker that the part is done
            out["done"] = torch.zeros(1)
        return out


def _read_parts(
    parts: Path,
    ranges: list[tuple[int, int]],
    copies: bool,
    classifier: ClassifierModel | None,
) -> Scores:
    missing = [r for r in ranges if not (parts / _part_name(*r)).exists()]
    if missing:
        raise GeosynthError(
            f"{parts}: {len(missing)} parts (first rows {missing[0][0]}-{missing[0][1]}) are "
            "missing after every rank finished; under several machines `out` must be on a file "
            "system every rank sees"
        )
    loaded = [load_tensors(parts / _part_name(*r)).tensors for r in ranges]

    def cat(key: str) -> torch.Tensor:
        return torch.cat([t[key] for t in loaded]) if loaded else torch.empty(0)

    copy = None
    if copies:
        transform = [mem.TRANSFORMS[int(i)] for i in cat("copy_transform")]
        copy = mem.Matches(cat("copy_distance"), cat("copy_ratio"), cat("copy_index"), transform)
    if classifier is None:
        return Scores(copy, None, None)
    predicted = [classifier.names[int(i)] for i in cat("predicted")]
    return Scores(copy, cat("confidence"), predicted)
