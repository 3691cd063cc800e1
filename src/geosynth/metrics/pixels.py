"""One pass over a dataset's pixels for every image-space metric: per-image channel statistics
(colour fidelity), an amplitude sample (W1, KL) and GLCM descriptors (texture), plus a few
example images per class for the side-by-side grids.

Each image is decoded once per pass. Whether a set is treated as greyscale or colour is decided
before the pass (:func:`is_greyscale`), so two sets are always compared in the same channels.

Images are read in their stored dtype and bands (``ImageDataset.raster`` where the dataset has
it, else PIL's stored mode). 8-bit images are compared as before (luminance amplitude, RGB or grey
channels, 0..255 full scale); native data (16-bit, 32-bit integer, float; 1 to N bands) band by
band in its own units or in dB, with the amplitude bins taken from the REAL set
(:func:`amplitude_scale`). NaN and nodata pixels are left out of every statistic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from geosynth.data.bandnames import band_label, named
from geosynth.data.dataset import ImageDataset
from geosynth.errors import GeosynthError
from geosynth.metrics.sar import (
    AMPLITUDE_SPACES,
    GLCM_PROPS,
    AmplitudeScale,
    derive_scale,
    glcm_descriptors,
)
from geosynth.progress import Track, no_track

#: storage-mode names of native arrays, as PIL calls them (others: ``dtype x bands``)
_MODE_OF_DTYPE = {"uint16": "I;16", "int32": "I", "float32": "F"}


def raw_image(ds: ImageDataset, index: int) -> Image.Image:
    """Decode sample ``index`` in its stored mode (``ds.image`` converts to RGB, which would hide
    16-bit and float SAR amplitudes); unreadable images raise an error naming the file."""
    sample = ds.samples[index]
    try:
        img = ds.decoder(sample)
        img.load()
        return img
    except GeosynthError:
        raise
    except Exception as exc:  # PIL raises many types for broken files
        raise GeosynthError(f"{ds.describe(sample)}: cannot read image ({exc})") from None


@dataclass
class Pixels:
    """One image as stored: ``array`` is bands x H x W in its own dtype."""

    array: np.ndarray
    mode: str
    band_names: list[str] | None = None
    nodata: float | None = None

    @property
    def eight_bit(self) -> bool:
        return self.array.dtype == np.uint8

    def valid(self) -> np.ndarray:
        """H x W mask of pixels that are neither NaN nor nodata in any band."""
        a = self.array
        ok = np.ones(a.shape[1:], dtype=bool)
        if a.dtype.kind == "f":
            ok &= np.isfinite(a).all(axis=0)
        if self.nodata is not None and not np.isnan(self.nodata):
            ok &= (a != self.nodata).all(axis=0)
        return ok

    def pil(self) -> Image.Image:
        """The 8-bit image as PIL (grey for 1 band, else the bands as PIL's mode of that many)."""
        a = self.array
        return Image.fromarray(
            a[0] if a.shape[0] == 1 else np.ascontiguousarray(a.transpose(1, 2, 0))
        )


def _pil_pixels(img: Image.Image) -> Pixels:
    if img.mode == "1":
        img = img.convert("L")
    elif img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.uint16) if img.mode.startswith("I;16") else np.asarray(img)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return Pixels(np.ascontiguousarray(arr), img.mode)


def read_pixels(ds: ImageDataset, index: int, bands: Sequence[int] | None = None) -> Pixels:
    """Sample ``index`` in its stored dtype and bands (the dataset's raster reader when it has
    one, which keeps every band, band names (the file's, else its layout's) and nodata; else
    PIL's stored mode). ``bands``: 0-based indices of the bands to keep, in that order."""
    reader = getattr(ds, "raster", None)
    if reader is None:
        return _pil_pixels(raw_image(ds, index))
    r = named(reader(index))
    arr = np.asarray(r.array)
    arr = arr[None] if arr.ndim == 2 else arr
    names = list(r.band_names) if r.band_names else None
    if bands is not None:
        if max(bands) >= arr.shape[0]:
            raise GeosynthError(
                f"{ds.describe(ds.samples[index])}: {arr.shape[0]} band(s), but band "
                f"{max(bands)} is compared; a set must hold one kind of image"
            )
        arr = arr[list(bands)]
        names = None if names is None else [names[b] for b in bands]
    dt = arr.dtype.name
    mode = (
        {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}.get(arr.shape[0], f"uint8x{arr.shape[0]}")
        if dt == "uint8"
        else _MODE_OF_DTYPE.get(dt, dt)
        if arr.shape[0] == 1
        else f"{dt}x{arr.shape[0]}"
    )
    return Pixels(arr, mode, names, r.nodata)


