"""Multi-band model input: which bands of native data a network sees, and how each is scaled.

Classifiers and feature extractors built on timm take any number of input channels
(``in_chans``). For native data (Sentinel-2's 13 uint16 bands, SAR backscatter, 16-bit chips)
every selected band is standardised on its own, ``(value - mean_b) / std_b``, with mean and std
of band b computed once over every valid pixel of the TRAINING set, in the data's own units.
That statistic is part of the model (recorded in its spec and report, reused unchanged on VAL,
TEST and at inference), so a model never sees data scaled differently from its training data.
NaN and nodata pixels become 0 after standardisation (the band mean).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from geosynth.data.dataset import ImageDataset
from geosynth.data.raster import Raster
from geosynth.errors import GeosynthError
from geosynth.progress import Track, no_track


@dataclass(frozen=True)
class BandInput:
    """The bands a model reads (0-based indices into each file's bands, in the model's channel
    order) and their standardisation (native units, from the training set ``stats_from``)."""

    bands: tuple[int, ...]
    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    count: int  # bands in every file the statistics came from
    dtype: str
    stats_from: str
    pixels: int

    @property
    def channels(self) -> int:
        return len(self.bands)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BandInput:
        return cls(
            **{
                **d,
                "bands": tuple(d["bands"]),
                "names": tuple(d["names"]),
                "mean": tuple(d["mean"]),
                "std": tuple(d["std"]),
            }
        )

    def matched(self, ds: ImageDataset, what: str = "bands") -> BandInput:
        """The same bands and standardisation, indexed in ``ds``'s files: by name where the
        files (or their layout, :mod:`.bandnames`) name their bands, else by index. One model
        input for two sets whose files hold different bands, e.g. a generated B04, B03, B02 set
        and the 13-band EuroSAT-MS it was trained on."""
        from geosynth.data.bandnames import named

        if len(ds) == 0:
            raise GeosynthError(f"{ds.source}: no images")
        first = named(ds.raster(0))
        by_name = [n != f"band{i}" for i, n in zip(self.bands, self.names, strict=True)]
        idx = tuple(
            first.band_index(n if by else i, what=what)
            for i, n, by in zip(self.bands, self.names, by_name, strict=True)
        )
        return replace(self, bands=idx, count=first.count, dtype=first.dtype)

    def check(self, raster: Raster, where: str) -> None:
        """Refuse a file whose bands differ from the training data's."""
        if raster.count != self.count:
            raise GeosynthError(
                f"{where}: {raster.count} band(s), but the model was set up on {self.count}-band "
                f"data ({self.stats_from}); every split must hold the same bands"
            )

    def tensor(self, raster: Raster, where: str = "image") -> torch.Tensor:
        """C x H x W float32: the selected bands, standardised; invalid pixels 0."""
        self.check(raster, where)
        a = raster.array[list(self.bands)].astype(np.float32)
        valid = raster.valid_mask()[list(self.bands)]
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        out = np.where(valid, (a - mean) / std, np.float32(0))
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def is_native(ds: ImageDataset) -> bool:
    """True when the first image is not 8-bit (16-bit, integer or float data): such data goes to
    models through :class:`BandInput`, never through an 8-bit conversion."""
    return len(ds) > 0 and ds.raster(0).array.dtype != np.uint8


def parse_bands(text: str, raster: Raster, *, what: str = "bands") -> tuple[int, ...]:
    """``all``, or comma-separated 0-based indices and/or names the file gives
    (``B04,B03,B02``), into indices."""
    if text.strip().lower() == "all":
        return tuple(range(raster.count))
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise GeosynthError(f"{what}={text!r}: expected 'all' or a comma-separated list")
    idx = tuple(raster.band_index(t, what=what) for t in items)
    if len(set(idx)) != len(idx):
        raise GeosynthError(f"{what}={text!r}: a band is listed twice")
    return idx


def band_input(
    ds: ImageDataset,
    bands: str = "all",
    *,
    what: str = "bands",
    track: Track = no_track,
) -> BandInput:
    """Per-band mean and std (float64 sums over every valid pixel) of ``ds``, the training set,
    for the bands ``bands`` selects."""
    if len(ds) == 0:
        raise GeosynthError(f"{ds.source}: no images to compute band statistics on")
    from geosynth.data.bandnames import band_label, named

    first = named(ds.raster(0))  # EuroSAT-MS files name no bands: their layout does
    idx = parse_bands(bands, first, what=what)
    names = tuple(band_label(first.band_names, i) for i in idx)
    s1 = np.zeros(len(idx))
    s2 = np.zeros(len(idx))
    n = np.zeros(len(idx))
    for i in track(range(len(ds)), len(ds), "band statistics"):
        r = ds.raster(i)
        where = ds.describe(ds.samples[i])
        if r.count != first.count or r.array.dtype != first.array.dtype:
            raise GeosynthError(
                f"{where}: {r.count} band(s) of {r.dtype}, but {ds.describe(ds.samples[0])} has "
                f"{first.count} of {first.dtype}; a dataset must hold one kind of image"
            )
        a = r.array[list(idx)].astype(np.float64)
        valid = r.valid_mask()[list(idx)]
        s1 += np.where(valid, a, 0).sum(axis=(1, 2))
        s2 += np.where(valid, a * a, 0).sum(axis=(1, 2))
        n += valid.sum(axis=(1, 2))
    if (n == 0).any():
        bad = names[int(np.argmax(n == 0))]
        raise GeosynthError(f"{ds.source}: band {bad} has no valid pixel in any image")
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
    std = np.where(std > 0, std, 1.0)  # a constant band (e.g. empty cirrus) stays centred
    return BandInput(
        bands=idx,
        names=names,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        count=first.count,
        dtype=first.dtype,
        stats_from=f"{ds.source} ({len(ds)} images, fingerprint {ds.fingerprint()[:12]})",
        pixels=int(n.min()),
    )
