"""Batched embedding of datasets and of streamed webdataset shards (resumable shard by shard)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from geosynth import faults
from geosynth.artifacts import (
    Embeddings,
    Provenance,
    check_replaceable,
    load_tensors,
    save_embeddings,
    save_tensors,
    write_json,
)
from geosynth.data.dataset import ImageDataset
from geosynth.data.multiband import BandInput
from geosynth.data.shards import ShardStats, iter_shard_images, list_shards, subsample
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
    return Embeddings(torch.cat(feats), torch.cat(labels), list(ds.class_names), _strings(meta))


def _strings(meta: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in meta.items()}


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


def embed_shards(
    extractor: FeatureExtractor,
    root: Path,
    out: Path,
    *,
    provenance: Provenance,
    batch_size: int = 64,
    limit: int | None = None,
    seed: int = 0,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Embed the images of every shard under ``root`` into ``out``.

    Each finished shard is saved to ``OUT.parts/`` first, so a killed job resumes at the first
    unfinished shard; the parts are joined into ``out`` (atomically) at the end and removed.
    ``limit`` keeps a deterministic subset of that many samples (lowest hash priority under
    ``seed``, chosen from the tar headers before any image is decoded).
    """
    from geosynth.features.resolve import model_fingerprint  # resolve imports this module

    if extractor.band_input is not None:
        raise GeosynthError(f"{root}: band selection applies to datasets, not to shard directories")
    shards = list_shards(root)
    if not shards:
        raise GeosynthError(f"{root}: no *.tar shards found")
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
    if parts.exists():
        old = (
            json.loads((parts / "plan.json").read_text())
            if (parts / "plan.json").exists()
            else None
        )
        if old != plan:
            raise GeosynthError(
                f"{parts}: left by a different embed job (other shards, model, limit or seed); "
                "remove it to start over"
            )
    else:
        parts.mkdir(parents=True)
        write_json(parts / "plan.json", plan)
    keep = subsample(shards, limit, seed) if limit is not None else None
    done = [s for s in shards if (parts / f"{s.stem}.safetensors").exists()]
    if done:
        log(f"resuming: {len(done)} of {len(shards)} shards already embedded")
    for shard in track(shards, len(shards), "shards"):
        part = parts / f"{shard.stem}.safetensors"
        if part.exists():
            continue
        stats = ShardStats()
        feats: list[torch.Tensor] = []
        keys: list[str] = []
        images = iter_shard_images(shard, stats, None if keep is None else keep[shard.name])
        for batch in _batches(images, batch_size):
            pixels = torch.stack([extractor.transform(img) for _, img in batch])
            feats.append(extractor(pixels).cpu())
            keys.extend(k for k, _ in batch)
        emb = torch.cat(feats) if feats else torch.zeros(0, extractor.dim)
        save_tensors(
            part,
            {"embeddings": emb},
            provenance=provenance,
            metadata={
                "keys": keys,
                "samples": stats.samples,
                "corrupt": stats.corrupt,
                "truncated": stats.truncated,
                "errors": stats.errors,
            },
        )
        faults.stage("embed:shard")
    per_shard, all_feats, n_corrupt, truncated = [], [], 0, []
    for shard in shards:
        tf = load_tensors(parts / f"{shard.stem}.safetensors")
        all_feats.append(tf.tensors["embeddings"])
        corrupt = int(tf.metadata["corrupt"])
        n_corrupt += corrupt
        if json.loads(tf.metadata["truncated"]):
            truncated.append(shard.name)
        per_shard.append(
            {"shard": shard.name, "samples": int(tf.metadata["samples"]), "corrupt": corrupt}
        )
    embeddings = torch.cat(all_feats)
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
    save_embeddings(out, Embeddings(embeddings, metadata=_strings(meta)), provenance=provenance)
    faults.stage("embed:output")
    shutil.rmtree(parts, ignore_errors=True)
    return report


def embed_to_file(
    extractor: FeatureExtractor,
    source: str | Path,
    out: Path,
    *,
    provenance: Provenance,
    split: str | None = None,
    classes: list[str] | None = None,
    shots: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
    dataset: ImageDataset | None = None,
) -> dict[str, Any]:
    """Embed a shard directory (streamed, resumable, ``limit``) or a dataset (``split``,
    ``classes``, ``shots``; or ``dataset`` when the caller has loaded it) into ``out``; returns
    what was embedded."""
    from geosynth.data import load_dataset
    from geosynth.data.shards import is_shard_dir

    check_replaceable(Path(out), "file")
    if is_shard_dir(Path(source)):
        return embed_shards(
            extractor,
            Path(source),
            out,
            provenance=provenance,
            batch_size=batch_size,
            limit=limit,
            seed=seed,
            track=track,
            log=log,
        )
    if limit is not None:
        raise GeosynthError("--limit applies to shard directories; use --shots for datasets")
    ds = dataset or load_dataset(source, split=split, classes=classes, shots=shots, seed=seed)
    provenance.inputs[f"dataset:{source}"] = ds.fingerprint()
    emb = embed_dataset(extractor, ds, batch_size=batch_size, num_workers=num_workers, track=track)
    save_embeddings(out, emb, provenance=provenance)
    return {"samples": len(ds), "classes": len(ds.class_names)}