def _looks_grey(px: Pixels) -> bool:
    if px.array.shape[0] in (1, 2) and (px.array.shape[0] == 1 or px.eight_bit):
        return True  # one band (or 8-bit grey + alpha)
    if not px.eight_bit:
        return False  # native multi-band data: every band is its own channel
    arr = np.asarray(px.pil().convert("RGB"), dtype=np.int16)
    # RGB files holding grey pixels (a SAR image saved as RGB): channels equal up to JPEG noise.
    return bool(np.abs(arr[..., 0] - arr[..., 1]).mean() <= 1.0) and bool(
        np.abs(arr[..., 1] - arr[..., 2]).mean() <= 1.0
    )


def _probe(ds: ImageDataset, probe: int) -> list[int]:
    n = len(ds)
    return sorted({int(i) for i in np.linspace(0, n - 1, min(probe, n))}) if n else []


def is_greyscale(ds: ImageDataset, probe: int = 16) -> bool:
    """True when the first ``probe`` images (spread over the set) are all single-channel or
    grey-valued RGB."""
    idx = _probe(ds, probe)
    return bool(idx) and all(_looks_grey(read_pixels(ds, i)) for i in idx)


def _amplitude(px: Pixels) -> np.ndarray:
    """bands x H x W float64 amplitude: 8-bit images as luminance (ITU-R 601-2, PIL's ``L``),
    native data as every band's stored value."""
    if px.eight_bit:
        img = px.pil()
        grey = img if img.mode == "L" else img.convert("L")
        return np.asarray(grey, dtype=np.float64)[None]
    return px.array.astype(np.float64)


def _bands(px: Pixels) -> tuple[str, ...]:
    if px.eight_bit or px.array.shape[0] == 1:
        return ("grey",)
    names = px.band_names if px.band_names and len(px.band_names) == px.array.shape[0] else None
    return tuple(band_label(names, b) for b in range(px.array.shape[0]))


def _sample(values: np.ndarray, max_pixels: int, seed: int, index: int) -> np.ndarray:
    """bands x n: all valid values, or a deterministic random sample of ``max_pixels`` pixels."""
    if values.shape[1] > max_pixels:
        rng = np.random.default_rng([seed, index])
        values = values[:, rng.choice(values.shape[1], max_pixels, replace=False)]
    return values


def _valid_amplitude(ds: ImageDataset, index: int, px: Pixels) -> tuple[np.ndarray, np.ndarray]:
    amp = _amplitude(px)
    valid = np.ones(amp.shape[1:], dtype=bool) if px.eight_bit else px.valid()
    if not valid.any():
        raise GeosynthError(
            f"{ds.describe(ds.samples[index])}: every pixel is NaN or nodata; "
            "remove the chip or fix its nodata value"
        )
    return amp, valid


