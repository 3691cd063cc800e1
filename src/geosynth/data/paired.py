"""Paired data: an image dataset with one semantic (land-cover) map per image (seed 004).

Where the maps are:

* a ``map_file`` column in the dataset's ``metadata.jsonl`` (relative to the dataset root), or
* a map folder that mirrors the image tree: the map of ``root/<class>/x.jpg`` is
  ``MAPS/<class>/x.jpg`` or ``MAPS/<class>/x.png`` (the "same names" convention of pix2pix-style
  datasets).

Maps are class-index images (PNG mode ``L``, ``P`` or ``I``: the pixel value is the class
index) or RGB renderings whose colours are those of a legend. The legend, ``legend.json``, names
the classes and their colours in index order::

    {"classes": [{"name": "water", "color": [28, 62, 112]}, ...]}

It is read from an explicit path, else from the map folder, else from the dataset root. A map
must have exactly the size of its image (a map at another size would silently misalign).
Class and K-shot filters apply to the images first; maps follow their images, so they apply to
pairs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from geosynth.artifacts import file_digest
from geosynth.artifacts.jsontext import json_text
from geosynth.data.dataset import ImageDataset, Sample
from geosynth.data.folder import METADATA_NAME
from geosynth.errors import GeosynthError

LEGEND_NAME = "legend.json"
MAP_COLUMN = "map_file"
#: An RGB map pixel belongs to the nearest legend colour if it is at most this far (Euclidean,
#: 0..255 scale): lossless renderings match exactly; the margin absorbs mild resampling or
#: compression, while a colour that is no legend class at all is still rejected.
RGB_TOLERANCE = 24.0


@dataclass(frozen=True)
class Legend:
    """Map classes in index order, with the colours of their renderings."""

    names: list[str]
    colors: list[tuple[int, int, int]]

    def __len__(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": [
                {"name": n, "color": list(c)} for n, c in zip(self.names, self.colors, strict=True)
            ]
        }

    @staticmethod
    def from_dict(data: Any, where: str) -> Legend:
        try:
            rows = data["classes"]
            names = [str(r["name"]) for r in rows]
            colors = [tuple(int(v) for v in r["color"]) for r in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise GeosynthError(
                f'{where}: expected {{"classes": [{{"name": ..., "color": [r, g, b]}}, ...]}} '
                f"({type(exc).__name__}: {exc})"
            ) from None
        if not names or any(len(c) != 3 for c in colors):
            raise GeosynthError(f"{where}: needs at least one class, each with an [r, g, b] colour")
        if len(set(names)) != len(names):
            raise GeosynthError(f"{where}: class names repeat")
        return Legend(names, [(c[0], c[1], c[2]) for c in colors])

    @staticmethod
    def read(path: Path) -> Legend:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise GeosynthError(f"{path}: no such legend file") from None
        except ValueError as exc:
            raise GeosynthError(f"{path}: not JSON ({exc})") from None
        return Legend.from_dict(data, str(path))

    def write(self, path: Path) -> None:
        path.write_text(json_text(self.to_dict(), indent=2) + "\n")

    def render(self, classes: np.ndarray) -> Image.Image:
        """An RGB picture of a class-index map (for contact sheets and inspection)."""
        palette = np.array(self.colors, np.uint8)
        return Image.fromarray(palette[classes], "RGB")


def find_legend(*candidates: Path | None, arg: str = "map_legend") -> Legend:
    """The first candidate that is a legend file, or a ``legend.json`` inside a candidate folder."""
    for c in candidates:
        if c is None:
            continue
        if c.is_file():
            return Legend.read(c)
        if (c / LEGEND_NAME).is_file():
            return Legend.read(c / LEGEND_NAME)
    where = ", ".join(str(c) for c in candidates if c is not None)
    raise GeosynthError(f"no {LEGEND_NAME} found (looked in {where}); give `{arg}`")


def read_map(path: Path, legend: Legend) -> np.ndarray:
    """A map file as an H x W int64 array of class indices into ``legend``."""
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise GeosynthError(f"{path}: map file does not exist") from None
    except Exception as exc:  # PIL raises many types for broken files
        raise GeosynthError(f"{path}: cannot read map ({exc})") from None
    if img.mode in ("L", "P", "I", "I;16"):
        classes = np.asarray(img).astype(np.int64)
        bad = classes[(classes < 0) | (classes >= len(legend))]
        if bad.size:
            raise GeosynthError(
                f"{path}: map class {int(bad.flat[0])} is not in the legend "
                f"({len(legend)} classes: {', '.join(legend.names)})"
            )
        return classes
    rgb = np.asarray(img.convert("RGB"), np.float32)
    palette = np.array(legend.colors, np.float32)
    d = np.linalg.norm(rgb[:, :, None, :] - palette[None, None], axis=-1)
    nearest = d.argmin(-1)
    far = d.min(-1) > RGB_TOLERANCE
    if far.any():
        y, x = np.argwhere(far)[0]
        colour = tuple(int(v) for v in rgb[y, x])
        raise GeosynthError(
            f"{path}: colour {colour} at x={x}, y={y} is not a legend class colour "
            f"(legend: {', '.join(f'{n} {tuple(c)}' for n, c in zip(legend.names, legend.colors, strict=True))})"
        )
    return nearest.astype(np.int64)


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
    """The class covering most pixels (the "landscape type" of seed 004's per-type FID)."""
    counts = np.bincount(np.asarray(classes).reshape(-1), minlength=n)
    return int(counts.argmax())


@dataclass
class PairedDataset(ImageDataset):
    """An :class:`ImageDataset` whose every sample has a map (``maps[key]``) and a legend.
    Subsets and class selections keep the pairing (they copy these fields)."""

    maps: dict[str, Path] = field(default_factory=dict)
    legend: Legend | None = None

    def map_path(self, index: int) -> Path:
        return self.maps[self.samples[index].key]

    def map(self, index: int) -> np.ndarray:
        """Class indices of sample ``index``'s map, checked against its image's size."""
        assert self.legend is not None
        classes = read_map(self.map_path(index), self.legend)
        size = self.image(index).size
        if classes.shape[::-1] != size:
            raise GeosynthError(
                f"{self.map_path(index)}: map is {classes.shape[1]}x{classes.shape[0]} but its "
                f"image {self.describe(self.samples[index])} is {size[0]}x{size[1]}"
            )
        return classes


def _metadata_maps(root: Path) -> dict[str, str] | None:
    """``file_name -> map_file`` from metadata.jsonl, or None when there is no such column."""
    meta = root / METADATA_NAME
    if not meta.is_file():
        return None
    out: dict[str, str] = {}
    for line in meta.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if MAP_COLUMN in row:
            out[str(row["file_name"])] = str(row[MAP_COLUMN])
    return out or None


def has_maps(source: str | Path, split: str | None = None) -> bool:
    """Whether a dataset folder lists maps in its metadata (a ``map_file`` column)."""
    root = Path(source) / split if split else Path(source)
    try:
        return _metadata_maps(root) is not None
    except (OSError, ValueError):
        return False


def attach_maps(
    ds: ImageDataset,
    maps: Path | None = None,
    legend: Path | None = None,
    *,
    arg: str = "maps",
) -> PairedDataset:
    """Pair every (already filtered) sample of ``ds`` with its map; a missing map is an error
    naming the image."""
    if ds.kind != "imagefolder":
        raise GeosynthError(f"{ds.source}: paired data must be an image folder (got {ds.kind})")
    root = Path(ds.source)
    column = None if maps is not None else _metadata_maps(root)
    if maps is None and column is None:
        raise GeosynthError(
            f"`{arg}`: {root} has no '{MAP_COLUMN}' column in {METADATA_NAME}; give the map folder"
        )
    if maps is not None and not maps.is_dir():
        raise GeosynthError(f"{arg}={str(maps)!r}: no such directory")
    found: dict[str, Path] = {}
    for s in ds.samples:
        if column is not None:
            rel = column.get(s.key)
            candidates = [root / rel] if rel is not None else []
        else:
            assert maps is not None
            rel_path = Path(s.key)
            candidates = [maps / rel_path, maps / rel_path.with_suffix(".png")]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            where = candidates[0] if candidates else f"'{MAP_COLUMN}' of {s.key}"
            raise GeosynthError(f"{ds.describe(s)}: no map for this image (expected {where})")
        found[s.key] = hit
    leg = find_legend(legend, maps, root, arg="map_legend")
    img_digest = ds.digest

    def digest(sample: Sample) -> str:
        return f"{img_digest(sample)}+{file_digest(found[sample.key])}"

    # Every field of ``ds`` (raster reader, radiometry, ...) carries over; maps are added.
    fields = {f.name: getattr(ds, f.name) for f in dataclasses.fields(ds) if f.init}
    fields.update(digest=digest, maps=found, legend=leg)
    return PairedDataset(**fields)


def read_map_folder(root: Path, legend: Path | None = None, *, arg: str = "maps") -> PairedDataset:
    """A folder of maps on their own (what ``generate`` conditions on): every image file under
    ``root`` (recursively) is a map; a ``metadata.jsonl`` with ``map_file`` lists them instead.
    Samples are keyed by relative path; there are no images, so ``image()`` is not available."""
    from geosynth.data.folder import IMAGE_SUFFIXES

    if not root.is_dir():
        raise GeosynthError(f"{arg}={str(root)!r}: no such directory")
    column = _metadata_maps(root)
    if column is not None:
        rels = sorted(set(column.values()))
    else:
        rels = sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
    if not rels:
        raise GeosynthError(f"{arg}={str(root)!r}: no map images found")
    leg = find_legend(legend, root, arg="map_legend")
    samples = [Sample(rel, 0, root / rel) for rel in rels]

    def no_image(sample: Sample) -> Image.Image:
        raise GeosynthError(f"{sample.ref}: a map folder holds no images")

    return PairedDataset(
        source=str(root),
        kind="maps",
        class_names=["map"],
        samples=samples,
        decoder=no_image,
        digest=lambda s: file_digest(Path(s.ref)),
        maps={s.key: Path(s.ref) for s in samples},
        legend=leg,
    )
