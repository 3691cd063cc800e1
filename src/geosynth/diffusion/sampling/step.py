"""``geosynth generate`` as one library call: resolve and load the job (:mod:`.pipeline`), then run
it, from class prompts or, with ``maps``, from a folder of semantic maps."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from geosynth.artifacts import output_path
from geosynth.diffusion.loras import PathLike
from geosynth.diffusion.sampling.mapgen import load_map_generation
from geosynth.diffusion.sampling.pipeline import load_generation
from geosynth.diffusion.sampling.spec import parse_shard
from geosynth.diffusion.sampling.store import check_output
from geosynth.errors import GeosynthError
from geosynth.limits import LIMITS, check_numbers
from geosynth.progress import Track, no_track


def generate(
    out: PathLike,
    *,
    maps: PathLike | None = None,
    shard: str | tuple[int, int] | None = None,
    batch_size: int = 8,
    resume: bool = False,
    fuse_loras: bool | None = None,
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
    warn: Callable[[str], None] | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Generate a synthetic dataset into ``out`` and return what was done.

    ``settings`` are :func:`~geosynth.diffusion.sampling.load_generation`'s parameters (model,
    classes, per_class, noise, channel_means, loras, lora_dir, lora_weights, controlnet, ...).
    With ``maps`` (a folder of semantic maps for a ``finetune --condition`` model), the job is
    :func:`~geosynth.diffusion.sampling.load_map_generation`'s instead and takes the settings
    it knows (``map_legend``, ``per_map``, ...), refusing the class-generation ones given.
    ``shard``: ``"I/N"`` or ``(I, N)``, this process's share of the jobs; ``fuse_loras``: None
    is on. ``warn`` receives the loader's warnings (default: ``log``)."""
    for_classes = set(inspect.signature(load_generation).parameters) - {"log"}
    for_maps = set(inspect.signature(load_map_generation).parameters) - {"maps", "fuse_loras"}
    unknown = sorted(set(settings) - for_classes - for_maps)
    if unknown:
        raise TypeError(f"generate() got unexpected settings: {', '.join(unknown)}")
    check_numbers(batch_size=batch_size, **{k: v for k, v in settings.items() if k in LIMITS})
    # the output is checked before any model loads (loading takes seconds)
    target = output_path(out)
    if maps is not None:
        given = [k for k in ("metadata", "metadata_from", "metadata_shuffle") if settings.get(k)]
        if given:
            raise GeosynthError(
                f"`{given[0]}`: not used with `maps` (metadata is for class prompts)"
            )
    check_output(target, resume)
    if maps is not None:
        # the class-generation settings given are refused there, by name
        mapgen = load_map_generation(
            maps,
            fuse_loras=fuse_loras,
            **{k: v for k, v in settings.items() if k in for_maps},
        )
        return mapgen.run(
            out, batch_size=batch_size, shard=shard, resume=resume, track=track, log=log
        )
    gen = load_generation(
        **{k: v for k, v in settings.items() if k in for_classes}, log=warn or log
    )
    return gen.run(
        out,
        shard=parse_shard(shard) if not isinstance(shard, tuple) else shard,
        batch_size=batch_size,
        resume=resume,
        track=track,
        log=log,
        fuse_loras=fuse_loras,
    )
