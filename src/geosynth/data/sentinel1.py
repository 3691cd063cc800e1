"""Sentinel-1 datasets in the layouts they ship in, read as 2-band VV/VH samples.

* BigEarthNet-S1 v1 (``bigearthnet-s1``): ``ROOT/<patch>/<patch>_VV.tif``, ``<patch>_VH.tif`` and
  ``<patch>_labels_metadata.json`` (``"labels"``: the CORINE land-cover labels of the patch, 43
  class nomenclature).
* reBEN, BigEarthNet v2 (``reben-s1``): ``ROOT/BigEarthNet-S1/<scene>/<patch>/<patch>_VV.tif`` and
  ``_VH.tif``; labels (19-class nomenclature) and splits in ``ROOT/metadata.parquet``, one row per
  patch with ``s1_name``, ``labels`` and ``split``.
* SSL4EO-S12 S1 (``ssl4eo-s12-s1``): ``ROOT/<location>/<scene>/VV.tif``, ``VH.tif``; unlabelled,
  so every sample is in one class named after ROOT.

BigEarthNet patches are multi-label; geosynth trains per class, so each patch gets ONE class:

* default: labels go to the 19-class nomenclature (Sumbul et al. 2020; v1 labels without a
  19-class equivalent, e.g. "Airports", are dropped) and the patch's class is its first label that
  has one, in the order the file lists them (CORINE code order: urban before agriculture before
  forest before wetland before water);
* ``label_map`` (a JSON object, or a path to one): ``{"source label": "class name"}``; a patch's
  class is that of the first key (in the map's order, i.e. a priority list) among its labels,
  v1 labels also matching through their 19-class name; patches with no key are left out.

Every label not chosen is counted in ``ds.selection["labels"]`` (``data info`` prints it).

Acquisition dates (``ds.metadata(i).date``): BigEarthNet-S1's ``acquisition_time``, SSL4EO-S12's
``metadata.json`` (``system:time_start``), reBEN's patch names (ESA's product naming holds the
sensing start).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from geosynth.data.dataset import ImageDataset, MetadataReader, Sample
from geosynth.data.metadata import OwnFields, product_date, ssl4eo_fields
from geosynth.data.stack import StackRef, find_band_files, read_stack, stack_digest
from geosynth.errors import GeosynthError

POLARISATIONS = ("VV", "VH")
LAYOUTS = ("bigearthnet-s1", "reben-s1", "ssl4eo-s12-s1")

_BEN19_GROUPS: dict[str, tuple[str, ...]] = {
    "Urban fabric": ("Continuous urban fabric", "Discontinuous urban fabric"),
    "Industrial or commercial units": ("Industrial or commercial units",),
    "Arable land": ("Non-irrigated arable land", "Permanently irrigated land", "Rice fields"),
    "Permanent crops": (
        "Vineyards",
        "Fruit trees and berry plantations",
        "Olive groves",
        "Annual crops associated with permanent crops",
    ),
    "Pastures": ("Pastures",),
    "Complex cultivation patterns": ("Complex cultivation patterns",),
    "Land principally occupied by agriculture, with significant areas of natural vegetation": (
        "Land principally occupied by agriculture, with significant areas of natural vegetation",
    ),
    "Agro-forestry areas": ("Agro-forestry areas",),
    "Broad-leaved forest": ("Broad-leaved forest",),
    "Coniferous forest": ("Coniferous forest",),
    "Mixed forest": ("Mixed forest",),
    "Natural grassland and sparsely vegetated areas": (
        "Natural grassland",
        "Sparsely vegetated areas",
    ),
    "Moors, heathland and sclerophyllous vegetation": (
        "Moors and heathland",
        "Sclerophyllous vegetation",
    ),
    "Transitional woodland, shrub": ("Transitional woodland/shrub",),
    "Beaches, dunes, sands": ("Beaches, dunes, sands",),
    "Inland wetlands": ("Inland marshes", "Peatbogs"),
    "Coastal wetlands": ("Salt marshes", "Salines"),
    "Inland waters": ("Water courses", "Water bodies"),
    "Marine waters": ("Coastal lagoons", "Estuaries", "Sea and ocean"),
}
#: The 19 BigEarthNet classes, in their published order.
BEN19_CLASSES = tuple(_BEN19_GROUPS)
#: BigEarthNet v1 (43 CORINE labels) -> 19-class name.
BEN19_FROM_V1 = {v1: c for c, group in _BEN19_GROUPS.items() for v1 in group}
#: v1 labels with no 19-class equivalent (dropped by the default rule).
V1_WITHOUT_BEN19 = (
    "Road and rail networks and associated land",
    "Port areas",
    "Airports",
    "Mineral extraction sites",
    "Dump sites",
    "Construction sites",
    "Green urban areas",
    "Sport and leisure facilities",
    "Bare rock",
    "Burnt areas",
    "Intertidal flats",
)
KNOWN_LABELS = frozenset(BEN19_FROM_V1) | frozenset(BEN19_CLASSES) | frozenset(V1_WITHOUT_BEN19)


def sentinel1_layout(root: Path) -> str | None:
    """Which of :data:`LAYOUTS` ``root`` holds, or None (checked on the first sub-folders only)."""
    if (root / "BigEarthNet-S1").is_dir() and (root / "metadata.parquet").is_file():
        return "reben-s1"
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))[:3]
    for d in subdirs:
        if (d / f"{d.name}_labels_metadata.json").is_file() and any(
            (d / f"{d.name}_{p}.tif").is_file() for p in POLARISATIONS
        ):
            return "bigearthnet-s1"
        for scene in sorted(s for s in d.iterdir() if s.is_dir())[:3]:
            if any((scene / f"{p}.tif").is_file() for p in POLARISATIONS):
                return "ssl4eo-s12-s1"
    return None


def read_sentinel1(
    root: Path,
    layout: str,
    split: str | None = None,
    label_map: dict[str, str] | str | Path | None = None,
) -> ImageDataset:
    """Read ``root`` (in ``layout``) as VV/VH samples with one class each (module docstring)."""
    mapping = _label_map(label_map)
    if layout == "ssl4eo-s12-s1":
        if split is not None or mapping is not None:
            what = "split" if split is not None else "label_map"
            raise GeosynthError(f"{what}: SSL4EO-S12 ({root}) has no splits or labels")
        scenes = sorted(
            s for loc in root.iterdir() if loc.is_dir() for s in loc.iterdir() if s.is_dir()
        )
        refs = [(s, find_band_files(s, POLARISATIONS, "{band}.tif"), [root.name]) for s in scenes]
    elif layout == "bigearthnet-s1":
        if split is not None:
            raise GeosynthError(
                f"split={split!r}: BigEarthNet-S1 v1 ({root}) has no split files geosynth reads; "
                "export a split with `data export` from a folder per split"
            )
        patches = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        times: dict[str, str] = {}
        refs = [
            (p, find_band_files(p, POLARISATIONS, "{stem}_{band}.tif"), _v1_labels(p, times))
            for p in patches
        ]
    elif layout == "reben-s1":
        refs = _reben_refs(root, split)
    else:
        raise GeosynthError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    if not refs:
        raise GeosynthError(f"{root}: no {layout} samples found")
    chosen, report = _choose_classes([r[2] for r in refs], mapping, layout)
    names = sorted({c for c in chosen if c is not None}, key=_class_order(mapping))
    samples = [
        Sample(d.relative_to(root).as_posix(), names.index(c), ref)
        for (d, ref, _), c in zip(refs, chosen, strict=True)
        if c is not None
    ]
    if not samples:
        raise GeosynthError(f"{root}: no patch has a label the label map names")
    selection: dict[str, Any] = {"layout": layout, "labels": report}
    if split is not None:
        selection["split"] = split
    return ImageDataset(
        source=str(root),
        kind=layout,
        class_names=names,
        samples=samples,
        decoder=_no_pil,
        digest=lambda s: stack_digest(s.ref),
        selection=selection,
        raster_decoder=lambda s: read_stack(s.ref),
        metadata_reader=_metadata_reader(layout, times if layout == "bigearthnet-s1" else {}),
    )


def _metadata_reader(layout: str, times: dict[str, str]) -> MetadataReader:
    """Each layout's own record of a sample's acquisition (module docstring)."""

    def read(sample: Sample) -> OwnFields:
        if layout == "ssl4eo-s12-s1":
            return ssl4eo_fields(sample.ref.files[0].parent / "metadata.json")
        name = sample.ref.files[0].parent.name
        if layout == "bigearthnet-s1":
            t = times.get(name)
            return {} if t is None else {"date": (t, "labels_metadata.json")}
        date = product_date(name)
        return {} if date is None else {"date": (date, "product name")}

    return read


def _no_pil(sample: Sample) -> Any:
    # Not a GeosynthError: ImageDataset.image then reads the raster and asks for a radiometry spec.
    raise ValueError(f"{sample.ref}: a multi-file sample has no 8-bit image")


def _v1_labels(patch: Path, times: dict[str, str]) -> list[str]:
    """The patch's labels; its ``acquisition_time``, when the file has one, goes to ``times``."""
    meta = patch / f"{patch.name}_labels_metadata.json"
    try:
        record = json.loads(meta.read_text())
        labels = [str(x) for x in record["labels"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GeosynthError(f"{meta}: expected JSON with a 'labels' list ({exc})") from None
    if record.get("acquisition_time"):
        times[patch.name] = str(record["acquisition_time"])
    return labels


def _reben_refs(root: Path, split: str | None) -> list[tuple[Path, StackRef, list[str]]]:
    import pandas as pd  # local: pandas (with pyarrow) only for reBEN's parquet

    meta = root / "metadata.parquet"
    try:
        df = pd.read_parquet(meta, columns=["s1_name", "labels", "split"])
    except Exception as exc:  # pyarrow raises many types
        raise GeosynthError(f"{meta}: cannot read s1_name, labels, split ({exc})") from None
    if split is not None:
        have = sorted(set(df["split"]))
        if split not in have:
            raise GeosynthError(f"split={split!r}: not in {meta} (splits: {', '.join(have)})")
        df = df[df["split"] == split]
    s1 = root / "BigEarthNet-S1"
    present = {p.name: p for scene in s1.iterdir() if scene.is_dir() for p in scene.iterdir()}
    rows = sorted(zip(df["s1_name"], df["labels"], strict=True))
    missing = [name for name, _ in rows if name not in present]
    if missing and split is not None:
        raise GeosynthError(
            f"{meta}: lists {len(missing)} {split} patch(es) not under {s1} (first: {missing[0]})"
        )
    return [
        (present[n], find_band_files(present[n], POLARISATIONS, "{stem}_{band}.tif"), list(lab))
        for n, lab in rows
        if n in present
    ]


def _label_map(value: dict[str, str] | str | Path | None) -> dict[str, str] | None:
    """The user's label map, checked: every key must be a BigEarthNet label."""
    if value is None:
        return None
    where = "label_map"
    if not isinstance(value, dict):
        where = f"label_map={str(value)!r}"
        try:
            text = Path(value).read_text() if Path(value).is_file() else str(value)
            value = json.loads(text)
        except (OSError, ValueError) as exc:
            raise GeosynthError(
                f"{where}: expected a JSON object or a file holding one ({exc})"
            ) from None
    if not isinstance(value, dict) or not value:
        raise GeosynthError(f"{where}: expected a non-empty JSON object {{label: class}}")
    unknown = [k for k in value if k not in KNOWN_LABELS]
    if unknown:
        raise GeosynthError(
            f"{where}: unknown label '{unknown[0]}' (BigEarthNet labels: "
            f"{', '.join(BEN19_CLASSES)}, or a v1 CORINE label)"
        )
    return {str(k): str(v) for k, v in value.items()}


def _choose_classes(
    labels: list[list[str]], mapping: dict[str, str] | None, layout: str
) -> tuple[list[str | None], dict[str, Any]]:
    """One class per sample (or None: left out) and a report of what was dropped."""
    chosen: list[str | None] = []
    dropped: Counter[str] = Counter()
    for labs in labels:
        if layout == "ssl4eo-s12-s1":
            chosen.append(labs[0])
            continue
        # Each label's class: its 19-class name, or the first map key it matches.
        if mapping is None:
            cls = [BEN19_FROM_V1.get(x, x) if _ben19(x) else None for x in labs]
            c = next((k for k in cls if k is not None), None)
        else:
            keys = list(mapping)
            rank = [
                min((i for i, k in enumerate(keys) if k in (x, BEN19_FROM_V1.get(x))), default=None)
                for x in labs
            ]
            cls = [None if r is None else mapping[keys[r]] for r in rank]
            best = min((r for r in rank if r is not None), default=None)
            c = None if best is None else mapping[keys[best]]
        chosen.append(c)
        dropped.update(x for x, k in zip(labs, cls, strict=True) if c is None or k != c)
    rule = (
        "none (unlabelled)"
        if layout == "ssl4eo-s12-s1"
        else "first label with a BigEarthNet-19 class"
        if mapping is None
        else "first label-map key (map order) among the patch's labels"
    )
    report = {
        "rule": rule,
        "patches_left_out": sum(c is None for c in chosen),
        "dropped": dict(sorted(dropped.items())),
    }
    return chosen, report


def _ben19(label: str) -> bool:
    return label in BEN19_FROM_V1 or label in BEN19_CLASSES


def _class_order(mapping: dict[str, str] | None) -> Any:
    """Classes in the nomenclature's order (or the label map's), unknown names last, by name."""
    order = list(dict.fromkeys(mapping.values())) if mapping else list(BEN19_CLASSES)
    return lambda c: (order.index(c) if c in order else len(order), c)
