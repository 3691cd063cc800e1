"""Seed 003's SAR amplitude normalisation, A / (mean + k std) clipped to [0, 1], as a radiometry rule.

Debuysère et al. (seed 003) bring SAR amplitudes to the VAE's range by dividing by the training
set's mean + 3 standard deviations and clipping to [0, 1]. In a :class:`~geosynth.data.radiometry.
Radiometry` spec that is ``scale: "amplitude"`` with ``std_factor: 3``:

* **Amplitude.** Values are first brought to linear amplitude: the square root of ``power``
  (negative power, as noise subtraction can leave, counts as 0), ``amplitude`` as it is,
  10^(dB / 20) of ``db`` (the dB floor applied first). The normalisation is defined on
  amplitude, so power data is never divided by power statistics.
* **Fitted on the training set, per channel.** The mean and the population standard deviation
  (ddof 0) of every valid pixel of every training image, per model channel: the one
  polarisation, or for dual-pol data each polarisation and their amplitude ratio (first /
  second). They are exact (float64 sums, no subsampling) and stored in the spec as ``mean_std``
  (one ``[mean, std]`` per channel), with the ``ranges`` they imply: ``[0, mean + k std]``.
* **Forward**: y = clip(A / (mean + k std), 0, 1), then 2 y - 1 for the model (the spec's linear
  range mapping does exactly this with range ``[0, mean + k std]``).
* **Inverse**: A = (y + 1) / 2 * (mean + k std), then back to the data's units (A^2 for power,
  20 log10 A for dB, the dB floor for A = 0). Amplitudes above mean + k std were clipped on the
  way in and cannot come back: generated values stop at mean + k std.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from geosynth.errors import GeosynthError


def to_amplitude(v: np.ndarray, units: str, db_floor: float | None) -> np.ndarray:
    """Linear amplitude of values in ``units`` (power, amplitude or db); NaN stays NaN."""
    if units == "power":
        with np.errstate(invalid="ignore"):
            return np.sqrt(np.maximum(v, 0.0))
    if units == "db":
        return 10.0 ** ((v if db_floor is None else np.maximum(v, db_floor)) / 20.0)
    return v


def from_amplitude(a: np.ndarray, units: str, db_floor: float | None) -> np.ndarray:
    """Values in ``units`` of linear amplitudes ``a`` (>= 0); for dB, 0 becomes ``db_floor``."""
    if units == "power":
        return a * a
    if units == "db":
        assert db_floor is not None  # checked by normalise()
        with np.errstate(divide="ignore"):
            db = 20.0 * np.log10(a)
        return np.maximum(db, db_floor)
    return a


def ranges_of(mean_std: Iterable[tuple[float, float]], k: float) -> tuple[tuple[float, float], ...]:
    """``[0, mean + k std]`` per channel (``[0, 1]`` for an all-zero channel)."""
    return tuple((0.0, (m + k * s) if m + k * s > 0 else 1.0) for m, s in mean_std)


def normalise(spec: Any) -> None:
    """Check and normalise a spec's amplitude-rule fields in place (called by ``__post_init__``):
    numbers as floats, and ``ranges`` derived from ``mean_std`` once it is fitted."""
    k, stats = spec.std_factor, spec.mean_std

    def bad(msg: str) -> GeosynthError:
        return GeosynthError(f"radiometry: {msg}")

    amplitude = spec.kind == "sar" and spec.scale == "amplitude"
    if amplitude and spec.units == "db" and spec.db_floor is None:
        raise bad(
            "scale 'amplitude' of dB data needs db_floor (the dB written back for a zero "
            "amplitude, e.g. -50)"
        )
    if k is None:
        if stats is not None:
            raise bad("mean_std is fitted by std_factor; give std_factor too")
        return
    if not (isinstance(k, int | float) and np.isfinite(k) and k > 0):
        raise bad(f"std_factor {k!r}: expected a positive number (3: A / (mean + 3 std))")
    if not amplitude:
        raise bad("std_factor (A / (mean + k std)) needs kind 'sar' and scale 'amplitude'")
    if spec.percentiles is not None:
        raise bad("give percentiles or std_factor, not both (each fits the ranges)")
    object.__setattr__(spec, "std_factor", float(k))
    if stats is None:
        if spec.ranges is not None:
            raise bad("std_factor fits the ranges on the data: leave ranges out (or give mean_std)")
        return
    try:
        stats = tuple((float(m), float(s)) for m, s in stats)
    except (TypeError, ValueError):
        raise bad(f"mean_std {stats!r}: expected one [mean, std] per channel") from None
    finite = bool(np.isfinite(np.array(stats, dtype=np.float64)).all())
    if len(stats) != spec.channels or not finite or any(s < 0 for _, s in stats):
        raise bad(
            f"mean_std: need {spec.channels} finite [mean, std] pair(s) with std >= 0, got "
            f"{[list(p) for p in stats]}"
        )
    ranges = ranges_of(stats, float(k))
    if spec.ranges is not None and tuple(spec.ranges) != ranges:
        raise bad(f"ranges {[list(r) for r in spec.ranges]} do not follow from mean_std")
    object.__setattr__(spec, "mean_std", stats)
    object.__setattr__(spec, "ranges", ranges)


def fit_mean_std(
    scaled: Iterable[tuple[list[np.ndarray], np.ndarray]], channels: int, source: str
) -> tuple[tuple[float, float], ...]:
    """Exact mean and population std per channel over every finite value of ``scaled`` (each
    image's channels in amplitude, as ``Radiometry._scaled`` gives them), combined image by
    image (Chan et al.'s pairwise update, float64: no sum of squares that cancels)."""
    n = np.zeros(channels)
    mean = np.zeros(channels)
    m2 = np.zeros(channels)
    for x, _ in scaled:
        for c, v in enumerate(x):
            vals = v[np.isfinite(v)]
            if not vals.size:
                continue
            nb, mb = vals.size, float(vals.mean())
            m2b = float(((vals - mb) ** 2).sum())
            total = n[c] + nb
            delta = mb - mean[c]
            mean[c] += delta * nb / total
            m2[c] += m2b + delta * delta * n[c] * nb / total
            n[c] = total
    for c in range(channels):
        if not n[c]:
            raise GeosynthError(f"{source}: no valid values to fit radiometry channel {c}")
    return tuple((float(mean[c]), float(np.sqrt(m2[c] / n[c]))) for c in range(channels))


def fit(
    spec: Any, ds: Any, scaled: Callable[[Any, str], tuple[list[np.ndarray], np.ndarray]]
) -> Any:
    """``spec`` with ``mean_std`` (and so ``ranges``) fitted on ``ds``, the training set;
    ``scaled(raster, where)`` gives an image's channels in amplitude and its valid mask."""
    rows = (scaled(ds.raster(i), ds.describe(ds.samples[i])) for i in range(len(ds)))
    return replace(spec, mean_std=fit_mean_std(rows, spec.channels, ds.source), _cache={})
