"""Procedural paired toy data (seed 004 in miniature): land-cover maps and aerial-looking images
rendered from them.

Each map is the argmax of one smooth random field per class, with one class favoured so that
every class dominates some maps; the image paints every pixel with the texture and colour of its
map class (the toy classes of :mod:`geosynth.toy.data`), so an image follows its map exactly and
a model that ignores the map cannot place its colours.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from geosynth.artifacts import Provenance
from geosynth.data.paired import LEGEND_NAME, MAP_COLUMN, Legend, dominant_class
from geosynth.errors import GeosynthError
from geosynth.toy.data import TOY_CLASSES, _smooth_noise, resolve_toy_classes, toy_image


def toy_legend(classes: Sequence[str]) -> Legend:
    """Legend of toy map classes, coloured with their mean image colours."""
    return Legend(list(classes), [tuple(int(v) for v in TOY_CLASSES[c]) for c in classes])  # type: ignore[misc]


def toy_map(index: int, classes: Sequence[str], size: int = 32, seed: int = 0) -> np.ndarray:
    """Map ``index``: an H x W array of indices into ``classes``; class ``index % K`` is favoured."""
    k = len(classes)
    rng = np.random.default_rng([seed, 4004, index])
    cells = max(2, size // 10)
    fields = np.stack([_smooth_noise(rng, size, cells) for _ in range(k)])
    fields[index % k] += 0.7
    return fields.argmax(0).astype(np.int64)


def toy_pair(
    index: int, classes: Sequence[str], size: int = 32, seed: int = 0
) -> tuple[Image.Image, np.ndarray]:
    """(image, map) number ``index``: each pixel takes the toy texture of its map class."""
    classes_map = toy_map(index, classes, size, seed)
    layers = np.stack(
        [np.asarray(toy_image(c, 10_000 + index, size, seed), np.uint8) for c in classes]
    )
    img = np.take_along_axis(layers, classes_map[None, :, :, None].repeat(3, -1), 0)[0]
    return Image.fromarray(img, "RGB"), classes_map


def make_toy_paired_dataset(
    out: str | os.PathLike[str],
    *,
    n: int = 64,
    size: int = 32,
    seed: int = 0,
    classes: Sequence[str] | int | None = None,
    provenance: Provenance | None = None,
) -> Path:
    """Write ``n`` pairs as an imagefolder labelled by dominant map class (the landscape type):
    ``out/<class>/<id>.png`` images, ``out/maps/<class>/<id>.png`` class-index maps (mode L),
    ``map_file`` in ``metadata.jsonl`` and ``legend.json``."""
    from geosynth.data.writer import ImageFolderWriter

    names = resolve_toy_classes(classes)
    if n < 1 or size < 8:
        raise GeosynthError(f"n={n}, size={size}: paired toy data needs n >= 1 and size >= 8")
    prov = provenance or Provenance.start("toy data (paired)", seeds={"seed": seed})
    legend = toy_legend(names)
    with ImageFolderWriter(out, names, prov) as w:
        assert w.tmp is not None
        for i in range(n):
            img, classes_map = toy_pair(i, names, size, seed)
            label = dominant_class(classes_map, len(names))
            rel = f"maps/{w.dirnames[label]}/{i:06d}.png"
            (w.tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(classes_map.astype(np.uint8), "L").save(w.tmp / rel, format="PNG")
            w.add(img, label, image_id=f"{i:06d}", **{MAP_COLUMN: rel}, toy_seed=seed, toy_index=i)
        legend.write(w.tmp / LEGEND_NAME)
    return Path(out)
