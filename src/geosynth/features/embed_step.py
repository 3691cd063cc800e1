"""The ``embed`` step: a dataset or a shard directory to an embeddings file, in one call.

It starts the process group under torchrun, picks this process's device, creates the extractor
(rank 0 first, so the model cache is filled once), records provenance and dispatches to
:func:`geosynth.features.resolve.embed_to_file`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from geosynth.artifacts import Provenance
from geosynth.progress import Track, no_track


def embed(
    dataset: str,
    out: Path,
    *,
    features: str,
    split: str | None = None,
    classes: list[str] | None = None,
    shots: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    bands: str | None = None,
    band_stats: str | None = None,
    batch_size: int = 64,
    workers: int = 0,
    part_size: int = 4096,
    device: str | None = None,
    precision: str = "auto",
    track: Track = no_track,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any] | None:
    """Embed every image of ``dataset`` (or of a webdataset shard directory) with the feature
    model ``features`` (e.g. ``dinov2-base``) into ``out``; ``bands`` embeds native multiband data
    standardised by the per-band statistics of ``band_stats`` (default: the same selection of
    ``dataset``). Under torchrun every rank calls this; rank 0 writes ``out`` and gets the
    report, the other ranks get ``None``."""
    from geosynth.data import check_source
    from geosynth.distributed import (
        init_from_env,
        is_main_process,
        local_device,
        main_process_first,
    )
    from geosynth.errors import GeosynthError
    from geosynth.features.resolve import embed_to_file
    from geosynth.features.spec import create_extractor
    from geosynth.limits import check_numbers
    from geosynth.runtime import pick_device

    check_numbers(
        shots=shots,
        seed=seed,
        limit=limit,
        batch_size=batch_size,
        workers=workers,
        part_size=part_size,
    )
    check_source(dataset, "dataset")  # inputs before the model
    check_source(band_stats, "band_stats")
    bi = None
    if bands is not None:
        from geosynth.data import load_dataset
        from geosynth.data.multiband import band_input

        if band_stats is not None:
            ref = load_dataset(band_stats)
        else:
            ref = load_dataset(dataset, split=split, classes=classes, shots=shots, seed=seed)
        bi = band_input(ref, bands, what="bands", track=track)
    elif band_stats is not None:
        raise GeosynthError("`band_stats`: only used with `bands`")
    dev = local_device(pick_device(device))
    distributed = init_from_env(dev)
    with main_process_first():  # rank 0 fills the model cache first, the others read it
        extractor = create_extractor(features, device=str(dev), precision=precision, bands=bi)
    prov = Provenance.start("embed", seeds={"seed": seed}, features=features)
    report = embed_to_file(
        extractor,
        dataset,
        out,
        provenance=prov,
        split=split,
        classes=classes,
        shots=shots,
        seed=seed,
        limit=limit,
        batch_size=batch_size,
        num_workers=workers,
        part_size=part_size,
        distributed=distributed,
        track=track,
        log=log,
    )
    if not is_main_process():
        return None
    return {"out": str(out), "feature_model": features, "feature_dim": extractor.dim, **report}
