"""A Hugging Face dataset card (``README.md``) for the image folders geosynth writes.

``datasets`` infers the columns of an image folder from ``metadata.jsonl``, so our integer
``label`` would come back as a plain integer. The card's YAML header declares the features
instead (``configs[0].features``): ``label`` as a ``ClassLabel`` with the class names in label
order, and every scalar column of the metadata with its type. ``datasets.load_dataset(DIR)``
reads the card; nested columns (a row's LoRA mixture, its control source) stay in
``metadata.jsonl`` only, where geosynth and ``json`` read them. torchvision's ``ImageFolder`` and
timm ignore the card: it is a file at the root, not a class folder.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from geosynth.artifacts import atomic_path

CARD_NAME = "README.md"


def _dtype(values: list[Any]) -> str | None:
    """The ``datasets`` type of a column's non-null values, or None when it is not a scalar
    column (dicts, lists, mixed kinds, or always null), which the card then leaves out."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return None
    if kinds == {bool}:
        return "bool"
    if kinds <= {int}:
        return "int64" if all(-(2**63) <= v < 2**63 for v in values if v is not None) else None
    if kinds <= {int, float}:
        return "float64"
    if kinds == {str}:
        return "string"
    return None


def card_features(
    class_names: Sequence[str],
    rows: Iterable[dict[str, Any]],
    types: Mapping[str, str | None] | None = None,
    images: Sequence[str] = (),
) -> list[Any]:
    """The card's feature list: ``image`` (from ``file_name``), ``label`` as a class label,
    then the other scalar metadata columns in first-seen order. ``types`` fixes a column's
    type (or leaves it out with None) where the values cannot tell, e.g. one that is null in
    this run but a number in others. ``images`` names more image features, each read by
    ``datasets`` from the column ``<name>_file_name`` (a segmentation dataset's ``mask``)."""
    types = dict(types or {})
    types.update({f"{name}_file_name": None for name in images})
    columns: dict[str, list[Any]] = {}
    for n, row in enumerate(rows):
        for key in columns.keys() - row.keys():
            columns[key].append(None)
        for key, value in row.items():
            columns.setdefault(key, [None] * n).append(value)
    features: list[Any] = [{"name": "image", "dtype": "image"}]
    if "label" in columns:
        names = {str(i): str(name) for i, name in enumerate(class_names)}
        features.append({"name": "label", "dtype": {"class_label": {"names": names}}})
    features += [{"name": name, "dtype": "image"} for name in images]
    for key, values in columns.items():
        if key in ("file_name", "label"):
            continue
        dtype = types[key] if key in types else _dtype(values)
        if dtype is not None:
            features.append({"name": key, "dtype": dtype})
    return features


def write_dataset_card(
    root: Path,
    class_names: Sequence[str],
    rows: Sequence[dict[str, Any]],
    title: str,
    types: Mapping[str, str | None] | None = None,
    images: Sequence[str] = (),
    notes: str = "",
) -> Path:
    """Write ``root/README.md`` (atomically): the YAML header ``datasets`` reads, and a short
    text saying what the folder is and how torchvision, timm and ``datasets`` read it."""
    features = card_features(class_names, rows, types, images)
    header = {"configs": [{"config_name": "default", "features": features}]}
    counts = {name: 0 for name in class_names}
    for row in rows:
        if "label" in row:
            counts[class_names[int(row["label"])]] += 1
    table = "\n".join(f"| {i} | {name} | {counts[name]} |" for i, name in enumerate(class_names))
    text = (
        "---\n"
        + yaml.safe_dump(header, sort_keys=False, allow_unicode=True)
        + "---\n\n"
        + f"# {title}\n\n"
        "Written by geosynth: one folder per class, `metadata.jsonl` with one row per image "
        "(`file_name`, `label`, `class_name` and how the image was made), `provenance.json` "
        "with the run that wrote it.\n\n"
        "| label | class | images |\n| --- | --- | --- |\n" + table + "\n\n"
        "Readers: `datasets.load_dataset(DIR)` (this card makes `label` a ClassLabel with the "
        "names above), `torchvision.datasets.ImageFolder(DIR)` and timm's "
        "`create_dataset('', root=DIR)` (both number the classes by sorted folder name, which "
        "may differ from the labels above; join on the class name).\n" + notes
    )
    path = root / CARD_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
