"""Metadata across a dataset: a sidecar table attached to it, and the summary ``data info`` gives.

A sidecar table (as fMoW ships its metadata beside the images) holds one row per sample: CSV
with a header row (``.csv``; ``.tsv`` tab-separated) or JSON lines (``.jsonl``, ``.json``), with
a ``file_name`` column, the sample's key: its path relative to the dataset folder (for
multi-file samples such as Sentinel-1 patches, the sample's folder), as ``data info`` lists it.
With a split, ``file_name`` is relative to the split's folder, or to the dataset folder with the
split's name first (``train/Forest/Forest_1.tif``); rows of the other splits' folders are left
out. Columns named like a field (``lon``, ``lat``, ``gsd``, ``cloud_cover``, ``date``) are
checked and override what the data says; empty cells are missing; every other column is kept as
an extra field. A row naming a file that is not a sample of the dataset is an error, as is a
value out of its range.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from geosynth.artifacts.jsontext import json_text
from geosynth.data.dataset import ImageDataset
from geosynth.data.metadata import FIELDS, TABLE, check_field
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track

#: The column naming the sample a row describes (as in metadata.jsonl).
KEY_COLUMN = "file_name"


def read_metadata_table(path: str | os.PathLike[str]) -> list[tuple[int, str, dict[str, Any]]]:
    """The rows of a sidecar table: (line number, ``file_name``, checked fields and extra
    columns); errors name the parameter ``metadata_table`` and the line."""
    p = Path(path)
    where = f"metadata_table={str(p)!r}"
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise GeosynthError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    raw: list[tuple[int, dict[str, Any]]] = []
    if p.suffix.lower() in (".jsonl", ".json", ".ndjson") or text.lstrip().startswith("{"):
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise GeosynthError(f"{where}: line {n}: not a JSON object ({exc})") from None
            if not isinstance(row, dict):
                raise GeosynthError(f"{where}: line {n}: not a JSON object")
            raw.append((n, row))
    else:
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if p.suffix == ".tsv" else ",")
        if KEY_COLUMN not in (reader.fieldnames or []):
            raise GeosynthError(
                f"{where}: no '{KEY_COLUMN}' column (its header: "
                f"{', '.join(reader.fieldnames or []) or 'none'})"
            )
        raw = [
            (reader.line_num, {k: (v if v != "" else None) for k, v in row.items() if k})
            for row in reader
        ]
    rows: list[tuple[int, str, dict[str, Any]]] = []
    for n, row in raw:
        name = row.get(KEY_COLUMN)
        if not isinstance(name, str) or not name.strip():
            raise GeosynthError(f"{where}: line {n}: no '{KEY_COLUMN}' (the sample's path)")
        fields = {
            k: (check_field(k, v, f"{where}: line {n}") if k in FIELDS and v is not None else v)
            for k, v in row.items()
            if k != KEY_COLUMN
        }
        rows.append((n, name.strip().replace("\\", "/").removeprefix("./"), fields))
    if not rows:
        raise GeosynthError(f"{where}: holds no rows")
    return rows


def attach_metadata_table(
    ds: ImageDataset, table: str | os.PathLike[str], split: str | None = None
) -> ImageDataset:
    """``ds`` with the rows of the sidecar ``table`` as its samples' metadata (module
    docstring); ``split`` is the split ``ds`` was opened with."""
    where = f"metadata_table={str(table)!r}"
    keys = {s.key for s in ds.samples}
    root = Path(ds.source)
    by_key: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    for n, name, fields in read_metadata_table(table):
        key = name
        if key not in keys and split is not None and "/" in key:
            first, rest = key.split("/", 1)
            if first == split:
                key = rest
            elif root.name == split and (root.parent / first).is_dir():
                continue  # a row of another split's folder
        if key not in keys:
            example = ds.samples[0].key if ds.samples else "?"
            raise GeosynthError(
                f"{where}: line {n} names '{name}', which is not a sample of {ds.source} "
                f"(file_name is the sample's path relative to it, e.g. '{example}')"
            )
        if key in by_key:
            raise GeosynthError(f"{where}: line {n} repeats '{name}' (first on line {lines[key]})")
        by_key[key], lines[key] = fields, n
    return replace(ds, metadata_table=by_key, metadata_cache={})


def metadata_summary(
    ds: ImageDataset, *, by_sample: bool = False, track: Track = no_track
) -> dict[str, Any]:
    """Per field: how many samples know it, its range (numbers; dates as ISO text) or number of
    distinct values (extra columns), and where the values came from; with ``by_sample`` also
    every sample's fields (all of them, None where unknown), in dataset order."""
    every = [ds.metadata(i) for i in track(range(len(ds)), len(ds), "reading metadata")]
    names = list(FIELDS) + list(dict.fromkeys(k for m in every for k in m.extra))
    fields: dict[str, Any] = {}
    for name in names:
        known = [(m.to_dict().get(name), m.sources.get(name, TABLE)) for m in every]
        known = [(v, s) for v, s in known if v is not None]
        entry: dict[str, Any] = {"known": len(known), "missing": len(every) - len(known)}
        values: list[Any] = [v for v, _ in known]
        if name in FIELDS:
            entry["min"] = min(values) if values else None
            entry["max"] = max(values) if values else None
        else:
            entry["distinct"] = len({json_text(v, sort_keys=True, default=str) for v in values})
        entry["sources"] = dict(sorted(Counter(s for _, s in known).items()))
        fields[name] = entry
    out: dict[str, Any] = {"samples": len(every), "fields": fields}
    if by_sample:
        out["by_sample"] = [
            {
                "key": s.key,
                "class_name": ds.class_names[s.label],
                **dict.fromkeys(names),
                **m.to_dict(),
            }
            for s, m in zip(ds.samples, every, strict=True)
        ]
    return out
