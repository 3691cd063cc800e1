"""Image grids label each row with its whole label, however long ("HerbaceousVegetation")."""

from __future__ import annotations

import numpy as np
from PIL import Image

from geosynth.viz import image_grid


def _ink(img: Image.Image, width: int) -> int:
    """Dark pixels in the first ``width`` columns (the label column)."""
    return int((np.asarray(img.convert("L"))[:, :width] < 128).sum())


def test_long_labels_are_not_cut() -> None:
    tile = Image.new("RGB", (8, 8), (200, 200, 200))
    full = image_grid([[tile]], ["HerbaceousVegetation"], label_width=40)
    cut = image_grid([[tile]], ["HerbaceousVegetati"], label_width=40)
    left = full.width - (64 + 2) - 2  # the label column
    assert left > 100  # wider than asked: the label needs it
    assert _ink(full, left) > _ink(cut, cut.width - 66 - 2)
    short = image_grid([[tile]], ["water"], label_width=110)
    assert short.width == 110 + 64 + 2 + 2  # a short label keeps the asked width
