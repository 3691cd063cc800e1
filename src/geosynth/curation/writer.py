"""Write the kept subset of a generated dataset in ``generate``'s layout: the kept files copied
byte for byte (GeoTIFFs stay native), their metadata rows with the filter's scores added, the
dataset card, ``radiometry.json`` and per-image previews (``OUT.previews/``) where the source had
them, ``filter.jsonl`` (every image, kept or not, with its scores and the reason it was dropped)
and provenance. Everything appears at once (atomic renames) or not at all."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from geosynth.artifacts import Provenance, atomic_path, check_replaceable, write_provenance
from geosynth.artifacts.jsontext import json_text
from geosynth.data.card import write_dataset_card
from geosynth.data.folder import METADATA_NAME
from geosynth.data.radiometry_sources import RADIOMETRY_FILE as RADIOMETRY_NAME

FILTER_RECORD = "filter.jsonl"
PREVIEWS_SUFFIX = ".previews"  # as geosynth.diffusion.sampling.generate.previews_dir
#: columns whose card type cannot be inferred from the values (as generate's CARD_TYPES)
CARD_TYPES: dict[str, str | None] = {
    "sqrt_alpha_bar": "float64",
    "leak_timestep": "int64",
    "loras": None,
    "control": None,
    "filter_copy_of": "string",
    "filter_copy_distance": "float64",
    "filter_copy_ratio": "float64",
    "filter_confidence": "float64",
    "filter_predicted": "string",
    "filter_manifold_ratio": "float64",
}


def previews_of(root: Path) -> Path:
    return root.with_name(root.name + PREVIEWS_SUFFIX)


def source_rows(root: Path) -> dict[str, dict[str, Any]]:
    """The source's metadata rows by ``file_name`` (empty for a plain class-folder tree)."""
    meta = root / METADATA_NAME
    if not meta.is_file():
        return {}
    rows = (json.loads(line) for line in meta.read_text().splitlines() if line.strip())
    return {str(r["file_name"]): r for r in rows}


def write_kept(
    source: Path,
    out: Path,
    class_names: Sequence[str],
    kept: Sequence[tuple[Path, dict[str, Any]]],
    records: Sequence[dict[str, Any]],
    provenance: Provenance,
) -> Path | None:
    """Copy ``kept`` (source file, metadata row whose ``file_name`` is its path in ``out``) into
    ``out``; returns the previews folder written, if any."""
    src_previews = previews_of(source)
    previews = [
        (src_previews / Path(row["file_name"]).with_suffix(".png"), row)
        for _, row in kept
        if Path(row["file_name"]).suffix.lower() in (".tif", ".tiff")
    ]
    previews = [(p, row) for p, row in previews if p.is_file()]
    out_previews = previews_of(out)
    if previews:
        check_replaceable(out_previews, "directory")
    with ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(out))
        tmp.mkdir(parents=True)
        for src, row in kept:
            target = tmp / row["file_name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        if (source / RADIOMETRY_NAME).is_file():
            shutil.copyfile(source / RADIOMETRY_NAME, tmp / RADIOMETRY_NAME)
        lines = [json_text(row, default=str) for _, row in kept]
        (tmp / METADATA_NAME).write_text("".join(line + "\n" for line in lines))
        rows = [json.loads(line) for line in lines]
        write_dataset_card(tmp, class_names, rows, "geosynth filtered dataset", CARD_TYPES)
        record = "".join(json_text(r, default=str) + "\n" for r in records)
        (tmp / FILTER_RECORD).write_text(record)
        if previews:
            ptmp = stack.enter_context(atomic_path(out_previews))
            for src, row in previews:
                target = ptmp / Path(row["file_name"]).with_suffix(".png")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target)
        write_provenance(tmp, provenance)
    return out_previews if previews else None
