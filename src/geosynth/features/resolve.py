"""Any source to embeddings: :func:`embed_to_file` embeds a dataset or a shard directory into a file,
and :func:`resolve_embeddings` turns a rarity/evaluate argument into embeddings: an embeddings file is read as is; a dataset
or a shard directory is embedded once and cached under ``$GEOSYNTH_CACHE`` (default
``~/.cache/geosynth``), keyed by everything that changes the numbers: the data's content
fingerprint (and the shard subsample), the feature model spec, a fingerprint of a local model's
weight files, the device type and the precision (see docs/reliability.md)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.distributed as dist

from geosynth.artifacts import (
    Embeddings,
    Provenance,
    check_replaceable,
    combine_fingerprints,
    load_embeddings,
    output_path,
)
from geosynth.artifacts.jsontext import json_text
from geosynth.data import ImageDataset, load_dataset
from geosynth.data.multiband import BandInput
from geosynth.data.shards import is_shard_dir, list_shards
from geosynth.distributed import is_main_process, patient_group, rank_and_size, wait_for_all
from geosynth.errors import GeosynthError
from geosynth.features.base import FeatureExtractor
from geosynth.features.embed import embed_dataset_parts
from geosynth.features.shard_embed import embed_shards
from geosynth.features.spec import create_extractor, model_fingerprint
from geosynth.progress import Track, no_track
from geosynth.runtime import pick_device, resolve_precision


def cache_dir() -> Path:
    return Path(os.environ.get("GEOSYNTH_CACHE", Path.home() / ".cache" / "geosynth"))


def shards_fingerprint(root: Path) -> str:
    """Names, sizes and modification times of the shards: content hashing LAION's hundreds of
    gigabytes just to find a cache entry would cost more than embedding."""
    h = hashlib.blake2b(digest_size=16)
    for s in list_shards(root):
        st = s.stat()
        h.update(f"{s.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def numbers_settings(features: str, device: str | None, precision: str) -> dict[str, str]:
    """The extractor settings that change the embeddings' values (the cache key's second half)."""
    dev = pick_device(device)
    prec = resolve_precision(precision, dev)
    return {
        "features": features,
        "weights": model_fingerprint(features),
        "device": dev.type,
        "precision": prec,
    }


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[-60:]


def resolve_embeddings(
    source: str,
    *,
    features: str,
    split: str | None = None,
    classes: list[str] | None = None,
    shots: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    batch_size: int = 64,
    device: str | None = None,
    precision: str = "auto",
    use_cache: bool = True,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
    dataset: ImageDataset | None = None,
    bands: BandInput | None = None,
    distributed: bool = False,
    part_size: int = 4096,
) -> Embeddings:
    """Embeddings for ``source`` (file, dataset or shard directory). ``dataset``: ``source``
    already loaded with these options, so it is not listed and fingerprinted again. ``bands``:
    embed those bands of native data, standardised as given (part of the cache key).

    ``distributed``: every torch.distributed rank calls this and a missing cache entry is
    embedded by all of them, each its block of shards or of ``part_size``-row parts
    (:func:`~geosynth.features.embed.embed_to_file`), equal to one process's entry; the cache
    must be on a file system the ranks share."""
    path = Path(source)
    if path.suffix == ".safetensors" or path.is_file():
        return load_embeddings(path)
    group = patient_group() if distributed and rank_and_size()[1] > 1 else None
    ds = None
    if is_shard_dir(path):
        key = f"shards-{shards_fingerprint(path)}-{limit}-{seed}"
    else:
        ds = dataset or load_dataset(source, split=split, classes=classes, shots=shots, seed=seed)
        key = f"data-{ds.fingerprint()}"
        if ds.radiometry is not None:  # native data seen through a spec: its pixels differ
            spec = hashlib.blake2b(ds.radiometry.to_json().encode(), digest_size=8)
            key += f"-radiometry-{spec.hexdigest()}"

    def build(out: Path) -> None:
        extractor = create_extractor(features, device=device, precision=precision, bands=bands)
        prov = Provenance.start("embed", seeds={"seed": seed}, source=source)
        embed_to_file(
            extractor,
            source,
            out,
            provenance=prov,
            split=split,
            classes=classes,
            shots=shots,
            seed=seed,
            limit=limit,
            batch_size=batch_size,
            track=track,
            log=log,
            dataset=ds,
            distributed=group is not None,
            part_size=part_size,
        )

    if bands is not None:
        digest = hashlib.blake2b(json_text(bands.to_dict()).encode(), digest_size=8)
        key += f"-bands-{digest.hexdigest()}"
    full_key = combine_fingerprints({"data": key, **numbers_settings(features, device, precision)})
    target = cache_dir() / "embeddings" / f"{full_key}-{_slug(features)}.safetensors"
    fresh = not (use_cache and target.exists())
    if group is not None:
        # Every rank must take the same branch (embedding is collective): rank 0's view decides.
        decision = [fresh]
        dist.broadcast_object_list(decision, src=0, group=group)
        fresh = bool(decision[0])
    if fresh:
        log(f"embedding {source} with {features}")
        build(target)
        wait_for_all(group)  # rank 0 has joined the parts into the entry
    else:
        log(f"using cached embeddings of {source}: {target}")
    if is_main_process():
        # A run killed after writing the entry but before removing its work folder left it.
        shutil.rmtree(target.with_name(target.name + ".parts"), ignore_errors=True)
    return load_embeddings(target)


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
    part_size: int = 4096,
    distributed: bool = False,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
    dataset: ImageDataset | None = None,
) -> dict[str, Any]:
    """Embed a shard directory (streamed, resumable, ``limit``) or a dataset (``split``,
    ``classes``, ``shots``; or ``dataset`` when the caller has loaded it; resumable every
    ``part_size`` rows) into ``out``; returns what was embedded. ``distributed``: split the work
    over the torch.distributed ranks, which all call this; rank 0 writes ``out``."""
    from geosynth.data import load_dataset
    from geosynth.data.shards import is_shard_dir

    out = output_path(out)
    check_replaceable(out, "file")
    if is_shard_dir(Path(source)):
        return embed_shards(
            extractor,
            Path(source),
            out,
            provenance=provenance,
            batch_size=batch_size,
            num_workers=num_workers,
            limit=limit,
            seed=seed,
            distributed=distributed,
            track=track,
            log=log,
        )
    if limit is not None:
        raise GeosynthError(
            f"limit={limit}: applies to shard directories only; use `shots` for datasets"
        )
    ds = dataset or load_dataset(source, split=split, classes=classes, shots=shots, seed=seed)
    provenance.inputs[f"dataset:{source}"] = ds.fingerprint()
    return embed_dataset_parts(
        extractor,
        ds,
        out,
        provenance=provenance,
        batch_size=batch_size,
        num_workers=num_workers,
        part_size=part_size,
        distributed=distributed,
        track=track,
        log=log,
    )
