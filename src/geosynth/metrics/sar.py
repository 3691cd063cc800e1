"""Amplitude-distribution distances and GLCM texture descriptors (seed 003's SAR evaluation).

Amplitude is the pixel value as stored: 8-bit images as their luminance (PIL's ``L``
conversion, ITU-R 601-2), native data (16-bit, 32-bit integer, float; 1 to N bands) band by band
in its own units or in dB. The two sets must therefore be stored in the same units for the
distances to mean anything.

* **W1**: the Wasserstein-1 (earth mover's) distance between the empirical amplitude distributions
  of the two sets, ``integral |F_real(a) - F_synth(a)| da``, in amplitude units (scipy's
  ``wasserstein_distance`` on the pooled pixel samples). Shifting every amplitude by ``c`` gives
  exactly ``c``.
* **KL on binned log-amplitude**: ``KL(P_real || P_synth) = sum_b p_b log(p_b / q_b)`` over
  ``bins`` equal-width bins of ``log(1 + a)`` (8-bit: spanning both sets' range; native data:
  see below); each bin probability gets
  a pseudo-count of ``1e-6`` before normalising so empty synthetic bins give a large but finite
  value. The log compresses SAR's heavy-tailed speckle; the direction penalises synthetic sets
  that miss amplitudes the real set has.
* **GLCM** (Haralick): per image, grey levels quantised to ``levels`` bins, symmetric normalised
  co-occurrence matrices at the given pixel distances and angles (``skimage.feature.graycomatrix``)
  and their ``graycoprops``, each averaged over distances and angles.

**Native data** (16-bit, 32-bit integer and float images, 1 to N bands; SAR backscatter,
Sentinel-2 reflectance) is compared band by band in its own units, or in dB
(:class:`AmplitudeScale`). The GLCM grey levels and the KL bins are then derived once from the
REAL set (robust percentiles, :data:`RANGE_PERCENTILES`) and applied unchanged to the synthetic
set, so both are binned alike and the levels span the amplitudes the data actually has: a fixed
0..65535 range puts realistic 16-bit SAR amplitudes in a handful of levels, and a full scale of 1
puts every float amplitude in one. 8-bit images keep their fixed 0..255 full scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from scipy.stats import wasserstein_distance

from geosynth.errors import GeosynthError
from geosynth.extras import require

GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
GLCM_DISTANCES = (1,)
KL_PSEUDO = 1e-6
#: percentiles of the real set's values that bound the GLCM levels and KL bins of native data
RANGE_PERCENTILES = (0.5, 99.5)
#: amplitude spaces: ``auto`` is ``8-bit`` for 8-bit images and ``linear`` for native data
AMPLITUDE_SPACES = ("auto", "linear", "db")

#: full-scale value of single-channel modes (colour images become 8-bit luminance)
_FULL_SCALE = {"1": 255.0, "L": 255.0, "I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0}


def amplitude(image: Image.Image) -> tuple[np.ndarray, float]:
    """The H x W amplitude of an image (float64) and the value that means full scale (255 for
    8-bit, 65535 for 16-bit, 1 for raw float/int images). The fixed full-scale rule of 8-bit
    data; native data is binned by :class:`AmplitudeScale` (from the real set) instead."""
    if image.mode == "1":
        image = image.convert("L")
    if image.mode in ("I", "F"):
        return np.asarray(image, dtype=np.float64), 1.0
    if image.mode in _FULL_SCALE:
        return np.asarray(image, dtype=np.float64), _FULL_SCALE[image.mode]
    return np.asarray(image.convert("L"), dtype=np.float64), 255.0


def quantise(amp: np.ndarray, full_scale: float, levels: int) -> np.ndarray:
    """Grey levels 0..levels-1: equal-width bins over [0, full scale] (values outside clip).
    Right for 8-bit images only: on native data a fixed full scale wastes the levels (see
    :class:`AmplitudeScale`)."""
    top = full_scale + 1.0 if full_scale > 1.0 else full_scale  # 8-bit: 256 values, 255 in bin
    q = np.floor(amp / top * levels)
    return np.clip(q, 0, levels - 1).astype(np.uint8 if levels <= 256 else np.uint16)


def glcm_descriptors(
    grey_levels: np.ndarray,
    levels: int,
    *,
    distances: tuple[int, ...] = GLCM_DISTANCES,
    angles: tuple[float, ...] = GLCM_ANGLES,
    props: tuple[str, ...] = GLCM_PROPS,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """One value per property (in ``props`` order): graycoprops averaged over distances and
    angles of the symmetric, normalised GLCM of an already quantised image.

    ``valid`` (a boolean mask, optional) leaves out every pixel pair that touches an invalid
    (nodata or NaN) pixel: those pixels get one extra grey level whose row and column are dropped
    before normalising."""
    feature = require("skimage.feature", "the 'glcm' section of `sections` (GLCM texture)")
    graycomatrix, graycoprops = feature.graycomatrix, feature.graycoprops
    if valid is None or bool(valid.all()):
        m = graycomatrix(
            grey_levels, distances=list(distances), angles=list(angles), levels=levels,
            symmetric=True, normed=True,
        )  # fmt: skip
    else:
        q = np.where(valid, grey_levels, levels).astype(np.uint16 if levels >= 255 else np.uint8)
        counts = graycomatrix(
            q, distances=list(distances), angles=list(angles), levels=levels + 1,
            symmetric=True, normed=False,
        )[:levels, :levels].astype(np.float64)  # fmt: skip
        total = counts.sum(axis=(0, 1), keepdims=True)
        if not bool((total > 0).all()):
            raise GeosynthError("GLCM: too few valid (non-nodata) neighbouring pixels in an image")
        m = counts / total
    return np.array([float(graycoprops(m, p).mean()) for p in props])


def wasserstein1(real: np.ndarray, synthetic: np.ndarray) -> float:
    """W1 between two samples of amplitudes (see the module docstring)."""
    return float(wasserstein_distance(np.ravel(real), np.ravel(synthetic)))


def binned_kl(real: np.ndarray, synthetic: np.ndarray, lo: float, hi: float, bins: int) -> float:
    """KL(real || synthetic) of two samples histogrammed in ``bins`` equal bins over [lo, hi];
    values outside the range count in the end bins (so synthetic mass beyond the real range is
    not lost), every bin gets the pseudo-count :data:`KL_PSEUDO`."""
    if hi <= lo:  # one single value: nothing to tell apart
        return 0.0
    edges = np.linspace(lo, hi, bins + 1)
    lr = np.clip(np.ravel(real), lo, hi)
    ls = np.clip(np.ravel(synthetic), lo, hi)
    p = np.histogram(lr, edges)[0] / lr.size + KL_PSEUDO
    q = np.histogram(ls, edges)[0] / ls.size + KL_PSEUDO
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def log_amplitude_kl(real: np.ndarray, synthetic: np.ndarray, bins: int = 64) -> float:
    """KL(real || synthetic) of binned ``log(1 + amplitude)`` over both sets' range (the 8-bit
    rule; native data uses :meth:`AmplitudeScale.kl`)."""
    lr = np.log1p(np.clip(np.ravel(real), 0, None))
    ls = np.log1p(np.clip(np.ravel(synthetic), 0, None))
    lo, hi = float(min(lr.min(), ls.min())), float(max(lr.max(), ls.max()))
    return binned_kl(lr, ls, lo, hi, bins)


def to_db(values: np.ndarray, floor_db: float | None, what: str) -> np.ndarray:
    """``10 log10(values)``; values below the floor (in dB) are raised to it. Without a floor,
    non-positive values are an error naming ``what``: their dB is undefined."""
    v = np.asarray(values, dtype=np.float64)
    if floor_db is None:
        if v.size and float(np.nanmin(v)) <= 0:
            raise GeosynthError(
                f"{what}: dB of non-positive values (minimum {float(np.nanmin(v)):g}) is undefined; "
                "give `amplitude_db_floor` (a floor in dB, e.g. -40) or use the linear space"
            )
        return 10.0 * np.log10(v)
    tiny = 10.0 ** (floor_db / 10.0)
    return np.maximum(10.0 * np.log10(np.maximum(v, tiny)), floor_db)


@dataclass(frozen=True)
class AmplitudeScale:
    """How amplitudes become metric values, GLCM grey levels and KL bins; one per evaluation,
    derived from the REAL set, applied to both sets and recorded in the report.

    ``space``: ``8-bit`` (luminance 0..255, fixed full scale: levels ``floor(v / 256 * L)``),
    ``linear`` (native units) or ``db`` (``10 log10``, with an optional floor).
    ``lo``/``hi`` (one per band, in the metric space): the real set's :data:`RANGE_PERCENTILES`
    for native data, 0 and 256 for 8-bit. ``kl_log``: KL bins ``log(1 + v)`` (8-bit and
    non-negative linear data, to compress heavy-tailed speckle) or ``v`` itself (dB, and linear
    data with negative values, which is already logarithmic, e.g. stored in dB).
    """

    space: str
    bands: tuple[str, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    kl_log: bool = True
    db_floor: float | None = None
    percentiles: tuple[float, float] | None = None

    @property
    def fixed(self) -> bool:
        """True for the 8-bit rule (fixed full scale; KL bins span both sets)."""
        return self.space == "8-bit"

    def values(self, amp: np.ndarray, what: str, units: str = "linear") -> np.ndarray:
        """Native values (any shape) in the metric space. ``units``: what the values are,
        ``linear`` (as stored: power, amplitude, reflectance...) or ``db`` (already dB: kept as
        they are in the dB space, ``10^(v/10)`` in the linear one)."""
        if units == "db":
            if self.space == "db":
                return amp if self.db_floor is None else np.maximum(amp, self.db_floor)
            if self.space == "linear":
                return np.power(10.0, np.asarray(amp, dtype=np.float64) / 10.0)
            return amp
        return to_db(amp, self.db_floor, what) if self.space == "db" else amp

    def quantise(self, v: np.ndarray, band: int, levels: int) -> np.ndarray:
        """Grey levels 0..levels-1 of metric values ``v`` of one band: equal-width levels over
        [lo, hi]; values outside fall in the end levels."""
        lo, hi = self.lo[band], self.hi[band]
        width = hi - lo if hi > lo else 1.0
        q = np.floor((v - lo) / width * levels)
        return np.clip(q, 0, levels - 1).astype(np.uint8 if levels <= 256 else np.uint16)

    def kl(self, real: np.ndarray, synthetic: np.ndarray, band: int, bins: int) -> float:
        """KL(real || synthetic) of one band's metric values in this scale's bins."""
        if self.fixed:
            return log_amplitude_kl(real, synthetic, bins)
        lo, hi = self.kl_range(band)
        f = (lambda x: np.log1p(np.clip(x, 0, None))) if self.kl_log else (lambda x: x)
        return binned_kl(f(real), f(synthetic), lo, hi, bins)

    def kl_range(self, band: int) -> tuple[float, float]:
        """The KL bins' range for one band (in the histogrammed variable)."""
        lo, hi = self.lo[band], self.hi[band]
        if self.kl_log:
            return float(np.log1p(max(lo, 0.0))), float(np.log1p(max(hi, 0.0)))
        return lo, hi

    def to_dict(self) -> dict[str, Any]:
        """What the report records."""
        out: dict[str, Any] = {"space": self.space, "bands": list(self.bands)}
        if self.fixed:
            out["range"] = "fixed full scale 0..255 (8-bit); KL bins span both sets"
        else:
            out["range_from"] = (
                f"real set, percentiles {self.percentiles[0]:g}..{self.percentiles[1]:g}"
                if self.percentiles
                else "given"
            )
            out["range"] = {
                b: [lo, hi] for b, lo, hi in zip(self.bands, self.lo, self.hi, strict=True)
            }
            out["kl_variable"] = (
                "log(1 + v)" if self.kl_log else ("dB" if self.space == "db" else "v")
            )
        if self.space == "db":
            out["db"] = "10 log10(value)"
            out["db_floor"] = self.db_floor
        return out


