"""Hugging Face datasets: ``save_to_disk`` directories and hub dataset ids.

The image column is ``image`` (or ``img``), the label column ``label`` (or ``labels``). Class names
come from the label's ``ClassLabel`` names; a string label column is accepted too (classes sorted).
A ``DatasetDict`` needs ``split`` unless it holds a single split.

A dataset with an image-typed mask column (``mask``, ``label``, ``annotation``, ``segmentation``,
``semantic_mask``) is a segmentation dataset (:func:`from_hf_segmentation`): each row an image and
its mask, read through a legend (``legend.json`` beside a saved dataset, or ``map_legend``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from geosynth.data.dataset import ImageDataset, Sample
from geosynth.data.pairdata import PairedDataset
from geosynth.data.raster import Raster, read_raster
from geosynth.errors import GeosynthError

IMAGE_COLUMNS = ("image", "img")
LABEL_COLUMNS = ("label", "labels")
MASK_COLUMNS = ("mask", "label", "annotation", "segmentation", "semantic_mask")
PAIR_IMAGE_COLUMNS = ("image", "img", "pixel_values")


def is_saved_dataset(root: Path) -> bool:
    """True for the directory layout ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` write."""
    return (root / "dataset_dict.json").is_file() or (
        (root / "state.json").is_file() and (root / "dataset_info.json").is_file()
    )


def read_saved_dataset(root: Path, split: str | None) -> ImageDataset:
    """Open a ``save_to_disk`` directory."""
    import datasets

    try:
        obj = datasets.load_from_disk(str(root))
    except Exception as exc:
        raise GeosynthError(f"{root}: cannot open saved Hugging Face dataset ({exc})") from None
    ds = from_hf_any(_pick_split(obj, split, str(root)), source=str(root), split=split)
    if isinstance(ds, PairedDataset):
        from geosynth.data.legend import find_legend_or_none

        ds = ds.with_legend(find_legend_or_none(root))
    return ds


def read_hub_dataset(dataset_id: str, split: str | None) -> ImageDataset:
    """Load a dataset from the hub (or the local ``datasets`` cache) by id."""
    import datasets

    try:
        obj = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:
        raise GeosynthError(
            f"dataset '{dataset_id}': not a local path, and loading it as a hub dataset failed "
            f"({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    return from_hf_any(_pick_split(obj, split, dataset_id), source=dataset_id, split=split)


def _pick_split(obj: Any, split: str | None, source: str) -> Any:
    import datasets

    if not isinstance(obj, datasets.DatasetDict):
        return obj
    splits = list(obj.keys())
    if split is None:
        if len(splits) == 1:
            return obj[splits[0]]
        raise GeosynthError(f"{source}: holds splits {', '.join(splits)}; choose one with `split`")
    if split not in obj:
        raise GeosynthError(f"split={split!r}: not in {source} (splits: {', '.join(splits)})")
    return obj[split]


def _column(ds: Any, candidates: tuple[str, ...], what: str, source: str) -> str:
    for c in candidates:
        if c in ds.column_names:
            return c
    raise GeosynthError(
        f"{source}: no {what} column (expected one of {', '.join(candidates)}; "
        f"columns: {', '.join(ds.column_names)})"
    )


def from_hf(ds: Any, *, source: str, split: str | None = None) -> ImageDataset:
    """Wrap a ``datasets.Dataset`` with an image and a label column."""
    import datasets

    image_col = _column(ds, IMAGE_COLUMNS, "image", source)
    label_col = _column(ds, LABEL_COLUMNS, "label", source)
    feature = ds.features[label_col]
    raw_labels = ds[label_col]
    if isinstance(feature, datasets.ClassLabel):
        class_names = list(feature.names)
        labels = [int(v) for v in raw_labels]
    elif getattr(feature, "dtype", None) == "string":
        class_names = sorted(set(raw_labels))
        index = {n: i for i, n in enumerate(class_names)}
        labels = [index[v] for v in raw_labels]
    else:
        raise GeosynthError(
            f"{source}: column '{label_col}' must be a ClassLabel or a string column, got {feature}"
        )
    # Decode images only on access; keep the raw column so broken bytes fail with a named row.
    images = ds.select_columns([image_col]).cast_column(image_col, datasets.Image(decode=False))
    prefix = f"{split}/" if split else ""
    samples = [Sample(f"{prefix}{i:08d}", lab, i) for i, lab in enumerate(labels)]
    base_fp = getattr(ds, "_fingerprint", "") or source

    def decode(sample: Sample) -> Image.Image:
        cell = images[int(sample.ref)][image_col]
        if cell.get("bytes") is not None:
            return Image.open(io.BytesIO(cell["bytes"]))
        return Image.open(cell["path"])

    def decode_raster(sample: Sample) -> Raster:
        cell = images[int(sample.ref)][image_col]
        where = f"{source}[{sample.key}]"
        if cell.get("bytes") is not None:
            return read_raster(cell["bytes"], name=where)
        return read_raster(cell["path"], name=where)

    return ImageDataset(
        source=source,
        kind="hf",
        class_names=class_names,
        samples=samples,
        decoder=decode,
        digest=lambda s: f"{base_fp}:{s.ref}",
        raster_decoder=decode_raster,
    )


def _mask_column(ds: Any) -> str | None:
    import datasets

    for c in MASK_COLUMNS:
        if c in ds.column_names and isinstance(ds.features[c], datasets.Image):
            return c
    return None


def from_hf_any(ds: Any, *, source: str, split: str | None = None) -> ImageDataset:
    """:func:`from_hf_segmentation` when ``ds`` has an image-typed mask column, else
    :func:`from_hf`."""
    if _mask_column(ds) is not None:
        return from_hf_segmentation(ds, source=source, split=split)
    return from_hf(ds, source=source, split=split)


def from_hf_segmentation(ds: Any, *, source: str, split: str | None = None) -> PairedDataset:
    """Wrap a ``datasets.Dataset`` with an image and a mask column; a ``ClassLabel`` or string
    column (``label``, ``labels``, ``class_name``) that is not the mask groups the rows, else
    they form one group named after ``source``."""
    import datasets

    mask_col = _mask_column(ds)
    if mask_col is None:
        raise GeosynthError(f"{source}: no image-typed mask column ({', '.join(MASK_COLUMNS)})")
    image_col = _column(ds, PAIR_IMAGE_COLUMNS, "image", source)
    group_col = next(
        (
            c
            for c in (*LABEL_COLUMNS, "class_name")
            if c in ds.column_names and c != mask_col
            and (isinstance(ds.features[c], datasets.ClassLabel)
                 or getattr(ds.features[c], "dtype", None) == "string")
        ),
        None,
    )  # fmt: skip
    if group_col is None:
        groups = [Path(source).name or source]
        labels = [0] * len(ds)
    elif isinstance(ds.features[group_col], datasets.ClassLabel):
        groups = list(ds.features[group_col].names)
        labels = [int(v) for v in ds[group_col]]
    else:
        raw = ds[group_col]
        groups = sorted(set(raw))
        labels = [groups.index(v) for v in raw]
    cells = ds.select_columns([image_col, mask_col])
    cells = cells.cast_column(image_col, datasets.Image(decode=False))
    cells = cells.cast_column(mask_col, datasets.Image(decode=False))
    prefix = f"{split}/" if split else ""
    samples = [Sample(f"{prefix}{i:08d}", lab, i) for i, lab in enumerate(labels)]
    base_fp = getattr(ds, "_fingerprint", "") or source

    def cell_bytes(sample: Sample, column: str) -> bytes:
        cell = cells[int(sample.ref)][column]
        if cell.get("bytes") is not None:
            return bytes(cell["bytes"])
        return Path(cell["path"]).read_bytes()

    def decode(sample: Sample) -> Image.Image:
        return Image.open(io.BytesIO(cell_bytes(sample, image_col)))

    def decode_raster(sample: Sample) -> Raster:
        return read_raster(cell_bytes(sample, image_col), name=f"{source}[{sample.key}]")

    return PairedDataset(
        source=source,
        kind="hf",
        class_names=groups,
        samples=samples,
        decoder=decode,
        digest=lambda s: f"{base_fp}:{s.ref}",
        raster_decoder=decode_raster,
        mask_loader=lambda s: cell_bytes(s, mask_col),
    )
