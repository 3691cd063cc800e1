"""WebDataset tar shards as img2dataset writes LAION-400M: ``00000.tar`` holding ``<key>.jpg``,
``<key>.txt`` (caption) and ``<key>.json`` (metadata) for each sample.

Shards are streamed member by member (never extracted). A sample whose image does not decode, and
the rest of a truncated shard, are skipped and counted rather than failing a LAION-scale job.
"""

from __future__ import annotations

import hashlib
import heapq
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "tif", "tiff")


def is_shard_dir(path: Path) -> bool:
    """A directory holding ``*.tar`` shards and no class sub-folders."""
    return path.is_dir() and any(path.glob("*.tar"))


def list_shards(root: Path) -> list[Path]:
    return sorted(root.glob("*.tar"))


@dataclass
class ShardStats:
    """What streaming a shard found."""

    samples: int = 0
    corrupt: int = 0
    truncated: bool = False
    errors: list[str] = field(default_factory=list)


def _split(name: str) -> tuple[str, str]:
    base = name.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    prefix = name[: len(name) - len(base)]
    return prefix + key, ext.lower()


def shard_image_keys(shard: Path, stats: ShardStats | None = None) -> list[str]:
    """Keys of the samples with an image, from tar headers only (no image bytes are read)."""
    keys = []
    try:
        with tarfile.open(shard, "r:") as tar:
            for member in tar:
                key, ext = _split(member.name)
                if member.isfile() and ext in IMAGE_EXTS:
                    keys.append(key)
    except (tarfile.TarError, OSError) as exc:
        if stats is not None:
            stats.truncated = True
            stats.errors.append(f"{shard.name}: {exc}")
    return keys


def iter_shard_images(
    shard: Path, stats: ShardStats, keep: set[str] | None = None
) -> Iterator[tuple[str, Image.Image]]:
    """Decoded RGB images of one shard in tar order (``keep`` restricts to some keys)."""
    try:
        with tarfile.open(shard, "r:") as tar:
            for member in tar:
                key, ext = _split(member.name)
                if not member.isfile() or ext not in IMAGE_EXTS:
                    continue
                if keep is not None and key not in keep:
                    continue
                try:
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    opened = Image.open(io.BytesIO(data))
                    opened.load()
                    img = opened.convert("RGB")
                except Exception as exc:
                    stats.corrupt += 1
                    if len(stats.errors) < 10:
                        stats.errors.append(f"{shard.name}:{key}: {exc}")
                    continue
                stats.samples += 1
                yield key, img
    except (tarfile.TarError, OSError) as exc:
        stats.truncated = True
        stats.errors.append(f"{shard.name}: {exc}")


def priority(seed: int, shard: str, key: str) -> int:
    """A deterministic pseudo-random rank of a sample, independent of listing order."""
    h = hashlib.blake2b(f"{seed}:{shard}:{key}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def subsample(shards: list[Path], limit: int, seed: int) -> dict[str, set[str]]:
    """The ``limit`` samples of lowest priority across all shards, as {shard name: keys}: the same
    subset for the same seed, however the job is split or resumed."""
    best: list[tuple[int, str, str]] = []  # max-heap via negated priority
    for shard in shards:
        for key in shard_image_keys(shard):
            item = (-priority(seed, shard.name, key), shard.name, key)
            if len(best) < limit:
                heapq.heappush(best, item)
            elif item > best[0]:
                heapq.heapreplace(best, item)
    chosen: dict[str, set[str]] = {s.name: set() for s in shards}
    for _, shard_name, key in best:
        chosen[shard_name].add(key)
    return chosen
