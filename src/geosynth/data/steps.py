"""The ``geosynth data`` steps as library calls: a dataset's report, and its export."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geosynth.data.dataset import ImageDataset
from geosynth.progress import Track, no_track


def dataset_info(
    ds: ImageDataset, track: Track = no_track, *, by_sample: bool = False
) -> dict[str, Any]:
    """What ``geosynth data info`` reports: classes with counts, sizes and mean colour of the
    model's 3-channel input, per-band statistics in the files' own units, and which metadata
    fields (centre lon/lat, GSD, cloud cover, date, sidecar columns) the samples carry, with
    their ranges (``by_sample``: every sample's values too). Reads every image, so an
    unreadable file is found here rather than in a later step. A segmentation dataset also
    gets ``masks`` (:func:`~geosynth.data.stats.mask_stats`: per-class pixel fractions, the
    ignored share, mask sizes), read first, so a bad mask stops it early."""
    from geosynth.data.dataset_metadata import metadata_summary
    from geosynth.data.pairdata import PairedDataset
    from geosynth.data.stats import band_stats, class_color_stats, mask_stats

    masks = mask_stats(ds, track) if isinstance(ds, PairedDataset) else None
    bands = band_stats(ds, track)
    rows = class_color_stats(ds, track)
    metadata = metadata_summary(ds, by_sample=by_sample, track=track)
    return {
        "source": ds.source,
        "kind": ds.kind,
        "selection": ds.selection,
        "images": len(ds),
        "fingerprint": ds.fingerprint(),
        "classes": rows,
        "native": bands,
        "radiometry": None if ds.radiometry is None else ds.radiometry.to_dict(),
        "metadata": metadata,
        **({"masks": masks} if masks is not None else {}),
    }


def export_subset(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    split: str | None = None,
    classes: Sequence[str] | None = None,
    shots: int | None = None,
    seed: int = 0,
    label_map: dict[str, str] | str | Path | None = None,
    track: Track = no_track,
) -> ImageDataset:
    """What ``geosynth data export`` does: open ``dataset``, take its ``classes`` / ``shots``
    subset (under ``seed``) and write it to ``out`` as a geosynth imagefolder, with provenance;
    image/mask pairs as a pair dataset (images, masks and legend). No radiometry is involved:
    native values are copied as they are. Returns the subset."""
    from geosynth.artifacts import Provenance
    from geosynth.data.load import load_dataset
    from geosynth.data.pairdata import PairedDataset
    from geosynth.data.writer import export_dataset
    from geosynth.limits import check_numbers

    check_numbers(shots=shots, seed=seed)
    ds = load_dataset(
        str(dataset), split=split, classes=classes, shots=shots, seed=seed, label_map=label_map
    )
    prov = Provenance.start("data export", seeds={"seed": seed}, selection=ds.selection)
    prov.inputs[f"dataset:{dataset}"] = ds.fingerprint()
    progress = track(range(len(ds)), len(ds), "writing images")
    if isinstance(ds, PairedDataset):
        from geosynth.data.pairtile import export_pairs

        export_pairs(ds, out, prov, progress)  # images and their masks, with the legend
    else:
        export_dataset(ds, out, prov, progress)
    return ds
