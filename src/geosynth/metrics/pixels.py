"""One pass over a dataset's pixels for every image-space metric: per-image channel statistics
(colour fidelity), an amplitude sample (W1, KL) and GLCM descriptors (texture), plus a few
example images per class for the side-by-side grids.

Each image is decoded once. Whether a set is treated as greyscale or colour is decided before
the pass (:func:`is_greyscale`), so two sets are always compared in the same channels.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from geosynth.data.dataset import ImageDataset
from geosynth.errors import GeosynthError
from geosynth.metrics.sar import GLCM_PROPS, GREY_MODES, amplitude, glcm_descriptors, quantise
from geosynth.progress import Track, no_track


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


def _looks_grey(img: Image.Image) -> bool:
    if img.mode in GREY_MODES:
        return True
    arr = np.asarray(img.convert("RGB"), dtype=np.int16)
    # RGB files holding grey pixels (a SAR image saved as RGB): channels equal up to JPEG noise.
    return bool(np.abs(arr[..., 0] - arr[..., 1]).mean() <= 1.0) and bool(
        np.abs(arr[..., 1] - arr[..., 2]).mean() <= 1.0
    )


def is_greyscale(ds: ImageDataset, probe: int = 16) -> bool:
    """True when the first ``probe`` images (spread over the set) are all single-channel or
    grey-valued RGB."""
    n = len(ds)
    idx = sorted({int(i) for i in np.linspace(0, n - 1, min(probe, n))}) if n else []
    return bool(idx) and all(_looks_grey(raw_image(ds, i)) for i in idx)


@dataclass
class PixelScan:
    """Per-image statistics of one set (row i belongs to ``labels[i]``)."""

    class_names: list[str]
    labels: np.ndarray
    channels: list[str]
    channel_mean: np.ndarray  # N x C, in [0, 1] for 8/16-bit images
    channel_std: np.ndarray  # N x C, pixel std within each image, same units
    amplitude: list[np.ndarray]  # per image, a sample of amplitude values (float32)
    glcm: np.ndarray  # N x len(GLCM_PROPS)
    glcm_levels: int
    modes: dict[str, int]
    examples: dict[int, list[Image.Image]] = field(default_factory=dict)

    def class_amplitude(self, label: int | None = None) -> np.ndarray:
        """All sampled amplitudes of one class (or of every image when ``label`` is None)."""
        parts = [a for a, y in zip(self.amplitude, self.labels, strict=True) if label in (None, y)]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def scan_images(
    ds: ImageDataset,
    *,
    greyscale: bool,
    glcm_levels: int = 64,
    max_pixels: int = 4096,
    examples: int = 8,
    seed: int = 0,
    track: Track = no_track,
    description: str = "reading images",
) -> PixelScan:
    """Decode every image once and collect what the image-space metrics need.

    ``greyscale`` compares single-channel amplitude (colour images become luminance); otherwise
    RGB channels. Images larger than ``max_pixels`` contribute a deterministic random sample of
    that many amplitude values (seeded by ``seed`` and the image index).
    """
    n = len(ds)
    c = 1 if greyscale else 3
    means, stds = np.zeros((n, c)), np.zeros((n, c))
    glcm = np.zeros((n, len(GLCM_PROPS)))
    amps: list[np.ndarray] = []
    modes: Counter[str] = Counter()
    shown: dict[int, list[Image.Image]] = {}
    for i in track(range(n), n, description):
        img = raw_image(ds, i)
        modes[img.mode] += 1
        amp, full = amplitude(img)
        if greyscale:
            pix = amp[..., None] / (full if full > 1 else 1.0)
        else:
            pix = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
        flat = pix.reshape(-1, c)
        means[i], stds[i] = flat.mean(0), flat.std(0)
        glcm[i] = glcm_descriptors(quantise(amp, full, glcm_levels), glcm_levels)
        values = amp.ravel()
        if values.size > max_pixels:
            rng = np.random.default_rng([seed, i])
            values = values[rng.choice(values.size, max_pixels, replace=False)]
        amps.append(values.astype(np.float32))
        label = ds.samples[i].label
        if len(shown.setdefault(label, [])) < examples:
            shown[label].append(img.convert("L" if greyscale else "RGB"))
    return PixelScan(
        class_names=list(ds.class_names),
        labels=np.asarray(ds.labels, dtype=np.int64),
        channels=["grey"] if greyscale else ["R", "G", "B"],
        channel_mean=means,
        channel_std=stds,
        amplitude=amps,
        glcm=glcm,
        glcm_levels=glcm_levels,
        modes=dict(modes),
        examples=shown,
    )