def amplitude_scale(
    real: ImageDataset,
    *,
    space: str = "auto",
    db_floor: float | None = None,
    max_pixels: int = 4096,
    seed: int = 0,
    bands: Sequence[int] | None = None,
    units: str = "linear",
    track: Track = no_track,
    description: str = "reading real images for amplitude bins",
) -> AmplitudeScale:
    """The amplitude scale both sets are compared in, derived from REAL (see
    :class:`~geosynth.metrics.sar.AmplitudeScale`). ``space``: ``auto`` (8-bit rule for 8-bit
    images; for native data the space of its ``units``: ``db`` for data stored in dB, else
    ``linear``, native units), ``linear`` or ``db``. ``bands``: REAL's bands compared (indices;
    default all). Native data costs one extra pass over REAL (the sampled values of
    :func:`scan_images`, with the same seed)."""
    if space not in AMPLITUDE_SPACES:
        raise GeosynthError(
            f"amplitude_scale={space!r}: unknown space (known: {', '.join(AMPLITUDE_SPACES)})"
        )
    if len(real) == 0:
        raise GeosynthError(f"{real.source}: no images to derive amplitude bins from")
    first = read_pixels(real, 0, bands)
    if first.eight_bit and space in ("auto", "linear"):
        return AmplitudeScale("8-bit", ("grey",), (0.0,), (256.0,))
    metric = space if space != "auto" else ("db" if units == "db" else "linear")
    convert = AmplitudeScale(metric, (), (), (), db_floor=db_floor)
    samples = []
    for i in track(range(len(real)), len(real), description):
        px = read_pixels(real, i, bands)
        amp, valid = _valid_amplitude(real, i, px)
        values = _sample(amp[:, valid], max_pixels, seed, i)
        samples.append(convert.values(values, real.describe(real.samples[i]), units))
    return derive_scale(samples, _bands(first), metric, db_floor=db_floor)


