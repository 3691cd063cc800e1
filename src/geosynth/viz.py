"""Image grids for reports: rows of images with a label at the left of each row."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont


def image_grid(
    rows: Sequence[Sequence[Image.Image]],
    labels: Sequence[str] | None = None,
    *,
    cell: int = 64,
    pad: int = 2,
    label_width: int = 110,
) -> Image.Image:
    """One row per list of images (resized to ``cell`` px, nearest-neighbour so pixels stay
    visible), labelled on the left when ``labels`` is given. The label column is
    ``label_width`` px, or wider when a label needs it: labels are never cut."""
    font = ImageFont.load_default()
    ncols = max((len(r) for r in rows), default=0)
    left = 0
    if labels:
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        needed = max((probe.textlength(str(t), font=font) for t in labels), default=0.0)
        left = max(label_width, math.ceil(needed) + 8)
    width = left + ncols * (cell + pad) + pad
    height = len(rows) * (cell + pad) + pad
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for r, images in enumerate(rows):
        y = pad + r * (cell + pad)
        if labels:
            draw.text((4, y + cell // 2 - 6), str(labels[r]), fill=(0, 0, 0), font=font)
        for c, img in enumerate(images):
            tile = img.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
            grid.paste(tile, (left + pad + c * (cell + pad), y))
    return grid
