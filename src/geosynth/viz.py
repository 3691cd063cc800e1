"""Image grids for reports: rows of images with a label at the left of each row."""

from __future__ import annotations

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
    visible), labelled on the left when ``labels`` is given."""
    ncols = max((len(r) for r in rows), default=0)
    left = label_width if labels else 0
    width = left + ncols * (cell + pad) + pad
    height = len(rows) * (cell + pad) + pad
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for r, images in enumerate(rows):
        y = pad + r * (cell + pad)
        if labels:
            draw.text((4, y + cell // 2 - 6), labels[r][:18], fill=(0, 0, 0), font=font)
        for c, img in enumerate(images):
            tile = img.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
            grid.paste(tile, (left + pad + c * (cell + pad), y))
    return grid