@dataclass
class PixelScan:
    """Per-image statistics of one set (row i belongs to ``labels[i]``)."""

    class_names: list[str]
    labels: np.ndarray
    channels: list[str]
    channel_mean: np.ndarray  # N x C, in [0, 1] for 8/16-bit images
    channel_std: np.ndarray  # N x C, pixel std within each image, same units
    amplitude: list[np.ndarray]  # per image, bands x n sampled metric values (float32)
    glcm: np.ndarray  # N x len(GLCM_PROPS), averaged over bands
    glcm_levels: int
    modes: dict[str, int]
    examples: dict[int, list[Image.Image]] = field(default_factory=dict)
    scale: AmplitudeScale | None = None
    bands: list[str] = field(default_factory=lambda: ["grey"])
    native: bool = False
    units: str = "linear"  # what the native values were: linear (as stored) or db

    def class_amplitude(self, label: int | None = None, band: int = 0) -> np.ndarray:
        """All sampled amplitudes of one band of one class (or of every image when ``label`` is
        None), in the metric space (native units or dB)."""
        parts = [
            a[band] for a, y in zip(self.amplitude, self.labels, strict=True) if label in (None, y)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _full_scale(dtype: np.dtype) -> float:
    """What 1.0 means in the colour statistics: 255 / 65535 for 8 / 16-bit, raw values else."""
    return {"uint8": 255.0, "uint16": 65535.0}.get(np.dtype(dtype).name, 1.0)


def _preview(values: np.ndarray, valid: np.ndarray, scale: AmplitudeScale) -> Image.Image:
    """An 8-bit view of the first band for the example grids, stretched over the scale's range."""
    lo, hi = scale.lo[0], scale.hi[0]
    v = np.where(valid, values, lo)
    g = np.clip((v - lo) / (hi - lo if hi > lo else 1.0), 0, 1) * 255
    return Image.fromarray(np.round(g).astype(np.uint8), "L")


def scan_images(
    ds: ImageDataset,
    *,
    greyscale: bool,
    glcm_levels: int = 64,
    max_pixels: int = 4096,
    examples: int = 8,
    seed: int = 0,
    scale: AmplitudeScale | None = None,
    bands: Sequence[int] | None = None,
    units: str = "linear",
    track: Track = no_track,
    description: str = "reading images",
) -> PixelScan:
    """Decode every image once and collect what the image-space metrics need.

    ``greyscale`` compares single-channel amplitude (colour images become luminance); otherwise
    RGB channels (native multi-band data: every band). Images larger than ``max_pixels``
    contribute a deterministic random sample of that many amplitude values (seeded by ``seed``
    and the image index). ``scale`` (from :func:`amplitude_scale` on the REAL set) sets the
    metric space, GLCM levels and bins; without it the set is its own reference. ``bands``:
    the bands compared (indices into this set's files; default all); ``units``: what native
    values are, ``linear`` or ``db`` (see :meth:`AmplitudeScale.values`).
    """
    n = len(ds)
    if scale is None:
        scale = amplitude_scale(
            ds, max_pixels=max_pixels, seed=seed, bands=bands, units=units, track=track
        )
    first: Pixels | None = None
    means: np.ndarray | None = None
    stds: np.ndarray | None = None
    glcm = np.zeros((n, len(GLCM_PROPS)))
    amps: list[np.ndarray] = []
    modes: Counter[str] = Counter()
    shown: dict[int, list[Image.Image]] = {}
    channels: list[str] = []
    for i in track(range(n), n, description):
        px = read_pixels(ds, i, bands)
        where = ds.describe(ds.samples[i])
        if first is None:
            first = px
        elif px.eight_bit != first.eight_bit or px.array.shape[0] != first.array.shape[0]:
            raise GeosynthError(
                f"{where}: {px.mode} with {px.array.shape[0]} band(s), but earlier images of "
                f"{ds.source} are {first.mode} with {first.array.shape[0]}; a set must hold one "
                "kind of image"
            )
        modes[px.mode] += 1
        amp, valid = _valid_amplitude(ds, i, px)
        if len(scale.lo) != amp.shape[0]:
            raise GeosynthError(
                f"{where}: {amp.shape[0]} amplitude band(s), but the amplitude bins (from the "
                f"real set) have {len(scale.lo)}; compare sets with the same bands"
            )
        # colour statistics (fraction of full scale for 8/16-bit, raw values for float/int32)
        if px.eight_bit:
            if greyscale:
                pix = amp[0][..., None] / 255.0
                channels = ["grey"]
            else:
                pix = np.asarray(px.pil().convert("RGB"), dtype=np.float64) / 255.0
                channels = ["R", "G", "B"]
            flat = pix.reshape(-1, pix.shape[-1])
        else:
            flat = amp[:, valid].T / _full_scale(px.array.dtype)
            channels = list(_bands(px))
        if means is None or stds is None:
            means, stds = np.zeros((n, flat.shape[1])), np.zeros((n, flat.shape[1]))
        means[i], stds[i] = flat.mean(0), flat.std(0)
        # amplitude in the metric space; GLCM per band on the scale's levels, averaged
        # Invalid pixels take a valid value of their band (so nodata = 0 cannot break dB);
        # they are masked out of the GLCM and the samples below.
        fill = amp[:, valid][:, :1][:, :, None]
        metric = scale.values(np.where(valid, amp, fill), where, units)
        glcm[i] = np.mean(
            [
                glcm_descriptors(
                    scale.quantise(metric[b], b, glcm_levels),
                    glcm_levels,
                    valid=None if px.eight_bit else valid,
                )
                for b in range(metric.shape[0])
            ],
            axis=0,
        )
        amps.append(_sample(metric[:, valid], max_pixels, seed, i).astype(np.float32))
        label = ds.samples[i].label
        if len(shown.setdefault(label, [])) < examples:
            shown[label].append(
                px.pil().convert("L" if greyscale else "RGB")
                if px.eight_bit
                else _preview(metric[0], valid, scale)
            )
    if means is None or stds is None:
        c = 1 if greyscale else 3
        means, stds = np.zeros((0, c)), np.zeros((0, c))
        channels = ["grey"] if greyscale else ["R", "G", "B"]
    native = first is not None and not first.eight_bit
    return PixelScan(
        class_names=list(ds.class_names),
        labels=np.asarray(ds.labels, dtype=np.int64),
        channels=channels,
        channel_mean=means,
        channel_std=stds,
        amplitude=amps,
        glcm=glcm,
        glcm_levels=glcm_levels,
        modes=dict(modes),
        examples=shown,
        scale=scale,
        bands=list(scale.bands) if native else ["grey"],
        native=native,
        units=units,
    )
