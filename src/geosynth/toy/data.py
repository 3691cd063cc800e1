"""A procedural toy satellite dataset: a few land-cover classes with their own colour statistics and
texture, per-image variation, deterministic by seed.

It stands in for EuroSAT-like data in the demo and the tests: small (32 to 64 px), instant to make,
and with the property the science depends on, namely that classes differ in their low-frequency
colour (the signal leak) as well as in texture.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from geosynth.artifacts import Provenance
from geosynth.artifacts.jsontext import json_text
from geosynth.errors import GeosynthError

#: class name -> mean RGB (0..255). Water and forest are dark, desert and snow bright: the spread of
#: per-class means that leak-aligned noise is about.
TOY_CLASSES: dict[str, tuple[float, float, float]] = {
    "water": (28.0, 62.0, 112.0),
    "forest": (38.0, 84.0, 42.0),
    "desert": (212.0, 172.0, 112.0),
    "cropland": (128.0, 152.0, 72.0),
    "urban": (132.0, 128.0, 132.0),
    "snow": (228.0, 234.0, 242.0),
}
DEFAULT_TOY_CLASSES = ("water", "forest", "desert", "cropland", "urban")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-ish noise with features about ``size / cells`` pixels wide."""
    coarse = torch.from_numpy(rng.standard_normal((1, 1, cells, cells)).astype(np.float32))
    up = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return up[0, 0].numpy()


