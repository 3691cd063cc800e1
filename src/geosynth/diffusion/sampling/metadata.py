"""What each generated image is asked for under DiffusionSat's metadata conditioning.

Three sources (``generate --metadata`` / ``--metadata-from``), resolved and checked before any
model loads, into rows of native values (degrees, metres per pixel, a 0..1 fraction, calendar
numbers) per class:

* literal values, ``lat=25.2,lon=55.3,gsd=0.5,date=2023-06-01``: every image;
* a table of rows (``.csv`` with a header, ``.jsonl``): the field columns of each row, with an
  optional ``class_name`` column keeping a row to one class; image ``i`` of a class takes its
  ``i``-th row (cycling when there are more images than rows);
* a real dataset (``metadata_from``): one image per real sample of each class, in dataset
  order, asking for that sample's metadata, and recording its key (``metadata_from`` column)
  for paired evaluation. ``gsd`` is scaled by the sample's side over the generated side, so the
  generated image covers the ground the real one covers. With ``shuffle`` each class's rows
  are permuted (seeded): image ``i`` keeps sample ``i`` as its pair but asks for another
  sample's metadata: the control of ``evaluate``'s retrieval rank (docs/generation.md).

A field the model does not condition on is an error for literal values and tables, and left out
of a real dataset's rows; a field not given is 0, DiffusionSat's "unknown". The unconditional
branch of classifier-free guidance gets all zeros.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import torch

from geosynth.data.metadata import parse_metadata_values
from geosynth.errors import GeosynthError

#: The columns a generated image's row gets (only those asked for).
COLUMNS = ("lon", "lat", "gsd", "cloud_cover", "date", "year", "month", "day")
_TABLES = (".csv", ".tsv", ".jsonl", ".json", ".ndjson")


def model_fields(model: Any, cards: Sequence[Mapping[str, Any]]) -> tuple[str, ...] | None:
    """The metadata fields the model conditions on: a LoRA card's (finetune --metadata), else
    the base UNet config's (DiffusionSat's layout); None: it has no metadata embedding."""
    from geosynth.diffusion.diffusionsat import metadata_fields_of
    from geosynth.diffusion.family.files import component_config, is_single_file

    for card in cards:
        meta = card.get("metadata")
        if meta and meta.get("fields"):
            return tuple(meta["fields"])
    if is_single_file(model):
        return None
    config = component_config(model, "unet")
    return None if config is None else metadata_fields_of(config, f"model={str(model)!r}")


def _table_rows(path: Path, fields: Sequence[str]) -> list[tuple[str | None, dict[str, float]]]:
    where = f"metadata={str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise GeosynthError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    raw: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    row = None
                if not isinstance(row, dict):
                    raise GeosynthError(f"{where}: line {n}: not a JSON object")
                raw.append((n, row))
    else:
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix == ".tsv" else ",")
        raw = [(reader.line_num, dict(r)) for r in reader]
    rows = []
    for n, row in raw:
        cls = row.pop("class_name", None)
        given = {k: v for k, v in row.items() if k and v not in (None, "")}
        values = parse_metadata_values(given, allowed=fields, what=f"metadata ({where}: line {n})")
        rows.append((None if cls in (None, "") else str(cls), values))
    if not rows:
        raise GeosynthError(f"{where}: holds no rows")
    return rows


def resolve_rows(
    *,
    metadata: str | Mapping[str, Any] | None,
    metadata_from: Any,
    shuffle: bool,
    fields: Sequence[str] | None,
    classes: Sequence[str],
    seed: int,
) -> dict[str, list[dict[str, Any]]] | None:
    """Per class, the rows its images ask for (module docstring): ``{"values": {field: native
    value}, "side": the real sample's shorter side or None, "source": its key or None}``."""
    if metadata is None and metadata_from is None:
        if shuffle:
            raise GeosynthError("`metadata_shuffle` needs `metadata_from` (a real dataset)")
        return None
    if metadata is not None and metadata_from is not None:
        raise GeosynthError("`metadata` and `metadata_from`: give one of them")
    if fields is None:
        raise GeosynthError(
            "`metadata`: the model has no metadata embedding (train one with finetune's "
            "`metadata`, or use a DiffusionSat model)"
        )
    if metadata_from is not None:
        return _rows_from_dataset(metadata_from, fields, classes, shuffle, seed)
    if shuffle:
        raise GeosynthError("`metadata_shuffle` needs `metadata_from` (a real dataset)")
    path = None if isinstance(metadata, Mapping) else Path(str(metadata))
    if path is not None and (path.suffix.lower() in _TABLES or path.is_file()):
        table = _table_rows(path, fields)
        out = {}
        for c in classes:
            rows = [v for cls, v in table if cls is None or cls == c]
            if not rows:
                raise GeosynthError(f"metadata={str(path)!r}: no row for class '{c}'")
            out[c] = [{"values": v, "side": None, "source": None} for v in rows]
        return out
    assert metadata is not None
    values = parse_metadata_values(metadata, allowed=fields)
    return {c: [{"values": values, "side": None, "source": None}] for c in classes}


def _rows_from_dataset(
    ref: Any, fields: Sequence[str], classes: Sequence[str], shuffle: bool, seed: int
) -> dict[str, list[dict[str, Any]]]:
    from geosynth.data import ImageDataset, load_dataset

    ds = ref if isinstance(ref, ImageDataset) else load_dataset(str(ref))
    where = f"metadata_from={str(ds.source)!r}"
    out: dict[str, list[dict[str, Any]]] = {}
    for c in classes:
        if c not in ds.class_names:
            raise GeosynthError(
                f"{where}: has no class '{c}' (its classes: {', '.join(ds.class_names)})"
            )
        y = ds.class_names.index(c)
        rows = []
        for i, s in enumerate(ds.samples):
            if s.label != y:
                continue
            native = ds.metadata(i).model_values()
            values = {f: float(v) for f, v in native.items() if f in fields and v is not None}
            r = ds.raster(i)
            rows.append({"values": values, "side": min(r.width, r.height), "source": s.key})
        if not rows:
            raise GeosynthError(f"{where}: no sample of class '{c}'")
        if shuffle:
            g = torch.Generator().manual_seed(seed)
            perm = torch.randperm(len(rows), generator=g).tolist()
            rows = [
                {**rows[p], "source": rows[i]["source"], "shuffled": True}
                for i, p in enumerate(perm)
            ]
        out[c] = rows
    return out


def row_for(rows: Mapping[str, list[dict[str, Any]]], class_name: str, index: int) -> dict:
    """The row image ``index`` of ``class_name`` asks for."""
    mine = rows[class_name]
    return mine[index % len(mine)]


def asked(row: Mapping[str, Any], size: int) -> dict[str, float]:
    """The native values an image asks for, ``gsd`` that of its own pixels (a real sample's
    scaled by its side over the generated ``size``)."""
    values = dict(row["values"])
    if "gsd" in values and row.get("side"):
        values["gsd"] = values["gsd"] * float(row["side"]) / size
    return values


def columns(row: Mapping[str, Any], size: int) -> dict[str, Any]:
    """The metadata columns of a generated image's row: the fields asked for (``date`` as ISO
    text when year, month and day are all given), its real pair and whether it was shuffled."""
    values = asked(row, size)
    out: dict[str, Any] = {
        k: values[k] for k in ("lon", "lat", "gsd", "cloud_cover") if k in values
    }
    ymd = [values.get(k) for k in ("year", "month", "day")]
    if all(v is not None for v in ymd):
        try:
            out["date"] = date(*(int(v) for v in ymd)).isoformat()  # type: ignore[arg-type]
        except ValueError:  # day 31 of a 30-day month: kept as asked
            out.update({k: int(v) for k, v in zip(("year", "month", "day"), ymd, strict=True) if v})
    else:
        out.update({k: int(values[k]) for k in ("year", "month", "day") if k in values})
    if row.get("source") is not None:  # a real sample's, for paired evaluation
        out["metadata_from"] = row["source"]
        out["metadata_shuffled"] = bool(row.get("shuffled", False))
    return out


def batch_tensor(
    rows: Mapping[str, list[dict[str, Any]]],
    batch: Sequence[tuple[str, int]],
    fields: Sequence[str],
    size: int,
) -> torch.Tensor:
    """The normalised metadata of a batch of jobs (batch x fields; 0 where not given)."""
    from geosynth.diffusion.metadata_embedding import metadata_tensor

    native = [asked(row_for(rows, c, i), size) for c, i in batch]
    return metadata_tensor(native, fields)
