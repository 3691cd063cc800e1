"""Amplitude-distribution distances and GLCM texture descriptors (seed 003's SAR evaluation).

Amplitude is the single-channel pixel value as stored: 8-bit greyscale (``L``) and 16-bit
(``I;16``) images are read as they are, float (``F``) and 32-bit integer (``I``) images as their
raw values, and colour images as their luminance (PIL's ``L`` conversion, ITU-R 601-2). The two
sets must therefore be stored in the same units for the distances to mean anything.

* **W1**: the Wasserstein-1 (earth mover's) distance between the empirical amplitude distributions
  of the two sets, ``integral |F_real(a) - F_synth(a)| da``, in amplitude units (scipy's
  ``wasserstein_distance`` on the pooled pixel samples). Shifting every amplitude by ``c`` gives
  exactly ``c``.
* **KL on binned log-amplitude**: ``KL(P_real || P_synth) = sum_b p_b log(p_b / q_b)`` over
  ``bins`` equal-width bins of ``log(1 + a)`` spanning both sets' range; each bin probability gets
  a pseudo-count of ``1e-6`` before normalising so empty synthetic bins give a large but finite
  value. The log compresses SAR's heavy-tailed speckle; the direction penalises synthetic sets
  that miss amplitudes the real set has.
* **GLCM** (Haralick): per image, grey levels quantised to ``levels`` bins, symmetric normalised
  co-occurrence matrices at the given pixel distances and angles (``skimage.feature.graycomatrix``)
  and their ``graycoprops``, each averaged over distances and angles.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.stats import wasserstein_distance
from skimage.feature import graycomatrix, graycoprops

GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
GLCM_DISTANCES = (1,)
KL_PSEUDO = 1e-6

#: full-scale value of single-channel modes (colour images become 8-bit luminance)
_FULL_SCALE = {"1": 255.0, "L": 255.0, "I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0}
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F"})


def amplitude(image: Image.Image) -> tuple[np.ndarray, float]:
    """The H x W amplitude of an image (float64) and the value that means full scale (255 for
    8-bit, 65535 for 16-bit, 1 for raw float/int images)."""
    if image.mode == "1":
        image = image.convert("L")
    if image.mode in ("I", "F"):
        return np.asarray(image, dtype=np.float64), 1.0
    if image.mode in _FULL_SCALE:
        return np.asarray(image, dtype=np.float64), _FULL_SCALE[image.mode]
    return np.asarray(image.convert("L"), dtype=np.float64), 255.0


def quantise(amp: np.ndarray, full_scale: float, levels: int) -> np.ndarray:
    """Grey levels 0..levels-1: equal-width bins over [0, full scale] (values outside clip)."""
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
) -> np.ndarray:
    """One value per property (in ``props`` order): graycoprops averaged over distances and
    angles of the symmetric, normalised GLCM of an already quantised image."""
    m = graycomatrix(
        grey_levels, distances=list(distances), angles=list(angles), levels=levels,
        symmetric=True, normed=True,
    )  # fmt: skip
    return np.array([float(graycoprops(m, p).mean()) for p in props])


def wasserstein1(real: np.ndarray, synthetic: np.ndarray) -> float:
    """W1 between two samples of amplitudes (see the module docstring)."""
    return float(wasserstein_distance(np.ravel(real), np.ravel(synthetic)))


def log_amplitude_kl(real: np.ndarray, synthetic: np.ndarray, bins: int = 64) -> float:
    """KL(real || synthetic) of binned ``log(1 + amplitude)`` (see the module docstring)."""
    lr = np.log1p(np.clip(np.ravel(real), 0, None))
    ls = np.log1p(np.clip(np.ravel(synthetic), 0, None))
    lo, hi = float(min(lr.min(), ls.min())), float(max(lr.max(), ls.max()))
    if hi <= lo:  # both sets hold one single value
        return 0.0
    edges = np.linspace(lo, hi, bins + 1)
    p = np.histogram(lr, edges)[0] / lr.size + KL_PSEUDO
    q = np.histogram(ls, edges)[0] / ls.size + KL_PSEUDO
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))
