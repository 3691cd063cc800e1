"""Turn a rarity/evaluate argument into embeddings: an embeddings file is read as is; a dataset
or a shard directory is embedded once and cached under ``$GEOSYNTH_CACHE`` (default
``~/.cache/geosynth``), keyed by everything that changes the numbers: the data's content
fingerprint (and the shard subsample), the feature model spec, a fingerprint of a local model's
weight files, the device type and the precision (see docs/reliability.md)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist

from geosynth.artifacts import Embeddings, Provenance, combine_fingerprints, load_embeddings
from geosynth.data import ImageDataset, load_dataset
from geosynth.data.multiband import BandInput
from geosynth.data.shards import is_shard_dir, list_shards
from geosynth.distributed import is_main_process, patient_group, rank_and_size, wait_for_all
from geosynth.features.base import create_extractor
from geosynth.features.embed import embed_to_file
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


#: Spec prefixes in front of a model path (see geosynth.features.base).
_PATH_PREFIXES = ("open_clip:local-dir:", "timm:local-dir:", "inception:", "hf:", "clf:")


def model_fingerprint(spec: str) -> str:
    """A fingerprint of the weights a feature spec loads when they are local files: every file's
    relative path, size, modification time and a hash of its first MiB (hashing gigabytes of
    weights on every lookup would cost more than it saves; replacing a checkpoint changes at
    least its mtime). Hub ids, which name immutable published weights here, give "hub"."""
    ref = spec
    for prefix in _PATH_PREFIXES:
        if spec.startswith(prefix):
            ref = spec.removeprefix(prefix)
            break
    path = Path(ref)
    if not path.exists():
        return "hub"
    files = [path] if path.is_file() else sorted(q for q in path.rglob("*") if q.is_file())
    h = hashlib.blake2b(digest_size=16)
    for f in files:
        st = f.stat()
        with f.open("rb") as fh:
            head = hashlib.blake2b(fh.read(1 << 20), digest_size=16).hexdigest()
        rel = f.name if f == path else f.relative_to(path).as_posix()
        h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}:{head};".encode())
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
        digest = hashlib.blake2b(json.dumps(bands.to_dict()).encode(), digest_size=8)
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
