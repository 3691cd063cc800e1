"""Embedding webdataset shards (LAION-style references): a deterministic subset, streamed from
the tar files, split across ranks, resumable by parts (the parts machinery is
:mod:`.embed`'s)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from geosynth import faults
from geosynth.artifacts import (
    Embeddings,
    Provenance,
    save_embeddings,
    save_tensors,
)
from geosynth.data.shards import ShardStats, iter_shard_images, list_shards, subsample
from geosynth.distributed import (
    is_main_process,
    patient_group,
    rank_and_size,
    wait_for_all,
)
from geosynth.errors import GeosynthError
from geosynth.features.base import FeatureExtractor
from geosynth.features.embed import _batches, _load_parts, _my_units, _open_parts, _strings
from geosynth.progress import Track, no_track


class _ShardBatches(torch.utils.data.IterableDataset):
    """Decoded, preprocessed batches of whole shards, made in data-loader workers: worker ``w``
    of ``W`` takes shards ``w, w + W, ...``. Items are ``(index, pixels, keys, None)`` and, once a
    shard is exhausted, ``(index, None, [], stats)``. Batches restart at every shard, so a batch
    holds the same images however shards are spread over ranks and workers (the forward pass, and
    so every bit of the features, depends on a batch's composition)."""

    def __init__(
        self,
        shards: list[tuple[int, Path]],
        keep: dict[str, set[str]] | None,
        transform: Callable[[Any], torch.Tensor],
        batch_size: int,
    ) -> None:
        self.shards, self.keep, self.transform, self.batch_size = (
            shards,
            keep,
            transform,
            batch_size,
        )

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor | None, list[str], ShardStats | None]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for index, shard in self.shards[worker::workers]:
            stats = ShardStats()
            keep = None if self.keep is None else self.keep[shard.name]
            for batch in _batches(iter_shard_images(shard, stats, keep), self.batch_size):
                pixels = torch.stack([self.transform(img) for _, img in batch])
                yield index, pixels, [k for k, _ in batch], None
            yield index, None, [], stats


def _as_is(item: Any) -> Any:
    return item


def embed_shards(
    extractor: FeatureExtractor,
    root: Path,
    out: Path,
    *,
    provenance: Provenance,
    batch_size: int = 64,
    num_workers: int = 0,
    limit: int | None = None,
    seed: int = 0,
    distributed: bool = False,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Embed the images of every shard under ``root`` into ``out``.

    Each finished shard is saved to ``OUT.parts/`` first, so a killed job resumes at the first
    unfinished shard; the parts are joined into ``out`` (atomically) at the end and removed.
    ``limit`` keeps a deterministic subset of that many samples (lowest hash priority under
    ``seed``, chosen from the tar headers before any image is decoded). ``num_workers``
    data-loader workers decode whole shards in parallel.

    ``distributed`` (every torch.distributed rank calls this): each rank embeds its contiguous
    block of shards, rank 0 joins all parts into ``out``, equal to a single-process run; the
    other ranks return what they embedded and write nothing but their parts.
    """
    from geosynth.features.spec import model_fingerprint

    if extractor.band_input is not None:
        raise GeosynthError(f"{root}: band selection applies to datasets, not to shard directories")
    shards = list_shards(root)
    if not shards:
        raise GeosynthError(f"{root}: no *.tar shards found")
    group = patient_group() if distributed else None
    parts = out.with_name(out.name + ".parts")
    plan = {
        "source": str(root.resolve()),
        "shards": [s.name for s in shards],
        "model": extractor.spec,
        "weights": model_fingerprint(extractor.spec),
        "precision": str(extractor.dtype),
        "device": extractor.device.type,
        "limit": limit,
        "seed": seed,
    }
    names = [s.stem for s in shards]
    _open_parts(parts, plan, distributed)
    todo = _my_units(names, parts, distributed, log)
    keep = subsample(shards, limit, seed) if limit is not None else None
    loader = torch.utils.data.DataLoader(
        _ShardBatches([(i, shards[i]) for i in todo], keep, extractor.transform, batch_size),
        batch_size=None,
        num_workers=min(num_workers, len(todo)),
        collate_fn=_as_is,
        pin_memory=extractor.device.type == "cuda",
    )

    def finished_shards() -> Iterator[int]:
        # Workers interleave batches of different shards: collect each shard's own batches.
        pending: dict[int, tuple[list[torch.Tensor], list[str]]] = {}
        for index, pixels, keys, stats in loader:
            feats, shard_keys = pending.setdefault(index, ([], []))
            if stats is None:
                feats.append(extractor(pixels).cpu())
                shard_keys.extend(keys)
                continue
            del pending[index]
            emb = torch.cat(feats) if feats else torch.zeros(0, extractor.dim)
            save_tensors(
                parts / f"{names[index]}.safetensors",
                {"embeddings": emb},
                provenance=provenance,
                metadata={
                    "keys": shard_keys,
                    "samples": stats.samples,
                    "corrupt": stats.corrupt,
                    "truncated": stats.truncated,
                    "errors": stats.errors,
                },
            )
            yield index

    for _ in track(finished_shards(), len(todo), "shards"):
        faults.stage("embed:shard")
    wait_for_all(group)
    if distributed and not is_main_process():
        return {"rank": rank_and_size()[0], "shards_embedded": len(todo)}
    per_shard, all_feats, n_corrupt, truncated = [], [], 0, []
    keys: list[str] = []
    for shard, tf in zip(shards, _load_parts(parts, names), strict=True):
        all_feats.append(tf.tensors["embeddings"])
        keys += json.loads(tf.metadata["keys"])
        corrupt = int(tf.metadata["corrupt"])
        n_corrupt += corrupt
        if json.loads(tf.metadata["truncated"]):
            truncated.append(shard.name)
        per_shard.append(
            {"shard": shard.name, "samples": int(tf.metadata["samples"]), "corrupt": corrupt}
        )
    embeddings = torch.cat(all_feats)
    del all_feats
    if embeddings.shape[0] == 0:
        raise GeosynthError(f"{root}: no readable images in {len(shards)} shards")
    report = {
        "samples": int(embeddings.shape[0]),
        "corrupt_skipped": n_corrupt,
        "truncated_shards": truncated,
        "shards": len(shards),
        "limit": limit,
        "seed": seed,
    }
    meta = {**extractor.describe(), "source": str(root), "shards": per_shard, **report}
    emb = Embeddings(embeddings, metadata=_strings(meta), ids=keys)
    save_embeddings(out, emb, provenance=provenance)
    faults.stage("embed:output")
    shutil.rmtree(parts, ignore_errors=True)
    return report
