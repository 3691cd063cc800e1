"""torchgeo's on-disk EuroSAT layouts, read in place (no torchgeo needed).

torchgeo's ``EuroSAT`` (13-band Sentinel-2 GeoTIFFs) extracts ``EuroSATallBands.zip`` to
``ROOT/ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/<Class>_<n>.tif``; the RGB
release (``EuroSAT.zip``, also torchvision's) extracts to ``ROOT/2750/<Class>/<Class>_<n>.jpg``
(``EuroSAT_RGB`` in newer copies). Splits are the text files beside them,
``ROOT/eurosat-{train,val,test}.txt`` (or the ``eurosat-100-*``/``eurosat-spatial-*`` variants),
one file name per line, written with ``.jpg`` for both releases: lines are matched by file stem.
"""

from __future__ import annotations

from pathlib import Path

from geosynth.data.dataset import ImageDataset
from geosynth.data.folder import read_image_folder
from geosynth.errors import GeosynthError

#: Image roots under ROOT, MS first.
EUROSAT_BASE_DIRS = (
    Path("ds/images/remote_sensing/otherDatasets/sentinel_2/tif"),
    Path("2750"),
    Path("EuroSAT_RGB"),
    Path("EuroSAT_MS"),
)


def eurosat_image_root(root: Path) -> Path | None:
    """The class-folder root of a torchgeo/torchvision EuroSAT extraction, or None."""
    for base in EUROSAT_BASE_DIRS:
        if (root / base).is_dir():
            return root / base
    return None


def split_file(root: Path, split: str) -> Path:
    """``eurosat-<split>.txt``, else the single ``eurosat-*-<split>.txt`` variant present."""
    plain = root / f"eurosat-{split}.txt"
    if plain.is_file():
        return plain
    variants = sorted(root.glob(f"eurosat-*-{split}.txt"))
    if len(variants) == 1:
        return variants[0]
    found = sorted(p.name for p in root.glob("eurosat*.txt"))
    if not variants:
        raise GeosynthError(
            f"split={split!r}: no {plain.name} in {root} (split files: {', '.join(found) or 'none'})"
        )
    raise GeosynthError(
        f"split={split!r}: several split files in {root} ({', '.join(p.name for p in variants)}); "
        "keep one"
    )


def read_torchgeo_eurosat(root: Path, split: str | None) -> ImageDataset:
    """All images of the layout, or those listed in the split file; list entries missing on disk
    are an error (a partial extraction would otherwise go unnoticed)."""
    images = eurosat_image_root(root)
    assert images is not None
    ds = read_image_folder(images)
    ds.source = str(root)
    if split is None:
        return ds
    listing = split_file(root, split)
    wanted = [Path(line.strip()).stem for line in listing.read_text().splitlines() if line.strip()]
    by_stem = {Path(s.key).stem: i for i, s in enumerate(ds.samples)}
    missing = [w for w in wanted if w not in by_stem]
    if missing:
        raise GeosynthError(
            f"{listing}: lists {len(missing)} image(s) not under {images} (first: {missing[0]})"
        )
    keep = sorted({by_stem[w] for w in wanted})
    return ds.subset(keep, split=split)
