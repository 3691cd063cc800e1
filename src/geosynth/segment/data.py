"""Data for segmentation models: TRAIN, VAL, TEST and real pairs with their legends aligned by
class name (:func:`load_seg_splits`), and a torch dataset of (image tensor, class mask).

The model's classes are TRAIN's legend. Every other split's legend must name the same classes
(in any order: its masks are re-indexed into TRAIN's order); ignored pixels stay -1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from geosynth.data.legend import Legend
from geosynth.data.multiband import BandInput
from geosynth.data.pairdata import PairedDataset
from geosynth.errors import GeosynthError

PairRef = PairedDataset | str | os.PathLike[str]
ROLES = ("train", "val", "test", "real")


@dataclass
class SegSplits:
    """The pairs of one run; ``remap[role]`` takes a split's class index to TRAIN's."""

    train: PairedDataset
    val: PairedDataset
    test: PairedDataset
    real: PairedDataset | None
    class_names: list[str]
    remap: dict[str, np.ndarray]

    def datasets(self) -> dict[str, PairedDataset]:
        return {r: getattr(self, r) for r in ROLES if getattr(self, r) is not None}

    def describe(self) -> dict[str, Any]:
        return {
            role: {
                "source": ds.source,
                "pairs": len(ds),
                "selection": ds.selection,
                "legend": None if ds.legend is None else ds.legend.where,
            }
            for role, ds in self.datasets().items()
        }

    def fingerprints(self) -> dict[str, str]:
        return {role: ds.fingerprint() for role, ds in self.datasets().items()}


def _load(
    ref: PairRef, role: str, *, map_legend: Any, ignore: Any, split: Any, shots: Any, seed: int
) -> PairedDataset:
    from geosynth.data.load import load_dataset

    if isinstance(ref, PairedDataset):
        ds: Any = ref
    else:
        ds = load_dataset(
            Path(ref), split=split, shots=shots, seed=seed, map_legend=map_legend, ignore=ignore
        )
    if not isinstance(ds, PairedDataset):
        raise GeosynthError(
            f"{role}={str(ds.source)!r}: not a segmentation dataset (expected images/ + masks/ "
            "folders, a table of image/mask pairs or a dataset with a mask column)"
        )
    ds.require_legend()
    return ds


def align(legend: Legend, names: list[str], role: str, source: str) -> np.ndarray:
    """Index table from ``legend``'s classes to ``names`` (the same set, any order)."""
    extra = [n for n in legend.names if n not in names]
    missing = [n for n in names if n not in legend.names]
    if extra or missing:
        parts = [f"classes not in TRAIN: {', '.join(extra)}"] if extra else []
        parts += [f"TRAIN classes it lacks: {', '.join(missing)}"] if missing else []
        raise GeosynthError(
            f"{role}={source!r}: its legend differs from TRAIN's ({'; '.join(parts)}); give "
            "one `map_legend` for every split, or legends naming the same classes"
        )
    return np.array([names.index(n) for n in legend.names], np.int64)


def load_seg_splits(
    train: PairRef,
    val: PairRef,
    test: PairRef,
    real: PairRef | None = None,
    *,
    map_legend: Any = None,
    ignore: Sequence[str | int] | None = None,
    split: str | None = None,
    shots: int | None = None,
    real_shots: int | None = None,
    seed: int = 0,
) -> SegSplits:
    """Load the splits (``split`` and ``shots`` select from TRAIN, ``real_shots`` from
    ``real``: K pairs per group, drawn with ``seed``); ``map_legend`` and ``ignore`` apply to
    every split loaded from a path."""
    kw = {"map_legend": map_legend, "ignore": ignore, "seed": seed}
    train_ds = _load(train, "train", split=split, shots=shots, **kw)
    assert train_ds.legend is not None
    names = list(train_ds.legend.names)
    loaded = {"train": train_ds}
    for role, ref, k in (("val", val, None), ("test", test, None), ("real", real, real_shots)):
        if ref is not None:
            loaded[role] = _load(ref, role, split=None, shots=k, **kw)
    remap = {}
    for role, ds in loaded.items():
        assert ds.legend is not None
        remap[role] = align(ds.legend, names, role, ds.source)
    return SegSplits(
        loaded["train"], loaded["val"], loaded["test"], loaded.get("real"), names, remap
    )


class PairTensors(torch.utils.data.Dataset):
    """``(image tensor C x H x W, mask H x W int64)`` of a PairedDataset: 8-bit RGB scaled to
    [0, 1] and normalised with ``mean`` / ``std``, or native bands standardised (``bands``);
    the mask re-indexed by ``remap`` (-1 ignored). ``resolution`` resizes the image (bilinear,
    antialiased) and, if ``resize_mask``, the mask (nearest: never interpolated); evaluation
    keeps masks at their own size and scales the logits up instead."""

    def __init__(
        self,
        ds: PairedDataset,
        remap: np.ndarray,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        bands: BandInput | None = None,
        resolution: int | None = None,
        resize_mask: bool = True,
    ) -> None:
        self.ds = ds
        self.remap = torch.from_numpy(np.asarray(remap, np.int64))
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.bands = bands
        self.resolution = resolution
        self.resize_mask = resize_mask

    def __len__(self) -> int:
        return len(self.ds)

    def image(self, index: int) -> torch.Tensor:
        if self.bands is not None:
            where = self.ds.describe(self.ds.samples[index])
            return self.bands.tensor(self.ds.raster(index), where)
        rgb = np.asarray(self.ds.image(index), np.float32) / 255.0
        pixels = torch.from_numpy(rgb).permute(2, 0, 1)
        return (pixels - self.mean) / self.std

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        classes = torch.from_numpy(self.ds.map(index))
        mask = torch.where(classes >= 0, self.remap[classes.clamp(min=0)], -1)
        image = self.image(index)
        size = self.resolution
        if size is not None and tuple(image.shape[-2:]) != (size, size):
            image = F.interpolate(
                image[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )[0]
            if self.resize_mask:
                mask = F.interpolate(mask[None, None].float(), size=(size, size), mode="nearest")
                mask = mask[0, 0].long()
        return image, mask


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[Any]]:
    """Images stacked (they must share a size: give a resolution otherwise), masks as a list
    (evaluation scores each at its own size)."""
    sizes = {tuple(img.shape[-2:]) for img, _ in batch}
    if len(sizes) > 1:
        a, b = sorted(sizes)[:2]
        raise GeosynthError(
            f"images of sizes {a[1]}x{a[0]} and {b[1]}x{b[0]} in one batch; give `resolution` "
            "to resize them to one size"
        )
    (h, w) = sizes.pop()
    if h % 32 or w % 32:
        raise GeosynthError(
            f"images of {w}x{h} px: the model needs sides that are multiples of 32; give "
            "`resolution` (e.g. 256), or tile the scenes to such a size"
        )
    return torch.stack([img for img, _ in batch]), [m for _, m in batch]
