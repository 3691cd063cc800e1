"""Hugging Face datasets: ``save_to_disk`` directories and hub dataset ids.

The image column is ``image`` (or ``img``), the label column ``label`` (or ``labels``). Class names
come from the label's ``ClassLabel`` names; a string label column is accepted too (classes sorted).
A ``DatasetDict`` needs ``split`` unless it holds a single split.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from geosynth.data.dataset import ImageDataset, Sample
from geosynth.data.raster import Raster, read_raster
from geosynth.errors import GeosynthError

IMAGE_COLUMNS = ("image", "img")
LABEL_COLUMNS = ("label", "labels")


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
    return from_hf(_pick_split(obj, split, str(root)), source=str(root), split=split)


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
    return from_hf(_pick_split(obj, split, dataset_id), source=dataset_id, split=split)


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
