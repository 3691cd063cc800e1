"""Datasets for classification: classes matched by name across TRAIN, VAL, TEST and real data,
the TRAIN, VAL and TEST splits loaded together (:func:`load_splits`), and a torch dataset that
applies a transform.

The classifier's class list is TRAIN's. Every other split must hold exactly the same class set,
possibly after renaming its classes with a class map (``{"name in that split": "name in
TRAIN"}``); its labels are then re-indexed into TRAIN's order, so a split whose folders sort
differently is still scored correctly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from geosynth.data import ImageDataset, load_dataset
from geosynth.data.multiband import BandInput
from geosynth.errors import GeosynthError

DatasetRef = ImageDataset | str | os.PathLike[str]


def load_class_map(path: str | Path) -> dict[str, str]:
    """Read ``{"name in VAL/TEST/real": "name in TRAIN"}`` from a JSON file."""
    p = Path(path)
    try:
        obj = json.loads(p.read_text())
    except FileNotFoundError:
        raise GeosynthError(f"class_map={str(p)!r}: no such file") from None
    except (OSError, ValueError) as exc:
        raise GeosynthError(f"class_map={str(p)!r}: not a JSON file ({exc})") from None
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in obj.items()
    ):
        raise GeosynthError(
            f'class_map={str(p)!r}: expected a JSON object {{"name in the split": "name in TRAIN"}}'
        )
    return obj


def align_classes(
    ds: ImageDataset,
    class_names: list[str],
    *,
    role: str,
    class_map: Mapping[str, str] | None = None,
) -> ImageDataset:
    """``ds`` relabelled into ``class_names`` order, matching by name (after ``class_map``).

    The two class sets must be equal; otherwise the error names the split (``role``, the
    parameter it came from: ``test='/data/test'``), the classes that differ and the remedy.
    """
    mapping = dict(class_map or {})
    renamed = [mapping.get(c, c) for c in ds.class_names]
    dupes = sorted({c for c in renamed if renamed.count(c) > 1})
    if dupes:
        raise GeosynthError(
            f"{role}={str(ds.source)!r}: `class_map` maps several classes onto '{dupes[0]}'"
        )
    extra = [c for c in renamed if c not in class_names]
    missing = [c for c in class_names if c not in renamed]
    if extra or missing:
        parts = []
        if extra:
            parts.append(f"classes not in TRAIN: {', '.join(extra)}")
        if missing:
            parts.append(f"TRAIN classes it lacks: {', '.join(missing)}")
        raise GeosynthError(
            f"{role}={str(ds.source)!r}: class set differs from TRAIN's ({'; '.join(parts)}); "
            "give `class_map` (a JSON file) to rename classes"
        )
    index = [class_names.index(c) for c in renamed]
    samples = [replace(s, label=index[s.label]) for s in ds.samples]
    return replace(ds, class_names=list(class_names), samples=samples)


class TransformedImages(torch.utils.data.Dataset):
    """``(transform(image), label)`` pairs over an :class:`ImageDataset`; with ``bands``, the
    image is the raster's selected bands, standardised (a multi-band float tensor)."""

    def __init__(
        self,
        ds: ImageDataset,
        transform: Callable[[Any], torch.Tensor],
        bands: BandInput | None = None,
    ) -> None:
        self.ds = ds
        self.transform = transform
        self.bands = bands

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = self.ds.samples[index].label
        if self.bands is None:
            return self.transform(self.ds.image(index)), label
        where = self.ds.describe(self.ds.samples[index])
        return self.transform(self.bands.tensor(self.ds.raster(index), where)), label


@dataclass
class Splits:
    """The data of one run; every split already labelled in TRAIN's class order."""

    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    real: ImageDataset | None = None

    def describe(self) -> dict[str, Any]:
        out = {}
        for role in ("train", "val", "test", "real"):
            ds = getattr(self, role)
            if ds is not None:
                out[role] = {"source": ds.source, "images": len(ds), "selection": ds.selection}
        return out

    def fingerprints(self) -> dict[str, str]:
        return {
            role: getattr(self, role).fingerprint()
            for role in ("train", "val", "test", "real")
            if getattr(self, role) is not None
        }


def load_splits(
    train: DatasetRef,
    val: DatasetRef,
    test: DatasetRef,
    real: DatasetRef | None = None,
    *,
    split: str | None = None,
    classes: Sequence[str] | None = None,
    shots: int | None = None,
    real_shots: int | None = None,
    class_map: Mapping[str, str] | str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> Splits:
    """The splits of a run, each labelled in TRAIN's class order.

    Paths are loaded (``split``, ``classes`` and ``shots`` select from TRAIN, ``real_shots``
    from ``real``; shots are drawn with ``seed``); datasets are used as given. ``classes`` names
    TRAIN's classes: the other splits keep the classes that map onto them. VAL, TEST and real
    are matched to TRAIN's classes by name, after ``class_map`` (``{"name in the split": "name
    in TRAIN"}``, or a JSON file of it); their class sets must then equal TRAIN's."""
    names = list(classes) if classes else None
    if isinstance(class_map, (str, os.PathLike)):
        class_map = load_class_map(Path(class_map))
    mapping = dict(class_map or {})

    def load(src: DatasetRef, **kw: Any) -> ImageDataset:
        return src if isinstance(src, ImageDataset) else load_dataset(Path(src), **kw)

    train_ds = load(train, split=split, classes=names, shots=shots, seed=seed)
    if names and isinstance(train, ImageDataset):
        train_ds = train_ds.select_classes(names)
    aligned: dict[str, ImageDataset] = {}
    for role, src, kw in (
        ("val", val, {}),
        ("test", test, {}),
        ("real", real, {"shots": real_shots, "seed": seed}),
    ):
        if src is None:
            continue
        ds = load(src, **kw)
        if names:
            ds = ds.select_classes([c for c in ds.class_names if mapping.get(c, c) in names])
        aligned[role] = align_classes(ds, train_ds.class_names, role=role, class_map=mapping)
    return Splits(train_ds, aligned["val"], aligned["test"], aligned.get("real"))
