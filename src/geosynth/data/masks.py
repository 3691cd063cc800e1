"""Mask files to class indices through a :class:`~geosynth.data.legend.Legend`.

A mask is decoded as it is stored (:func:`decode_mask`), then read through the legend
(:func:`classify`): every pixel becomes a class index, or :data:`IGNORE` (-1) for the legend's
ignore values and colours. A pixel the legend does not explain is an error naming the colour
(``#RRGGBB``) or value, the file, where it first occurs and how many pixels hold it.

How a file encodes classes:

* class-index masks: greyscale PNGs (modes ``1``, ``L``, ``I``, ``I;16``) and single-band
  GeoTIFFs; the pixel value is the class's ``value`` (default: its position in the legend);
* colour renderings: RGB(A) PNGs and 3- or 4-band 8-bit GeoTIFFs (alpha dropped);
* palette PNGs (mode ``P``): by their palette's colours (a colour rendering saved with a
  palette, as image editors write them), unless the palette agrees with the legend on every
  index the file uses (VOC-style index masks, whose palette only displays the indices), or the
  legend's ``encoding`` says which.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from geosynth.data.legend import Legend, hex_color
from geosynth.errors import GeosynthError

if TYPE_CHECKING:
    from PIL import Image

MaskSource = Path | bytes
_UNKNOWN = -2
#: PIL modes whose pixel values are class indices.
_INDEX_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "LA")


@dataclass
class DecodedMask:
    """A mask as stored: ``values`` (H x W integers: indices or palette indices) or ``rgb``
    (H x W x 3 uint8), and a palette (N x 3) for palette PNGs."""

    values: np.ndarray | None = None
    rgb: np.ndarray | None = None
    palette: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        a = self.values if self.values is not None else self.rgb
        assert a is not None
        return int(a.shape[0]), int(a.shape[1])


def _is_tiff(source: MaskSource, name: str) -> bool:
    if isinstance(source, bytes):
        return source[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    return Path(name).suffix.lower() in (".tif", ".tiff")


def decode_mask(source: MaskSource, name: str | None = None) -> DecodedMask:
    """Decode a mask file (or its bytes) without interpreting it."""
    name = name or str(source)
    if _is_tiff(source, name):
        from geosynth.data.raster import read_raster

        raster = (
            read_raster(source, name=name) if isinstance(source, bytes) else read_raster(source)
        )
        a = raster.array
        if a.shape[0] == 1 and a.dtype.kind in "iu":
            return DecodedMask(values=a[0].astype(np.int64))
        if a.shape[0] in (3, 4) and a.dtype == np.uint8:
            return DecodedMask(rgb=np.ascontiguousarray(a[:3].transpose(1, 2, 0)))
        raise GeosynthError(
            f"{name}: a mask must be one integer band (class values) or 3-4 bands of uint8 "
            f"(colours); this one has {a.shape[0]} band(s) of {a.dtype}"
        )
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        img.load()
    except FileNotFoundError:
        raise GeosynthError(f"{name}: mask file does not exist") from None
    except Exception as exc:  # PIL raises many types for broken files
        raise GeosynthError(f"{name}: cannot read mask ({exc})") from None
    if img.mode == "P":
        pal = np.array(img.getpalette() or [], np.int64).reshape(-1, 3)
        return DecodedMask(values=np.asarray(img).astype(np.int64), palette=pal)
    if img.mode in _INDEX_MODES:
        band = img.getchannel(0) if img.mode == "LA" else img
        return DecodedMask(values=np.asarray(band).astype(np.int64))
    return DecodedMask(rgb=np.asarray(img.convert("RGB")))


def _palette_as_colors(mask: DecodedMask, legend: Legend) -> bool:
    """Whether a palette PNG is read by its colours (see the module docstring)."""
    if legend.encoding != "auto":
        return legend.encoding == "color"
    assert mask.values is not None and mask.palette is not None
    used = np.unique(mask.values)
    values = legend.class_values
    return any(
        tuple(int(v) for v in mask.palette[u]) != legend.colors[values.index(u)]
        for u in used.tolist()
        if u in values and u < len(mask.palette)
    )


def _codes(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 -> H x W int64 ``r << 16 | g << 8 | b``."""
    a = rgb.astype(np.int64)
    return (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]


def _rgb_of(code: int) -> tuple[int, int, int]:
    return (code >> 16, (code >> 8) & 255, code & 255)


def classify(mask: DecodedMask, legend: Legend, where: str) -> np.ndarray:
    """H x W int64 class indices into ``legend`` (-1: ignore); unknown pixels are an error."""
    if mask.values is not None and mask.palette is not None and _palette_as_colors(mask, legend):
        pal = np.zeros((max(256, len(mask.palette)), 3), np.uint8)
        pal[: len(mask.palette)] = mask.palette
        rgb = pal[np.clip(mask.values, 0, len(pal) - 1)]
        return _classify_colors(_codes(rgb), legend, where)
    if mask.values is not None:
        if legend.encoding == "color":
            grey = mask.values.clip(0, 255)
            return _classify_colors((grey << 16) | (grey << 8) | grey, legend, where)
        return _classify_values(mask.values, legend, where, mask.palette)
    assert mask.rgb is not None
    if legend.encoding == "index":
        raise GeosynthError(
            f"{where}: a colour mask, but the legend {legend.where} says encoding 'index'"
        )
    return _classify_colors(_codes(mask.rgb), legend, where)


