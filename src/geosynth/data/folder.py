"""Image folders: ``root/<class>/*.{png,jpg,jpeg,tif,tiff}``, optionally with ``metadata.jsonl``.

Class names are the sub-folder names, sorted. A ``metadata.jsonl`` at the root (as geosynth's
writers and ``datasets``' imagefolder use) takes precedence: each line holds ``file_name`` (relative
to the root), ``label`` (int) and ``class_name``; the label order it records is kept. Its columns named
like metadata fields (``lon``, ``lat``, ``gsd``, ``cloud_cover``, ``date``) are the samples' own
metadata (:mod:`geosynth.data.metadata`): chips cut by ``data tile`` carry their scene's date so.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from geosynth.artifacts import file_digest
from geosynth.data.dataset import ImageDataset, Sample
from geosynth.data.metadata import FIELDS, OwnFields
from geosynth.data.raster import Raster, read_raster
from geosynth.errors import GeosynthError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
METADATA_NAME = "metadata.jsonl"


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _open(sample: Sample) -> Image.Image:
    return Image.open(sample.ref)


def _raster(sample: Sample) -> Raster:
    return read_raster(sample.ref)


def _digest(sample: Sample) -> str:
    return file_digest(Path(sample.ref))


def read_image_folder(root: Path) -> ImageDataset:
    """Read a class-per-folder tree (or a geosynth imagefolder when ``metadata.jsonl`` exists)."""
    if (root / METADATA_NAME).is_file():
        return _read_with_metadata(root)
    class_dirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
        key=lambda d: d.name,
    )
    if not class_dirs:
        raise GeosynthError(
            f"{root}: no class sub-folders (expected {root}/<class>/*.png|jpg|jpeg|tif)"
        )
    samples: list[Sample] = []
    for label, d in enumerate(class_dirs):
        files = sorted(f for f in d.iterdir() if _is_image(f))
        if not files:
            subdirs = [s.name for s in class_dirs if any(x.is_dir() for x in s.iterdir())]
            if len(subdirs) == len(class_dirs):
                raise GeosynthError(
                    f"{root}: looks like a folder of splits ({', '.join(subdirs)}); "
                    "choose one with `split`"
                )
            raise GeosynthError(
                f"{d}: class folder has no images (expected *.png, *.jpg, *.jpeg or *.tif)"
            )
        samples.extend(Sample(f.relative_to(root).as_posix(), label, f) for f in files)
    return ImageDataset(
        source=str(root),
        kind="imagefolder",
        class_names=[d.name for d in class_dirs],
        samples=samples,
        decoder=_open,
        digest=_digest,
        raster_decoder=_raster,
    )


def _read_with_metadata(root: Path) -> ImageDataset:
    meta = root / METADATA_NAME
    names: dict[int, str] = {}
    samples: list[Sample] = []
    own: dict[str, OwnFields] = {}
    for lineno, line in enumerate(meta.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rel, label = str(row["file_name"]), int(row["label"])
            name = str(row.get("class_name", label))
        except (ValueError, KeyError, TypeError) as exc:
            raise GeosynthError(
                f"{meta}:{lineno}: expected a JSON object with 'file_name' and integer 'label' "
                f"({exc.__class__.__name__}: {exc})"
            ) from None
        if names.setdefault(label, name) != name:
            raise GeosynthError(
                f"{meta}:{lineno}: label {label} is '{name}' here but '{names[label]}' before"
            )
        path = root / rel
        if not path.is_file():
            raise GeosynthError(f"{meta}:{lineno}: listed image {path} does not exist")
        samples.append(Sample(rel, label, path))
        fields = {k: (row[k], METADATA_NAME) for k in FIELDS if row.get(k) is not None}
        if fields:
            own[rel] = fields
    if not samples:
        raise GeosynthError(f"{meta}: lists no images")
    n = max(names) + 1
    class_names = [names.get(i, f"class_{i}") for i in range(n)]
    samples.sort(key=lambda s: (s.label, s.key))
    return ImageDataset(
        source=str(root),
        kind="imagefolder",
        class_names=class_names,
        samples=samples,
        decoder=_open,
        digest=_digest,
        raster_decoder=_raster,
        metadata_reader=(lambda s: own.get(s.key, {})) if own else None,
    )
