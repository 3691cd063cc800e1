"""One entry point that turns what a user typed into an :class:`ImageDataset`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from geosynth.data.dataset import ImageDataset
from geosynth.data.folder import read_image_folder
from geosynth.data.hf import is_saved_dataset, read_hub_dataset, read_saved_dataset
from geosynth.data.legend import Legend, find_legend_or_none, resolve_legend
from geosynth.data.pairdata import PairedDataset
from geosynth.data.radiometry import Radiometry
from geosynth.data.radiometry_defaults import default_radiometry, radiometry_from
from geosynth.data.radiometry_sources import RADIOMETRY_FILE, bind, recorded_radiometry
from geosynth.data.segmentation import is_pair_table, open_segmentation, read_pair_table
from geosynth.data.sentinel1 import read_sentinel1, sentinel1_layout
from geosynth.data.torchgeo import eurosat_image_root, read_torchgeo_eurosat
from geosynth.errors import GeosynthError

# owner/name or a bare canonical name, as the hub spells dataset ids.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def check_source(source: str | os.PathLike[str] | None, what: str) -> None:
    """Refuse, at once, a dataset, shard directory or embeddings file that cannot exist: a path
    that is not there and cannot be a hub dataset id (a ``.safetensors`` file never is). Steps
    call it for every input before they load a model, so a typo costs no model load."""
    if source is None or not isinstance(source, str | os.PathLike):
        return
    text = str(source)
    path = Path(text).expanduser()
    if path.exists():
        return
    if path.suffix == ".safetensors":
        raise GeosynthError(f"{what}={text!r}: no such file (expected an embeddings file)")
    if not _HUB_ID.match(text) or text.startswith("."):
        raise GeosynthError(
            f"{what}={text!r}: no such file or directory (expected a dataset folder, a saved "
            "Hugging Face dataset, a shard directory or a hub dataset id)"
        )


def open_dataset(
    spec: str | Path,
    split: str | None = None,
    label_map: dict[str, str] | str | Path | None = None,
) -> ImageDataset:
    """Open an image folder, a saved HF dataset, a geosynth imagefolder or a hub dataset id.

    For a folder holding split sub-folders (``root/train/<class>/...``), ``split`` picks one;
    torchgeo's EuroSAT layout (:mod:`geosynth.data.torchgeo`) is read with its split files;
    Sentinel-1 layouts (BigEarthNet-S1, reBEN, SSL4EO-S12: :mod:`geosynth.data.sentinel1`) as
    VV/VH samples, their class chosen by ``label_map`` or the documented default.
    """
    path = Path(spec)
    if path.exists():
        if path.is_file() and is_pair_table(path):  # a CSV / JSON-lines table of image/mask pairs
            return _with_found_legend(read_pair_table(path))
        if not path.is_dir():
            raise GeosynthError(
                f"{path}: is a file (expected an image folder, a saved Hugging Face dataset or "
                "a .csv / .jsonl table of image/mask pairs)"
            )
        if is_saved_dataset(path):
            return read_saved_dataset(path, split)
        if eurosat_image_root(path) is not None:  # torchgeo's EuroSAT layout + split files
            return read_torchgeo_eurosat(path, split)
        layout = sentinel1_layout(path)
        if layout is not None:
            return read_sentinel1(path, layout, split, label_map)
        if label_map is not None:
            raise GeosynthError(
                f"label_map: {path} is not a BigEarthNet layout; a label map applies to "
                "BigEarthNet-S1 / reBEN patches only"
            )
        if split is not None:
            if not (path / split).is_dir():
                splits = sorted(d.name for d in path.iterdir() if d.is_dir())
                raise GeosynthError(
                    f"split={split!r}: {path / split} does not exist (found: {', '.join(splits)})"
                )
            path = path / split
            if is_saved_dataset(path):
                return read_saved_dataset(path, None)
        pairs = open_segmentation(path)  # images/ + masks/ folders, or a mask column
        if pairs is not None:
            return _with_found_legend(pairs)
        return read_image_folder(path)
    text = str(spec)
    if _HUB_ID.match(text) and not text.startswith("."):
        return read_hub_dataset(text, split)
    raise GeosynthError(
        f"{spec}: no such directory (expected an image folder, a saved Hugging Face dataset "
        "or a hub dataset id)"
    )


def load_dataset(
    spec: str | Path,
    *,
    split: str | None = None,
    classes: Sequence[str] | None = None,
    shots: int | None = None,
    seed: int = 0,
    radiometry: Radiometry | dict[str, Any] | str | None = None,
    log: Callable[[str], None] | None = None,
    label_map: dict[str, str] | str | Path | None = None,
    metadata_table: str | Path | None = None,
    map_legend: Legend | str | Path | None = None,
    ignore: Sequence[str | int] | None = None,
) -> ImageDataset:
    """Open a dataset and apply the options every subcommand shares, in order: a sidecar
    ``metadata_table`` (checked against every sample, :mod:`geosynth.data.dataset_metadata`),
    class subset, then stratified K-shot sampling; every remaining class must hold an image.

    A segmentation dataset (image/mask pairs) reads its masks through ``map_legend`` (a legend
    file or :class:`~geosynth.data.legend.Legend`; default: the dataset's ``legend.json`` or
    ``classes.json``) with the ``ignore`` entries added (pixel values, ``#RRGGBB`` colours or
    class names that mark unlabelled pixels).

    ``radiometry`` (a spec, its dict or JSON, or ``"auto"`` for the default of the detected kind)
    is then resolved on the selected images (percentile ranges are fitted on them) and attached;
    ``log`` receives one line saying which spec is used when it is not 8-bit RGB.
    """
    ds = open_dataset(spec, split, label_map)
    if metadata_table is not None:
        from geosynth.data.dataset_metadata import attach_metadata_table

        ds = attach_metadata_table(ds, metadata_table, split)
    if map_legend is not None or ignore:
        if not isinstance(ds, PairedDataset):
            what = "map_legend" if map_legend is not None else "ignore"
            raise GeosynthError(
                f"`{what}`: {ds.source} holds no masks (expected images/ + masks/ folders, a "
                "table of image/mask pairs or a dataset with a mask column)"
            )
        ds = ds.with_legend(
            resolve_legend(map_legend if map_legend is not None else ds.legend, ignore, None)
        )
    if classes:
        ds = ds.select_classes(classes)
    ds.check_nonempty()
    if shots is not None:
        ds = ds.few_shot(shots, seed)
    if radiometry is not None:
        ds = apply_radiometry(ds, radiometry, log)
    return ds


def _with_found_legend(ds: PairedDataset) -> PairedDataset:
    """The pairs with the legend found beside them (legend.json, or the dataset's own palette
    file such as classes.json), if any."""
    root = Path(ds.source)
    return ds.with_legend(find_legend_or_none(root if root.is_dir() else root.parent))


def apply_radiometry(
    ds: ImageDataset,
    radiometry: Radiometry | dict[str, Any] | str,
    log: Callable[[str], None] | None = None,
) -> ImageDataset:
    """Resolve ``radiometry`` on ``ds`` and attach it; ``"auto"`` picks
    :func:`~geosynth.data.radiometry.default_radiometry` from the first image (None, i.e. the
    unchanged 8-bit pipeline, for 8-bit RGB/greyscale data)."""
    if radiometry == "auto":
        recorded = _recorded(ds)
        if recorded is not None:  # a generated dataset: the spec it was written through
            resolved = bind(recorded, ds)
            if log is not None:
                log(
                    f"radiometry (recorded in {ds.source}/{RADIOMETRY_FILE}): {resolved.describe()}"
                )
            return ds.with_radiometry(resolved)
        first = ds.raster(0)
        spec = default_radiometry(first)
        if spec is None:
            return ds
        resolved = spec.resolve(ds)
        if log is not None:
            log(
                f"radiometry (default for {first.dtype} {first.count}-band data): "
                f"{resolved.describe()}; give --radiometry to choose (docs/formats.md)"
            )
        return ds.with_radiometry(resolved)
    spec = radiometry_from(radiometry)
    assert spec is not None
    resolved = bind(spec, ds)
    if log is not None and resolved.ranges != spec.ranges:
        log(f"radiometry: {resolved.describe()} (ranges fitted on {len(ds)} images)")
    return ds.with_radiometry(resolved)


def _recorded(ds: ImageDataset) -> Radiometry | None:
    """The spec a generated image folder records at its root (None for other datasets)."""
    return recorded_radiometry(ds.source) if ds.kind == "imagefolder" else None