def derive_scale(
    samples: list[np.ndarray],
    bands: tuple[str, ...],
    space: str,
    *,
    db_floor: float | None = None,
    percentiles: tuple[float, float] = RANGE_PERCENTILES,
) -> AmplitudeScale:
    """The scale of native data from the REAL set's amplitude samples (one ``bands x n`` array
    per image, already in the metric ``space``): per band, the robust range ``percentiles``."""
    pooled = np.concatenate(samples, axis=1) if samples else np.zeros((len(bands), 0))
    if pooled.shape[1] == 0:
        raise GeosynthError("REAL holds no valid pixel values to derive amplitude bins from")
    lo = np.percentile(pooled, percentiles[0], axis=1)
    hi = np.percentile(pooled, percentiles[1], axis=1)
    return AmplitudeScale(
        space=space,
        bands=bands,
        lo=tuple(float(x) for x in lo),
        hi=tuple(float(x) for x in hi),
        kl_log=space == "linear" and bool(pooled.min() >= 0),
        db_floor=db_floor,
        percentiles=percentiles,
    )


def shift_db(scale: AmplitudeScale, a_r: np.ndarray, a_s: np.ndarray) -> float | None:
    """Signed gain of synthetic over real in dB: the mean dB difference in the dB space,
    ``10 log10`` of the ratio of mean values for non-negative linear data; None otherwise."""
    if scale.space == "db":
        return float(a_s.mean() - a_r.mean())
    m_r, m_s = float(a_r.mean()), float(a_s.mean())
    if scale.space == "linear" and scale.kl_log and m_r > 0 and m_s > 0:
        return float(10.0 * np.log10(m_s / m_r))
    return None


def glcm_compare(g_r: np.ndarray, g_s: np.ndarray) -> dict[str, Any]:
    mr, ms, sd = g_r.mean(0), g_s.mean(0), g_r.std(0)
    std_diff = (ms - mr) / np.where(sd > 0, sd, 1.0)
    return {
        "real": dict(zip(GLCM_PROPS, map(float, mr), strict=True)),
        "synthetic": dict(zip(GLCM_PROPS, map(float, ms), strict=True)),
        "difference": dict(zip(GLCM_PROPS, map(float, ms - mr), strict=True)),
        "standardised_difference": dict(zip(GLCM_PROPS, map(float, std_diff), strict=True)),
        "distance": float(np.abs(std_diff).mean()),
    }
