"""``PairedDataset``: an :class:`ImageDataset` whose every sample has a mask (a semantic map, in
seed 004's words) and a :class:`~geosynth.data.legend.Legend` that reads it.

Masks are files (``maps[key]``) or, for Hugging Face datasets, cells of a column
(``mask_loader``). Subsets, class selections and K-shot draws keep the pairing (they copy these
fields). A mask must have exactly its image's size: a mask at another size would silently
misalign, so it is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geosynth.data.dataset import ImageDataset, Sample
from geosynth.data.legend import IGNORE, Legend
from geosynth.data.masks import DecodedMask, classify, decode_mask
from geosynth.errors import GeosynthError


@dataclass
class PairedDataset(ImageDataset):
    """Images with masks. ``kind == "maps"``: a folder of masks alone (no images)."""

    maps: dict[str, Path] = field(default_factory=dict)
    legend: Legend | None = None
    # Masks that are not files (Hugging Face cells): sample -> the mask file's bytes.
    mask_loader: Callable[[Sample], bytes] | None = None

    def describe(self, sample: Sample) -> str:
        if isinstance(sample.ref, Path):
            return str(sample.ref)
        return super().describe(sample)

    def map_path(self, index: int) -> Path:
        key = self.samples[index].key
        if key not in self.maps:
            raise GeosynthError(f"{self.source}[{key}]: its mask is not a file")
        return self.maps[key]

    def mask_name(self, index: int) -> str:
        """Where sample ``index``'s mask is, for messages."""
        key = self.samples[index].key
        return str(self.maps[key]) if key in self.maps else f"{self.source}[{key}] mask"

    def decoded_mask(self, index: int) -> DecodedMask:
        """The mask as stored (values or colours), not yet read through the legend."""
        sample = self.samples[index]
        if self.mask_loader is not None and sample.key not in self.maps:
            return decode_mask(self.mask_loader(sample), self.mask_name(index))
        return decode_mask(self.map_path(index))

    def require_legend(self) -> Legend:
        if self.legend is None:
            raise GeosynthError(
                f"{self.source}: its masks need a legend (no legend.json found); give `map_legend`"
            )
        return self.legend

    def map(self, index: int) -> np.ndarray:
        """Class indices of sample ``index``'s mask (H x W int64, -1 ignored), checked against
        the legend and against its image's size."""
        legend = self.require_legend()
        mask = self.decoded_mask(index)
        if self.kind != "maps":
            self.check_size(index, mask.shape)
        return classify(mask, legend, self.mask_name(index))

    def image_size(self, index: int) -> tuple[int, int]:
        """(width, height) of sample ``index``'s image, from its header where possible."""
        sample = self.samples[index]
        try:
            img = self.decoder(sample)
            return img.size
        except Exception:  # formats PIL cannot open (13 bands, some floats): ask rasterio
            r = self.raster(index)
            return (r.width, r.height)

    def check_size(self, index: int, shape: tuple[int, int]) -> None:
        w, h = self.image_size(index)
        if (shape[1], shape[0]) != (w, h):
            raise GeosynthError(
                f"{self.mask_name(index)}: mask is {shape[1]}x{shape[0]} but its image "
                f"{self.describe(self.samples[index])} is {w}x{h}; an image and its mask must "
                "have the same size"
            )

    def with_legend(self, legend: Legend | None) -> PairedDataset:
        return replace(self, legend=legend)


def resize_map(classes: np.ndarray, size: int) -> torch.Tensor:
    """Resize (nearest, shorter side) and centre-crop a class map to ``size``: the geometry of
    :func:`geosynth.diffusion.latents.images_to_tensor`, so maps stay aligned with images."""
    img = Image.fromarray(classes.astype(np.int32), "I")
    w, h = img.size
    scale = size / min(w, h)
    if scale != 1:
        img = img.resize(
            (max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.NEAREST
        )
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(img).astype(np.int64))


def dominant_class(classes: np.ndarray | torch.Tensor, n: int) -> int:
    """The class covering most pixels (the "landscape type" of seed 004's per-type FID);
    ignored pixels do not count."""
    flat = np.asarray(classes).reshape(-1)
    counts = np.bincount(flat[(flat >= 0) & (flat < n)], minlength=n)
    return int(counts.argmax())


__all__ = ["IGNORE", "PairedDataset", "dominant_class", "resize_map"]
