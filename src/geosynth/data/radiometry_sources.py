"""Where a radiometry spec comes from, and how a recorded one is applied to other data.

A spec is given as itself (a :class:`Radiometry`, its dict, inline JSON, a JSON file) or as any
artifact that records one, so that "use the same spec" can always be followed:

* a LoRA folder (``finetune``'s output: ``geosynth.json``, key ``radiometry``) or its card;
* a channel-means file (``.safetensors``, metadata ``radiometry``);
* a generated dataset (``generate`` / ``filter`` output: ``radiometry.json``) or that file;
* any JSON object with a ``radiometry`` key (a provenance or settings record).

A recorded spec is *bound* to the data it was made on (dtype, band count, the names of the
selected bands). :func:`bind` applies it to a dataset: unchanged on data like that, and on other
files (a generated 3-band B04, B03, B02 set against the 13-band EuroSAT-MS it was trained on) as
:func:`portable` makes it: the same mapping (bands by name, ranges, units, scale, nodata), bound
anew to that data's files.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from geosynth.data.radiometry import Radiometry, RasterSource
from geosynth.errors import GeosynthError

#: a generated dataset's spec (``generate`` and ``filter`` write it at the dataset's root)
RADIOMETRY_FILE = "radiometry.json"
#: a LoRA folder's card
CARD_FILE = "geosynth.json"
_SPEC_KEYS = frozenset({"kind", "bands"})


def load_radiometry(
    value: Radiometry | dict[str, Any] | str | Path, *, where: str = "radiometry"
) -> Radiometry:
    """A spec from itself, its dict, inline JSON, a spec file, or an artifact recording one (see
    the module docstring); errors name ``where`` (the parameter) and the value."""
    if isinstance(value, Radiometry):
        return value
    if isinstance(value, dict):
        return _from_record(value, where)
    text = str(value).strip()
    if text.startswith("{"):  # inline JSON is too long to repeat: name the parameter only
        return _from_record(_json(text, f"`{where}`"), f"`{where}`")
    path = Path(text)
    label = f"{where}={text!r}"
    if path.is_dir():
        for name in (RADIOMETRY_FILE, CARD_FILE):
            if (path / name).is_file():
                return load_radiometry(path / name, where=where)
        raise GeosynthError(
            f"{label}: a folder without a recorded spec (expected a LoRA folder with "
            f"{CARD_FILE} or a generated dataset with {RADIOMETRY_FILE})"
        )
    if not path.is_file():
        raise GeosynthError(
            f"{label}: no such file (expected a JSON spec, file or object, or an artifact that "
            "records one: a LoRA folder, a channel-means file, a generated dataset)"
        )
    if path.suffix == ".safetensors":
        meta = _safetensors_metadata(path, label)
        if "radiometry" not in meta:
            raise GeosynthError(f"{label}: records no radiometry (made from 8-bit RGB images)")
        return _from_record(_json(meta["radiometry"], label), label)
    return _from_record(_json(path.read_text(), label), label)


def recorded_radiometry(root: str | Path) -> Radiometry | None:
    """The spec a generated dataset records (``ROOT/radiometry.json``), or None."""
    path = Path(root) / RADIOMETRY_FILE
    return load_radiometry(path) if path.is_file() else None


def portable(spec: Radiometry) -> Radiometry:
    """The mapping of ``spec`` without what binds it to its data: bands by the names they were
    resolved to (by index only where the data named none), the fitted ranges kept; dtype, band
    count and georeference are recorded again by :meth:`Radiometry.resolve` on the new data."""
    bands = tuple(spec.band_names) if spec.band_names else spec.bands
    return replace(
        spec,
        bands=bands,
        dtype=None,
        band_count=None,
        band_names=None,
        pixel_size=None,
        file_nodata=None,
        _cache={},
    )


def bind(spec: Radiometry, ds: RasterSource) -> Radiometry:
    """``spec`` resolved on ``ds``; a recorded spec made for other files (another band count or
    dtype) is applied as :func:`portable` makes it, its bands found by name."""
    if len(ds) and (spec.band_count is not None or spec.dtype is not None):
        first = ds.raster(0)
        if (spec.band_count, spec.dtype) != (first.count, first.dtype):
            spec = portable(spec)
    return spec.resolve(ds)


def _from_record(d: Any, where: str) -> Radiometry:
    if not isinstance(d, dict):
        raise GeosynthError(f"{where}: expected a JSON object")
    if "radiometry" in d and not set(d) >= _SPEC_KEYS:  # an artifact's record
        inner = d["radiometry"]
        if inner is None:
            raise GeosynthError(f"{where}: records no radiometry (made from 8-bit RGB images)")
        if isinstance(inner, str):
            inner = _json(inner, where)
        return Radiometry.from_dict(inner, where=where)
    return Radiometry.from_dict(d, where=where)


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise GeosynthError(f"{where}: not JSON ({exc})") from None


def _safetensors_metadata(path: Path, where: str) -> dict[str, str]:
    """The JSON metadata of a safetensors file, read from its header (no tensor is loaded)."""
    with path.open("rb") as f:
        head = f.read(8)
        size = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < size <= 100_000_000:
            raise GeosynthError(f"{where}: not a safetensors file")
        try:
            header = json.loads(f.read(size))
        except ValueError:
            raise GeosynthError(f"{where}: not a safetensors file") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}