def _classify_values(
    values: np.ndarray, legend: Legend, where: str, palette: np.ndarray | None
) -> np.ndarray:
    table = legend.value_table()
    out = np.full(values.shape, _UNKNOWN, np.int64)
    lo, hi = int(values.min()), int(values.max())
    if lo >= 0 and hi < 1 << 20:
        lut = np.full(hi + 1, _UNKNOWN, np.int64)
        for v, k in table.items():
            if 0 <= v <= hi:
                lut[v] = k
        out = lut[values]
    else:
        for v, k in table.items():
            out[values == v] = k
    unknown = out == _UNKNOWN
    if unknown.any():
        first = int(np.argmax(unknown.reshape(-1)))
        y, x = divmod(first, values.shape[1])
        v = int(values[y, x])
        n = int((values == v).sum())
        colour = ""
        if palette is not None and 0 <= v < len(palette):
            colour = f" (palette colour {hex_color(tuple(int(c) for c in palette[v]))})"  # type: ignore[arg-type]
        others = len(np.unique(values[unknown])) - 1
        more = f"; {others} other unknown value(s)" if others else ""
        raise GeosynthError(
            f"{where}: mask value {v}{colour} in {n} pixel(s) (first at x={x}, y={y}) is no "
            f"class of the legend {legend.where} ({len(legend)} classes: "
            f"{', '.join(f'{n_} = {v_}' for n_, v_ in zip(legend.names, legend.class_values, strict=True))}){more}; "
            "add it to the legend's \"ignore\" list or give it to a class ('value'), or give `ignore`"
        )
    return out


def _classify_colors(codes: np.ndarray, legend: Legend, where: str) -> np.ndarray:
    out = np.full(codes.shape, _UNKNOWN, np.int64)
    table = legend.color_table()
    for color, k in table.items():
        out[codes == ((color[0] << 16) | (color[1] << 8) | color[2])] = k
    unknown = out == _UNKNOWN
    if not unknown.any():
        return out
    if legend.tolerance > 0:
        known = np.array(list(table), np.float64)
        owners = np.array(list(table.values()), np.int64)
        for code in np.unique(codes[unknown]).tolist():
            d = np.linalg.norm(known - np.array(_rgb_of(code), np.float64), axis=1)
            near = np.flatnonzero(d <= legend.tolerance)
            if len(set(owners[near].tolist())) == 1:
                out[unknown & (codes == code)] = owners[near[0]]
        unknown = out == _UNKNOWN
        if not unknown.any():
            return out
    first = int(np.argmax(unknown.reshape(-1)))
    y, x = divmod(first, codes.shape[1])
    code = int(codes[y, x])
    n = int((codes == code).sum())
    others = len(np.unique(codes[unknown])) - 1
    more = f"; {others} other unknown colour(s)" if others else ""
    rgb = _rgb_of(code)
    raise GeosynthError(
        f"{where}: colour {hex_color(rgb)} {rgb} in {n} pixel(s) (first at x={x}, y={y}) is not "
        f"in the legend {legend.where} ({legend.describe()}){more}; add it to the legend's "
        '"ignore" list or a class\'s "aliases", or give `ignore`'
    )


def read_mask(source: MaskSource, legend: Legend, name: str | None = None) -> np.ndarray:
    """Decode and classify one mask: H x W int64 class indices (-1: ignore)."""
    name = name or str(source)
    return classify(decode_mask(source, name), legend, name)


def class_counts(classes: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """(pixels per class, ignored pixels) of a classified mask."""
    flat = classes.reshape(-1)
    valid = flat >= 0
    return np.bincount(flat[valid], minlength=k)[:k], int(flat.size - int(valid.sum()))


def raw_counts(mask: DecodedMask, limit: int = 64) -> list[tuple[str, int]]:
    """The distinct values or colours of an undecoded mask with their pixel counts (most first;
    what a mask holds, for writing a legend)."""
    if mask.rgb is not None or mask.palette is not None:
        if mask.rgb is not None:
            codes = _codes(mask.rgb)
        else:
            assert mask.values is not None and mask.palette is not None
            pal = np.zeros((max(256, len(mask.palette)), 3), np.uint8)
            pal[: len(mask.palette)] = mask.palette
            codes = _codes(pal[np.clip(mask.values, 0, len(pal) - 1)])
        u, c = np.unique(codes, return_counts=True)
        keys = [hex_color(_rgb_of(int(v))) for v in u]
    else:
        assert mask.values is not None
        u, c = np.unique(mask.values, return_counts=True)
        keys = [str(int(v)) for v in u]
    order = np.argsort(-c, kind="stable")[:limit]
    return [(keys[i], int(c[i])) for i in order]


def index_legend(legend: Legend) -> Legend:
    """``legend`` fit for writing class-index masks: a legend that ignores pixels (by value or
    colour) gets an ignore value for them (its first one, else 255, else one past its largest
    class value, added to its ignore values); one without ignore entries stays as it is."""
    from dataclasses import replace

    if legend.ignore_values or not legend.has_ignore:
        return legend
    taken = set(legend.class_values)
    value = 255 if 255 not in taken else max(taken) + 1
    return replace(legend, ignore_values=(value,))


def index_mask(classes: np.ndarray, legend: Legend) -> Image.Image:
    """A class-index image of ``classes`` (H x W indices into ``legend``, -1 ignored) for
    ``index_legend(legend)``: each class as its value, ignored pixels as the ignore value;
    mode L when every value fits in 8 bits, else I (32-bit)."""
    from PIL import Image

    legend = index_legend(legend)
    ignore = legend.ignore_values[0] if legend.ignore_values else -1
    if ignore < 0 and (classes < 0).any():
        raise GeosynthError(f"{legend.where}: ignored pixels, but the legend has no ignore entry")
    lut = np.array([*legend.class_values, ignore], np.int64)
    arr = lut[np.where(classes >= 0, classes, len(legend.names))]
    if arr.min() >= 0 and arr.max() < 256:
        return Image.fromarray(arr.astype(np.uint8), "L")
    return Image.fromarray(arr.astype(np.int32), "I")