def _texture(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """An H x W x 3 offset (0..255 scale) that gives each class its look."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.zeros((size, size, 3), np.float32)
    if name == "water":
        out += 6.0 * _smooth_noise(rng, size, 3)[..., None]
        theta = rng.uniform(0, np.pi)
        ripple = np.sin(40 * (xx * np.cos(theta) + yy * np.sin(theta)) + rng.uniform(0, 6.28))
        out += 3.0 * ripple[..., None]
    elif name == "forest":
        canopy = _smooth_noise(rng, size, max(4, size // 3))
        out += 22.0 * canopy[..., None] * np.array([0.6, 1.0, 0.5])
    elif name == "desert":
        theta = rng.uniform(0, np.pi)
        freq = rng.uniform(8, 16)
        warp = 0.3 * _smooth_noise(rng, size, 4)
        dunes = np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)) + warp)
        out += 24.0 * dunes[..., None] * np.array([1.0, 0.9, 0.7])
    elif name == "cropland":
        n = int(rng.integers(2, 4))
        cuts_x = np.sort(rng.uniform(0.2, 0.8, n - 1))
        cuts_y = np.sort(rng.uniform(0.2, 0.8, n - 1))
        fx, fy = np.searchsorted(cuts_x, xx), np.searchsorted(cuts_y, yy)
        palette = rng.normal(0, 28, size=(n * n, 3)) * np.array([1.0, 0.8, 1.2])
        out += palette[fx * n + fy]
        rows = np.sin(60 * (xx if rng.random() < 0.5 else yy))
        out += 6.0 * rows[..., None]
    elif name == "urban":
        block = max(3, size // int(rng.integers(4, 7)))
        ys, xs = np.arange(size) // block, np.arange(size) // block
        heights = rng.normal(0, 35, size=(ys.max() + 1, xs.max() + 1))
        out += heights[ys][:, xs][..., None]
        road = ((np.arange(size) % block) == 0).astype(np.float32)
        out[road.astype(bool), :, :] = -60.0
        out[:, road.astype(bool), :] = -60.0
    elif name == "snow":
        out += 8.0 * _smooth_noise(rng, size, 5)[..., None]
    else:
        raise GeosynthError(f"unknown toy class '{name}' (known: {', '.join(TOY_CLASSES)})")
    return out


def toy_image(class_name: str, index: int, size: int = 32, seed: int = 0) -> Image.Image:
    """Image ``index`` of a toy class; the same arguments always give the same pixels."""
    if class_name not in TOY_CLASSES:
        raise GeosynthError(f"unknown toy class '{class_name}' (known: {', '.join(TOY_CLASSES)})")
    class_id = list(TOY_CLASSES).index(class_name)
    rng = np.random.default_rng([seed, class_id, index])
    mean: np.ndarray = np.array(TOY_CLASSES[class_name], np.float32)
    # Per-image variation: overall brightness, a colour cast, and sensor noise.
    mean = mean * rng.normal(1.0, 0.07) + rng.normal(0.0, 6.0, 3)
    img = mean + _texture(class_name, rng, size) + rng.normal(0.0, 4.0, (size, size, 3))
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")


def resolve_toy_classes(classes: Sequence[str] | int | None) -> list[str]:
    """Class list from names, a count (the first N of :data:`TOY_CLASSES`), or the default five."""
    if classes is None:
        return list(DEFAULT_TOY_CLASSES)
    if isinstance(classes, int):
        if not 1 <= classes <= len(TOY_CLASSES):
            raise GeosynthError(f"classes={classes}: toy data has 1 to {len(TOY_CLASSES)} classes")
        return list(TOY_CLASSES)[:classes]
    for c in classes:
        if c not in TOY_CLASSES:
            raise GeosynthError(
                f"`classes`: unknown toy class '{c}' (known: {', '.join(TOY_CLASSES)})"
            )
    return list(classes)


def make_toy_dataset(
    out: str | os.PathLike[str],
    *,
    per_class: int = 16,
    size: int = 32,
    seed: int = 0,
    classes: Sequence[str] | int | None = None,
    provenance: Provenance | None = None,
) -> Path:
    """Write a toy imagefolder (``out/<class>/<id>.png`` + ``metadata.jsonl``)."""
    from geosynth.data.writer import ImageFolderWriter

    names = resolve_toy_classes(classes)
    if per_class < 1 or size < 8:
        raise GeosynthError(
            f"per_class={per_class}, size={size}: toy data needs per_class >= 1 and size >= 8"
        )
    prov = provenance or Provenance.start("toy data", seeds={"seed": seed})
    with ImageFolderWriter(out, names, prov) as w:
        for label, name in enumerate(names):
            for i in range(per_class):
                w.add(toy_image(name, i, size, seed), label, toy_seed=seed, toy_index=i)
    return Path(out)


def toy_hf_dataset(
    *, per_class: int = 8, size: int = 32, seed: int = 0, classes: Sequence[str] | int | None = None
):  # -> datasets.Dataset (imported lazily: datasets is slow to import)
    """The same images as an in-memory ``datasets.Dataset`` with a ClassLabel ``label`` column."""
    import datasets

    names = resolve_toy_classes(classes)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=names)}
    )
    rows: dict[str, list[Any]] = {"image": [], "label": []}
    for label, name in enumerate(names):
        for i in range(per_class):
            rows["image"].append(toy_image(name, i, size, seed))
            rows["label"].append(label)
    return datasets.Dataset.from_dict(rows, features=features)


def make_toy_shards(
    out: str | os.PathLike[str],
    *,
    classes: Sequence[str] | int | None = None,
    n_shards: int = 2,
    per_shard: int = 32,
    size: int = 32,
    seed: int = 0,
    corrupt: Sequence[tuple[int, int]] = (),
) -> Path:
    """Webdataset shards in img2dataset's layout (``00000.tar`` with ``<key>.jpg``, ``.txt``,
    ``.json``): a stand-in for LAION shards. ``corrupt`` lists (shard, index) samples whose JPEG
    bytes are broken on purpose, to exercise skipping."""
    import io
    import tarfile

    from geosynth.artifacts import atomic_path

    names = resolve_toy_classes(classes)

    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        for s in range(n_shards):
            with tarfile.open(tmp / f"{s:05d}.tar", "w") as tar:
                for i in range(per_shard):
                    key = f"{s:05d}{i:04d}"
                    name = names[(s * per_shard + i) % len(names)]
                    buf = io.BytesIO()
                    toy_image(name, s * per_shard + i, size, seed).save(buf, format="JPEG")
                    data = b"\xff\xd8 broken" if (s, i) in set(corrupt) else buf.getvalue()
                    add(tar, f"{key}.jpg", data)
                    add(tar, f"{key}.txt", f"a photo of {name}".encode())
                    add(tar, f"{key}.json", json_text({"key": key, "caption": name}).encode())
    return Path(out)
