"""Batched embedding of datasets and of streamed webdataset shards (resumable shard by shard)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from geosynth import faults
from geosynth.artifacts import (
    Embeddings,
    Provenance,
    load_tensors,
    save_embeddings,
    save_tensors,
    write_json,
)
from geosynth.artifacts.jsontext import json_text
from geosynth.data.dataset import ImageDataset
from geosynth.data.multiband import BandInput
from geosynth.distributed import (
    is_main_process,
    main_process_first,
    patient_group,
    rank_and_size,
    row_range,
    wait_for_all,
)
from geosynth.errors import GeosynthError
from geosynth.features.base import FeatureExtractor
from geosynth.progress import Track, no_track


class _Transformed(torch.utils.data.Dataset):
    """Decode + preprocess in data-loader workers; errors travel back as text so the main process
    can raise the one-line :class:`GeosynthError` (worker exceptions arrive as long tracebacks)."""

    def __init__(
        self,
        ds: ImageDataset,
        transform: Callable[[Any], torch.Tensor],
        bands: BandInput | None = None,
    ) -> None:
        self.ds, self.transform, self.bands = ds, transform, bands

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int, str]:
        try:
            if self.bands is None:
                return self.transform(self.ds.image(i)), self.ds.samples[i].label, ""
            where = self.ds.describe(self.ds.samples[i])
            pixels = self.bands.tensor(self.ds.raster(i), where)
            return self.transform(pixels), self.ds.samples[i].label, ""
        except GeosynthError as exc:
            return None, -1, str(exc)


def _collate(
    batch: list[tuple[torch.Tensor | None, int, str]],
) -> tuple[torch.Tensor, torch.Tensor]:
    for _, _, err in batch:
        if err:
            raise GeosynthError(err)
    return torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch])  # type: ignore[misc]


def embed_dataset(
    extractor: FeatureExtractor,
    ds: ImageDataset,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    track: Track = no_track,
) -> Embeddings:
    """Embeddings (N x D) with labels and class names of every image of ``ds``, in order."""
    loader = torch.utils.data.DataLoader(
        _Transformed(ds, extractor.transform, extractor.band_input),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=extractor.device.type == "cuda",
    )
    feats, labels = [], []
    n_batches = (len(ds) + batch_size - 1) // batch_size
    for pixels, lab in track(loader, n_batches, "embedding"):
        feats.append(extractor(pixels).cpu())
        labels.append(lab)
    meta = {**extractor.describe(), "source": ds.source, "selection": ds.selection}
    return Embeddings(
        torch.cat(feats),
        torch.cat(labels),
        list(ds.class_names),
        _strings(meta),
        ids=[s.key for s in ds.samples],
    )


def _strings(meta: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json_text(v, default=str) for k, v in meta.items()}


def _batches(
    items: Iterator[tuple[str, Image.Image]], size: int
) -> Iterator[list[tuple[str, Image.Image]]]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _open_parts(parts: Path, plan: dict[str, Any], distributed: bool) -> None:
    """Create the work folder ``OUT.parts`` with the job's plan, or check that the folder a killed
    job left was made for the same job. Distributed, rank 0 goes first and the others then find
    its folder (the plan does not depend on the number of ranks)."""
    with main_process_first() if distributed else nullcontext():
        if (parts / "plan.json").exists() or (parts.exists() and any(parts.iterdir())):
            old = (
                json.loads((parts / "plan.json").read_text())
                if (parts / "plan.json").exists()
                else None
            )
            if old != plan:
                raise GeosynthError(
                    f"{parts}: left by a different embed job (other shards, model, limit or "
                    "seed); remove it to start over"
                )
        else:
            parts.mkdir(parents=True, exist_ok=True)
            write_json(parts / "plan.json", plan)


def _my_units(
    names: list[str], parts: Path, distributed: bool, log: Callable[[str], None]
) -> list[int]:
    """Indices of the units (shards, row ranges) this rank embeds: its contiguous block of them
    (all of them in one process), less those a killed run already finished (each unit is a part
    file of its own)."""
    rank, size = rank_and_size() if distributed else (0, 1)
    start, stop = row_range(len(names), rank, size)
    mine = [i for i in range(start, stop) if not (parts / f"{names[i]}.safetensors").exists()]
    if len(mine) < stop - start:
        who = f"rank {rank} of {size}: " if size > 1 else ""
        log(f"{who}resuming: {stop - start - len(mine)} of {stop - start} parts already embedded")
    return mine


def _load_parts(parts: Path, names: list[str]) -> list[Any]:
    """Every finished part, in order (rank 0, after all ranks finished theirs)."""
    missing = [n for n in names if not (parts / f"{n}.safetensors").exists()]
    if missing:
        raise GeosynthError(
            f"{parts}: {len(missing)} parts (first {missing[0]}) are missing after every rank "
            "finished; under several machines `out` must be on a filesystem that every rank sees"
        )
    return [load_tensors(parts / f"{n}.safetensors") for n in names]


def embed_dataset_parts(
    extractor: FeatureExtractor,
    ds: ImageDataset,
    out: Path,
    *,
    provenance: Provenance,
    batch_size: int = 64,
    num_workers: int = 0,
    part_size: int = 4096,
    distributed: bool = False,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Embed ``ds`` into ``out`` (the file :func:`embed_dataset` + ``save_embeddings`` write),
    resumably: every ``part_size`` rows (rounded up to whole batches) are saved to ``OUT.parts/``
    as they finish, so a killed job resumes at its first unfinished part; the parts are joined
    into ``out`` (atomically) at the end and removed.

    ``distributed`` (every torch.distributed rank calls this): each rank embeds its contiguous
    block of parts; rank 0 joins them into ``out``. Parts are whole batches at the same rows as
    in one process, so the file equals a single-process run's; the parts do not depend on the
    number of ranks, so a job may resume with another number.
    """
    from geosynth.features.spec import model_fingerprint

    if part_size < 1:
        raise GeosynthError(f"part_size={part_size}: must be at least 1")
    group = patient_group() if distributed else None
    n = len(ds)
    rows = -(-part_size // batch_size) * batch_size
    ranges = [(s, min(s + rows, n)) for s in range(0, n, rows)]
    names = [f"rows-{s:010d}-{e:010d}" for s, e in ranges]
    parts = out.with_name(out.name + ".parts")
    plan = {
        "source": ds.source,
        "selection": ds.selection,
        "data": ds.fingerprint(),
        "rows": n,
        "part_rows": rows,
        "model": extractor.spec,
        "weights": model_fingerprint(extractor.spec),
        "precision": str(extractor.dtype),
        "device": extractor.device.type,
        "bands": None if extractor.band_input is None else extractor.band_input.to_dict(),
    }
    _open_parts(parts, plan, distributed)
    todo = _my_units(names, parts, distributed, log)
    batches = [
        list(range(b, min(b + batch_size, ranges[i][1])))
        for i in todo
        for b in range(ranges[i][0], ranges[i][1], batch_size)
    ]
    loader = torch.utils.data.DataLoader(
        _Transformed(ds, extractor.transform, extractor.band_input),
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=extractor.device.type == "cuda",
    )
    unit = iter(todo)
    current, feats, labels, done = next(unit, -1), [], [], 0
    for pixels, lab in track(loader, len(batches), "embedding"):
        feats.append(extractor(pixels).cpu())
        labels.append(lab)
        done += len(lab)
        if done == ranges[current][1] - ranges[current][0]:
            save_tensors(
                parts / f"{names[current]}.safetensors",
                {"embeddings": torch.cat(feats), "labels": torch.cat(labels)},
                provenance=provenance,
            )
            faults.stage("embed:part")
            current, feats, labels, done = next(unit, -1), [], [], 0
    wait_for_all(group)
    if distributed and not is_main_process():
        return {"rank": rank_and_size()[0], "parts_embedded": len(todo)}
    loaded = _load_parts(parts, names)
    embeddings = torch.cat([tf.tensors["embeddings"] for tf in loaded])
    all_labels = torch.cat([tf.tensors["labels"] for tf in loaded])
    del loaded
    meta = {**extractor.describe(), "source": ds.source, "selection": ds.selection}
    emb = Embeddings(
        embeddings,
        all_labels,
        list(ds.class_names),
        _strings(meta),
        ids=[s.key for s in ds.samples],
    )
    save_embeddings(out, emb, provenance=provenance)
    faults.stage("embed:output")
    shutil.rmtree(parts, ignore_errors=True)
    return {"samples": n, "classes": len(ds.class_names)}
