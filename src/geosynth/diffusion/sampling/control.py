"""ControlNet conditioning images: Canny edges of reference images (seed 001) or control images
used as given (e.g. semantic maps), chosen per generated image deterministically. Seed 004's
map-conditioned UNet is :mod:`geosynth.diffusion.mapcond`, not a ControlNet."""

from __future__ import annotations

import numpy as np
from PIL import Image

from geosynth.data.dataset import ImageDataset
from geosynth.errors import GeosynthError
from geosynth.extras import require

CONTROL_MODES = ("canny", "image")


def canny_edges(image: Image.Image, sigma: float = 1.0) -> Image.Image:
    """Canny edges of the grey image as a white-on-black RGB image (the ControlNet-canny input)."""
    canny = require("skimage.feature", "control='canny'").canny
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    edges = canny(grey, sigma=sigma)
    return Image.fromarray((edges * 255).astype(np.uint8), "L").convert("RGB")


def native_canny(image: Image.Image, size: int, sigma: float = 1.0) -> Image.Image:
    """Canny edges found at the image's own resolution, then resized to ``size`` x ``size``.

    Upsampling first (a 64 px EuroSAT chip to 512 px) smooths away the gradients Canny looks for
    and leaves nearly empty maps; detecting first keeps every edge of the source. Nearest-neighbour
    resizing keeps the map binary (white on black, as ControlNet-canny was trained on)."""
    edges = canny_edges(image, sigma=sigma)
    if edges.size == (size, size):
        return edges
    return edges.resize((size, size), Image.Resampling.NEAREST)


class ControlSource:
    """Control image ``index`` of a class: its (index mod n)-th reference image of that class,
    as Canny edges (found at the image's native size, then resized) or as given (resized), at the
    generation size."""

    def __init__(self, ds: ImageDataset, mode: str, size: int) -> None:
        if mode not in CONTROL_MODES:
            raise GeosynthError(f"control={mode!r}: expected one of {', '.join(CONTROL_MODES)}")
        if mode == "canny":
            require("skimage.feature", "control='canny'")  # before any model loads
        self.ds, self.mode, self.size = ds, mode, size
        self.by_class: dict[str, list[int]] = {c: [] for c in ds.class_names}
        for i, s in enumerate(ds.samples):
            self.by_class[ds.class_names[s.label]].append(i)

    def check_classes(self, classes: list[str]) -> None:
        missing = [c for c in classes if not self.by_class.get(c)]
        if missing:
            raise GeosynthError(
                f"control_images={str(self.ds.source)!r}: no control image for class '{missing[0]}'"
            )

    def describe(self, class_name: str, index: int) -> str:
        members = self.by_class[class_name]
        return self.ds.describe(self.ds.samples[members[index % len(members)]])

    def image(self, class_name: str, index: int) -> Image.Image:
        members = self.by_class[class_name]
        img = self.ds.image(members[index % len(members)])
        if self.mode == "canny":
            return native_canny(img, self.size)
        return img.resize((self.size, self.size), Image.Resampling.BICUBIC)
