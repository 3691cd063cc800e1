"""The ``geosynth data`` steps as library calls: a dataset's report, and its export."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geosynth.data.dataset import ImageDataset
from geosynth.progress import Track, no_track


def dataset_info(ds: ImageDataset, track: Track = no_track) -> dict[str, Any]:
    """What ``geosynth data info`` reports: classes with counts, sizes and mean colour of the
    model's 3-channel input, and per-band statistics in the files' own units. Reads every image,
    so an unreadable file is found here rather than in a later step."""
    from geosynth.data.stats import band_stats, class_color_stats

    bands = band_stats(ds, track)
    rows = class_color_stats(ds, track)
    return {
        "source": ds.source,
        "kind": ds.kind,
        "selection": ds.selection,
        "images": len(ds),
        "fingerprint": ds.fingerprint(),
        "classes": rows,
        "native": bands,
        "radiometry": None if ds.radiometry is None else ds.radiometry.to_dict(),
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
    subset (under ``seed``) and write it to ``out`` as a geosynth imagefolder, with provenance.
    No radiometry is involved: native values are copied as they are. Returns the subset."""
    from geosynth.artifacts import Provenance
    from geosynth.data.load import load_dataset
    from geosynth.data.writer import export_dataset
    from geosynth.limits import check_numbers

    check_numbers(shots=shots, seed=seed)
    ds = load_dataset(
        str(dataset), split=split, classes=classes, shots=shots, seed=seed, label_map=label_map
    )
    prov = Provenance.start("data export", seeds={"seed": seed}, selection=ds.selection)
    prov.inputs[f"dataset:{dataset}"] = ds.fingerprint()
    export_dataset(ds, out, prov, track(range(len(ds)), len(ds), "writing images"))
    return ds
